"""D1: a projection rebuilt from event 0 equals the live one row for row; swapping it in is safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import (
    REBUILD_SUFFIX,
    build_fresh,
    catch_up,
    head_position,
    rebuild,
    rebuild_name,
    swap_in,
    tracked_position,
)
from projections.registry import PROJECTIONS
from projections.worker import ProjectionWorker
from tests.integration.support import TenantsOf, dump, register, rows, wait_until

PROFILE = CustomerProfileProjection()
COLUMNS = {
    "customer_profile": "customer_id, doc::text, phone, email, position",
    "customer_identity": "type, value, customer_id",
}


def populate(tenant: Tenant, customers: int, prefix: str = "") -> None:
    for n in range(customers):
        register(
            tenant,
            ("pos_member_no", f"{prefix}{n}"),
            name=f"Name {n}",
            phone=f"+86139{sum(map(ord, prefix)) % 1000:03d}{n:05d}",  # distinct per prefix
            email=f"{prefix}{n}@Example.com",
            attributes={"n": n, "city": "上海"},
        )
        if n % 3 == 0:
            register(tenant, ("pos_member_no", f"{prefix}{n}"), ("wechat_unionid", f"{prefix}u{n}"))
        if n % 6 == 0:
            register(tenant, ("wechat_unionid", f"{prefix}u{n}"), ("jd_pin", f"{prefix}j{n}"))


def differences(sql: psycopg.Connection[Any], tenant: Tenant, table: str, other: str) -> int:
    """Rows in either table and not in the other (EXCEPT both ways, json compared as text)."""
    cols, s = COLUMNS[table], tenant.schema
    count = sql.execute(
        f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM {s}.{table}"
        f" EXCEPT SELECT {cols} FROM {s}.{other}) a)"
        f" + (SELECT count(*) FROM (SELECT {cols} FROM {s}.{other}"
        f" EXCEPT SELECT {cols} FROM {s}.{table}) b) AS n"
    ).fetchone()
    assert count is not None
    return int(count["n"])


def live_equals_rebuilt(sql: psycopg.Connection[Any], tenant: Tenant) -> bool:
    return all(
        differences(sql, tenant, table, table + REBUILD_SUFFIX) == 0 for table in PROFILE.tables
    )


def test_build_fresh_equals_the_live_tables_row_for_row(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 30)
    catch_up(tenant, PROFILE, batch_size=7)  # live, in many batches

    position = build_fresh(tenant, PROFILE)

    assert position == head_position(tenant)
    assert live_equals_rebuilt(sql, tenant)
    live = dump(sql, tenant, PROFILE.tables)
    assert live == dump(sql, tenant, [t + REBUILD_SUFFIX for t in PROFILE.tables])
    assert len(live[0]) == 30


def test_the_row_comparison_detects_a_difference(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # The comparison used above is not vacuous: one changed document is found.
    populate(tenant, 3)
    catch_up(tenant, PROFILE)
    build_fresh(tenant, PROFILE)

    table = f"{tenant.schema}.customer_profile_rebuild"
    sql.execute(f"UPDATE {table} SET doc = '{{}}' WHERE ctid = (SELECT min(ctid) FROM {table})")

    assert differences(sql, tenant, "customer_profile", "customer_profile_rebuild") == 2
    assert differences(sql, tenant, "customer_identity", "customer_identity_rebuild") == 0


def test_swap_in_catches_the_rebuild_up_to_the_live_position_and_replaces_the_live_tables(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 12)
    catch_up(tenant, PROFILE)
    build_fresh(tenant, PROFILE)
    populate(tenant, 6, prefix="late")  # the live projector moves on past the rebuild
    catch_up(tenant, PROFILE)
    expected = dump(sql, tenant, PROFILE.tables)

    swap_in(tenant, PROFILE)

    assert dump(sql, tenant, PROFILE.tables) == expected
    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert tracked_position(tenant, rebuild_name(PROFILE)) == 0
    leftovers = sql.execute(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
        (tenant.schema, "%" + REBUILD_SUFFIX),
    ).fetchone()
    assert leftovers == {"n": 0}


def test_the_live_projector_keeps_working_after_a_rebuild(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 9)
    catch_up(tenant, PROFILE)

    assert rebuild(tenant, PROFILE) == head_position(tenant)
    populate(tenant, 9, prefix="after")
    catch_up(tenant, PROFILE)

    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert rows(sql, tenant, "SELECT count(*) AS n FROM {s}.customer_profile") == [{"n": 18}]
    build_fresh(tenant, PROFILE)
    assert live_equals_rebuilt(sql, tenant)


def test_rebuilding_twice_works_and_keeps_the_live_index_names(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 4)
    catch_up(tenant, PROFILE)
    indexes_before = index_names(sql, tenant)

    rebuild(tenant, PROFILE)
    rebuild(tenant, PROFILE)

    assert index_names(sql, tenant) == indexes_before
    assert all(REBUILD_SUFFIX not in name for name in indexes_before)


def index_names(sql: psycopg.Connection[Any], tenant: Tenant) -> list[str]:
    found = sql.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s) ORDER BY 1",
        (tenant.schema, list(PROFILE.tables)),
    ).fetchall()
    return [r["indexname"] for r in found]


@pytest.fixture
def worker(runtime: Runtime, tenant: Tenant) -> Iterator[ProjectionWorker]:
    tenants = TenantsOf(runtime.tenants, tenant)
    w = ProjectionWorker(
        runtime.url, tenants, PROJECTIONS, threads=2, batch_size=20, sweep_seconds=0.1
    )
    w.start()
    yield w
    w.stop()


def test_rebuild_while_writers_and_the_live_worker_run_loses_nothing(
    tenant: Tenant, worker: ProjectionWorker, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 20)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            register(tenant, ("pos_member_no", f"w{n}"), ("jd_pin", f"w{n}"))
            written.append(n)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(written) >= 5, what="writes before the rebuild")
        rebuild(tenant, PROFILE, batch_size=15)
        wait_until(lambda: len(written) >= 10, what="writes after the rebuild")
    finally:
        stop.set()
        writer.join(30)

    wait_until(
        lambda: tracked_position(tenant, PROFILE.name) == head_position(tenant), what="catch-up"
    )
    worker.wait_idle()
    build_fresh(tenant, PROFILE)
    assert live_equals_rebuilt(sql, tenant)
    assert rows(sql, tenant, "SELECT count(*) AS n FROM {s}.customer_profile") == [
        {"n": 20 + len(written)}
    ]
