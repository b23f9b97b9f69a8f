"""Shared fixtures: a real PostgreSQL for every test that needs one.

With ``DATABASE_URL`` the session creates its own database on that server (and drops it after),
so runs never see each other's tenants. Without it, an embedded PostgreSQL (pgserver) is started
in a temporary directory: the suite passes on a machine with no database installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fakeredis import TcpFakeServer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from infrastructure.database import embedded_database_url, stop_embedded
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant

hypothesis_settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    # The embedded server gets its own directory, not pytest's: pytest prunes old session
    # folders, which would pull the data directory from under a concurrently running session.
    embedded_dir = None if os.environ.get("DATABASE_URL") else tempfile.mkdtemp(prefix="mc-pg-")
    server_url = os.environ.get("DATABASE_URL") or embedded_database_url(Path(str(embedded_dir)))
    dbname = f"mc_test_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    yield _with_dbname(server_url, dbname)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    if embedded_dir is not None:
        stop_embedded(Path(embedded_dir))
        shutil.rmtree(embedded_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, or a Redis-protocol server in this process (fakeredis) when it is unset."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"redis://{host!s}:{port}/0"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=Path(tmp_path_factory.mktemp("data")),
        log_format="console",
        log_level="warning",
        access_log=False,
        pool_min=2,
        pool_max=12,
        projection_poll_seconds=0.5,
    )


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    """One runtime (shared pool, no projection worker) for the whole session."""
    rt = Runtime.open(settings)
    yield rt
    rt.close()


def new_slug(prefix: str = "t") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


@pytest.fixture
def tenant(runtime: Runtime) -> Tenant:
    """A fresh tenant (its own schema) for one test."""
    return runtime.tenants.create(new_slug())


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, like the service."""
    return "asyncio"
