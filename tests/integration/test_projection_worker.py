"""The projection worker follows tenants live, and resumes exactly where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from domain.customer import Customer
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import head_position, tracked_position
from projections.registry import PROJECTIONS
from projections.worker import ProjectionWorker
from tests.integration.support import TenantsOf, register, rows, wait_until

PROFILE = CustomerProfileProjection()


@pytest.fixture
def worker(runtime: Runtime, tenant: Tenant) -> Iterator[ProjectionWorker]:
    tenants = TenantsOf(runtime.tenants, tenant)
    w = ProjectionWorker(
        runtime.url, tenants, PROJECTIONS, threads=2, batch_size=50, sweep_seconds=0.2
    )
    yield w
    w.stop()


def caught_up(tenant: Tenant) -> bool:
    return tracked_position(tenant, PROFILE.name) == head_position(tenant)


def profile_counts(sql: psycopg.Connection[Any], tenant: Tenant) -> dict[Any, int]:
    """customer_id -> number of profile rows (a primary key, so doubling shows in the docs)."""
    found = rows(
        sql,
        tenant,
        "SELECT customer_id, json_array_length(doc -> 'identities') AS n FROM {s}.customer_profile",
    )
    return {r["customer_id"]: r["n"] for r in found}


def test_worker_projects_new_events_without_being_asked(
    tenant: Tenant, worker: ProjectionWorker, sql: psycopg.Connection[Any]
) -> None:
    worker.start()
    ids = [register(tenant, ("pos_member_no", str(n))).customer_id for n in range(10)]

    wait_until(lambda: caught_up(tenant), what="the worker to catch up")

    assert sorted(profile_counts(sql, tenant)) == sorted(ids)


def test_worker_stopped_and_started_again_projects_every_customer_exactly_once(
    tenant: Tenant, worker: ProjectionWorker, sql: psycopg.Connection[Any]
) -> None:
    worker.start()
    first = [register(tenant, ("pos_member_no", f"a{n}")).customer_id for n in range(20)]
    wait_until(lambda: caught_up(tenant), what="the first catch-up")
    worker.stop()

    second = [register(tenant, ("pos_member_no", f"b{n}")).customer_id for n in range(20)]
    for n in range(0, 20, 2):  # links to customers projected before the stop
        register(tenant, ("pos_member_no", f"a{n}"), ("email", f"a{n}@example.com"))
    assert not caught_up(tenant), "nothing projects while the worker is stopped"
    stopped_at = tracked_position(tenant, PROFILE.name)

    worker.start()
    wait_until(lambda: caught_up(tenant), what="the catch-up after the restart")

    assert tracked_position(tenant, PROFILE.name) > stopped_at
    counts = profile_counts(sql, tenant)
    assert sorted(counts) == sorted(first + second)
    assert [counts[c] for c in first] == [2 if n % 2 == 0 else 1 for n in range(20)]
    assert all(counts[c] == 1 for c in second)
    identities = rows(sql, tenant, "SELECT count(*) AS n FROM {s}.customer_identity")
    assert identities == [{"n": 40 + 10}]


def test_a_fresh_worker_resumes_from_the_tracking_left_by_another(
    runtime: Runtime, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    ids = [register(tenant, ("pos_member_no", str(n))).customer_id for n in range(5)]
    tenants = TenantsOf(runtime.tenants, tenant)
    one = ProjectionWorker(runtime.url, tenants, PROJECTIONS, sweep_seconds=0.2)
    one.catch_up_tenant(tenant.slug)
    more = [register(tenant, ("pos_member_no", f"x{n}")).customer_id for n in range(5)]

    other = ProjectionWorker(runtime.url, tenants, PROJECTIONS, sweep_seconds=0.2)
    applied = other.catch_up_tenant(tenant.slug)

    # Only the 5 new registrations, once by each projection that reads registrations.
    readers = [p for p in PROJECTIONS if Customer.Registered.TOPIC in p.topics]
    assert applied == 5 * len(readers)
    assert sorted(profile_counts(sql, tenant)) == sorted(ids + more)
    assert caught_up(tenant)


def test_worker_keeps_projecting_after_its_listen_connection_is_killed(
    tenant: Tenant, worker: ProjectionWorker, sql: psycopg.Connection[Any]
) -> None:
    worker.sweep_seconds = 60.0  # only notifications (or the listener's restart sweep) can help
    worker.start()
    register(tenant, ("pos_member_no", "before"))
    wait_until(lambda: caught_up(tenant), what="the first notification")

    killed = sql.execute(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
        " WHERE datname = current_database() AND query = 'LISTEN membercore_events'"
    ).fetchall()
    assert killed == [{"ok": True}]
    wait_until(lambda: worker.restarts >= 1, what="the listener to notice")
    ids = [register(tenant, ("pos_member_no", str(n))).customer_id for n in range(5)]

    wait_until(lambda: caught_up(tenant), what="projection after the listener restart")
    assert len(profile_counts(sql, tenant)) == 6
    assert set(ids) <= set(profile_counts(sql, tenant))
