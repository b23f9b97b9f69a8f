"""Connections do not grow with tenants: one shared pool and one LISTEN connection serve all."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up, head_position, tracked_position
from tests.integration.support import TenantsOf, register, wait_until

PROFILE = CustomerProfileProjection()
LISTENER = 1  # the projection worker's LISTEN connection, outside the pool


def with_application_name(url: str, name: str) -> str:
    """Tag every connection opened from ``url``, so exactly this runtime's can be counted."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"application_name={name}") if q)
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
def tagged(settings: Settings) -> Iterator[tuple[Runtime, str]]:
    """A runtime of its own (its own pool and worker), with its connections tagged."""
    name = f"mc_flat_{secrets.token_hex(3)}"
    assert settings.database_url is not None
    url = with_application_name(settings.database_url, name)
    runtime = Runtime.open(settings.with_database(url))
    # Its worker serves the tenants the test makes: 5, then 50.
    runtime.tenants = TenantsOf(runtime.tenants)
    yield runtime, name
    runtime.close()


def connections(database_url: str, application_name: str | None = None) -> int:
    """Connections to the test database (all, or one runtime's), not counting this one."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND (%(name)s::text IS NULL OR application_name = %(name)s)",
            {"name": application_name},
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_tenants(runtime: Runtime, count: int) -> list[Tenant]:
    tenants = [runtime.tenants.create(f"flat_{secrets.token_hex(5)}") for _ in range(count)]
    for tenant in tenants:
        register(tenant, ("pos_member_no", "1"), name="first")
        catch_up(tenant, PROFILE)
    return tenants


def settle(runtime: Runtime, tenants: list[Tenant]) -> None:
    """Write once more to every tenant and wait until the worker has projected all of it."""
    assert runtime.worker is not None
    for tenant in tenants:
        register(tenant, ("pos_member_no", "2"))
    wait_until(
        lambda: all(tracked_position(t, PROFILE.name) == head_position(t) for t in tenants),
        timeout=60,
        what="the worker to catch every tenant up",
    )
    runtime.worker.wait_idle()


def test_connections_stay_within_the_pool_bound_from_5_to_50_tenants(
    database_url: str, settings: Settings, tagged: tuple[Runtime, str]
) -> None:
    runtime, name = tagged

    five = add_tenants(runtime, 5)  # each caught up once by hand, then by the worker
    worker = runtime.start_projections()
    settle(runtime, five)
    at_5, all_at_5 = connections(database_url, name), connections(database_url)

    worker.stop()
    fifty = five + add_tenants(runtime, 45)
    worker.start()
    settle(runtime, fifty)
    at_50, all_at_50 = connections(database_url, name), connections(database_url)

    bound = settings.pool_max + LISTENER
    assert at_5 <= bound
    assert at_50 <= bound
    # Flat: 45 more tenants, each with its own schema and application, add no connections
    # beyond what concurrency alone may open (worker threads + this thread).
    assert at_50 - at_5 <= settings.projection_threads + 1, (at_5, at_50)
    # The same holds for the whole database (the session's other pool sat idle meanwhile).
    assert all_at_50 - all_at_5 <= settings.projection_threads + 1, (all_at_5, all_at_50)
    assert len(runtime.tenants.slugs()) >= 50
