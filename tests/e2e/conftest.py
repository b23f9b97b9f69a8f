"""The real service over real HTTP: ``membercore serve`` in a subprocess, the CLI for bootstrap."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests.conftest import new_slug

MEMBERCORE = Path(sys.executable).parent / "membercore"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Service:
    base_url: str
    env: dict[str, str]
    log: Path

    def cli(self, *args: str) -> dict[str, Any]:
        """Run ``membercore <args>``; its stdout must be exactly one JSON object."""
        done = subprocess.run(  # noqa: S603 - fixed executable, test-chosen arguments
            [str(MEMBERCORE), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 1, done.stdout
        result: dict[str, Any] = json.loads(lines[0])
        return result

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture(scope="module")
def e2e_database_url(database_url: str) -> Iterator[str]:
    """A database of its own: the server's projection worker sweeps every tenant it can see,
    and must not catch up the tenants other tests project by hand."""
    name = f"{urlsplit(database_url).path.lstrip('/')}_e2e"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def service(e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``membercore serve`` (API + projection worker) on a free port; SIGTERM at teardown."""
    data_dir = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "DATABASE_URL": e2e_database_url,
        "MEMBERCORE_LOG_FORMAT": "json",
        "MEMBERCORE_DATA_DIR": str(data_dir),
    }
    port = _free_port()
    log = data_dir / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(  # noqa: S603 - fixed executable and arguments
            [str(MEMBERCORE), "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"server exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{base_url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield Service(base_url, env, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"server ignored SIGTERM for {STOP_TIMEOUT} s:\n{log.read_text()}")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -SIGTERM is a clean exit.
    assert code in (0, -signal.SIGTERM), f"server exited with {code}:\n{log.read_text()}"
    assert "Application shutdown complete" in log.read_text(), log.read_text()


@dataclass(frozen=True)
class Tenant:
    slug: str
    admin_key: str


@pytest.fixture(scope="module")
def e2e_tenant(service: Service) -> Tenant:
    """A tenant made with ``membercore tenants create``."""
    slug = new_slug("e2e")
    created = service.cli("tenants", "create", slug)
    assert set(created) == {"tenant", "api_key"}
    assert created["tenant"] == slug
    return Tenant(slug, created["api_key"])


@pytest.fixture
def http(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=15.0) as client:
        yield client
