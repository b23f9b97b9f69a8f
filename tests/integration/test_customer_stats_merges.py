"""Order statistics follow merges, their undos and orders an undo reassigns: a profile is one
person (projections/customer_stats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.orders import PlaceOrder, RefundOrder
from application.program import define_program
from infrastructure.runtime import Runtime
from infrastructure.tenancy import TENANT_SCHEMA_VERSION, Tenant, Tenants
from projections.customer_stats import CustomerStatsProjection, profile_stats_sql
from projections.engine import REBUILD_SUFFIX, build_fresh, catch_up
from tests.integration import merge_support
from tests.integration.orders_support import place, refund_now
from tests.integration.support import dump, register, rows

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
}
STATS = CustomerStatsProjection()
DAY1 = datetime(2026, 3, 2, 2, tzinfo=UTC)  # 10:00 on 2 March in Shanghai
EMPTY = None  # no row: the profile shows empty stats


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def person(tenant: Tenant) -> tuple[UUID, tuple[str, str]]:
    who = ("wechat_unionid", f"u-{uuid4()}")
    return register(tenant, who).customer_id, who


def buy(tenant: Tenant, at: datetime, amount: int, *, by: UUID | tuple[str, str]) -> str:
    order_id = f"o-{uuid4().hex[:12]}"
    named = {"identity": by} if isinstance(by, tuple) else {"customer_id": by}
    place(tenant.app, PlaceOrder(order_id, "tmall", at, amount, **named))
    return order_id


def refund(tenant: Tenant, order_id: str, amount: int) -> None:
    refund_now(tenant.app, RefundOrder("tmall", order_id, f"r-{uuid4()}", amount=amount))


def merge(tenant: Tenant, survivor: UUID, source: UUID) -> UUID:
    return merge_support.merged(tenant.app, survivor, source)


def undo(tenant: Tenant, merge_id: UUID) -> None:
    merge_support.undo(tenant.app, merge_id)


def stats(sql: psycopg.Connection[Any], tenant: Tenant, customer_id: UUID) -> Any:
    """What the profile shows under ``stats`` (None: no row, the document's empty stats)."""
    catch_up(tenant, STATS)
    (row,) = rows(
        sql,
        tenant,
        f"SELECT {profile_stats_sql(tenant.schema)} AS stats"
        " FROM (SELECT %s::uuid AS customer_id) p",
        customer_id,
    )
    return row["stats"]


def test_a_survivors_stats_count_the_sources_orders_and_a_day_both_bought_on_once(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (survivor, _), (source, _) = person(loyal), person(loyal)
    buy(loyal, DAY1, 4000, by=survivor)
    buy(loyal, DAY1 + timedelta(days=1), 2000, by=survivor)
    buy(loyal, DAY1 + timedelta(days=1, hours=3), 1000, by=source)  # the same local day
    refund(loyal, buy(loyal, DAY1 - timedelta(days=5), 3000, by=source), 500)

    merge(loyal, survivor, source)

    got = stats(sql, loyal, survivor)
    assert {k: got[k] for k in ("order_count", "total_spend", "refund_count")} == {
        "order_count": 4,
        "total_spend": 9500,
        "refund_count": 1,
    }
    assert got["purchase_days"] == 3
    assert got["avg_order_value"] == 9500 // 4
    assert datetime.fromisoformat(got["first_order_at"]) == DAY1 - timedelta(days=5)
    assert datetime.fromisoformat(got["last_order_at"]) == DAY1 + timedelta(days=1, hours=3)
    assert stats(sql, loyal, source) is EMPTY


def test_undo_gives_each_side_the_stats_it_had_before_the_merge(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (survivor, _), (source, _) = person(loyal), person(loyal)
    buy(loyal, DAY1, 4000, by=survivor)
    refund(loyal, buy(loyal, DAY1, 3000, by=source), 1000)
    buy(loyal, DAY1 + timedelta(days=2), 1500, by=source)
    before = stats(sql, loyal, survivor), stats(sql, loyal, source)
    merge_id = merge(loyal, survivor, source)
    assert stats(sql, loyal, survivor)["order_count"] == 3

    undo(loyal, merge_id)

    assert (stats(sql, loyal, survivor), stats(sql, loyal, source)) == before


def test_chained_merges_count_for_the_last_survivor_and_unwind_one_link_at_a_time(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (a, _), (b, _), (c, _) = person(loyal), person(loyal), person(loyal)
    for n, x in enumerate((a, b, c)):
        buy(loyal, DAY1 + timedelta(days=n), 1000 * (n + 1), by=x)
    first = merge(loyal, b, c)
    second = merge(loyal, a, b)
    got = stats(sql, loyal, a)
    assert (got["order_count"], got["total_spend"], got["purchase_days"]) == (3, 6000, 3)
    assert (stats(sql, loyal, b), stats(sql, loyal, c)) == (EMPTY, EMPTY)

    undo(loyal, second)
    assert [stats(sql, loyal, x)["total_spend"] for x in (a, b)] == [1000, 5000]
    assert stats(sql, loyal, c) is EMPTY
    undo(loyal, first)
    assert [stats(sql, loyal, x)["total_spend"] for x in (a, b, c)] == [1000, 2000, 3000]


def test_an_order_the_undo_reassigns_counts_for_the_source_with_its_later_refund(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (survivor, _), (source, who) = person(loyal), person(loyal)
    buy(loyal, DAY1, 4000, by=survivor)
    buy(loyal, DAY1, 1000, by=source)
    merge_id = merge(loyal, survivor, source)
    routed = buy(loyal, DAY1 + timedelta(days=1), 2000, by=who)  # goes to the survivor
    assert stats(sql, loyal, survivor)["order_count"] == 3

    undo(loyal, merge_id)
    refund(loyal, routed, 500)

    assert stats(sql, loyal, survivor)["order_count"] == 1
    got = stats(sql, loyal, source)
    assert (got["order_count"], got["total_spend"], got["refund_count"]) == (2, 2500, 1)
    assert got["purchase_days"] == 2


def test_stats_do_not_depend_on_where_batches_end(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (a, _), (b, who), (c, _) = person(loyal), person(loyal), person(loyal)
    order = buy(loyal, DAY1, 3000, by=b)
    first = merge(loyal, a, b)
    routed = buy(loyal, DAY1 + timedelta(days=1), 2000, by=who)
    refund(loyal, order, 1000)
    merge(loyal, a, c)
    undo(loyal, first)
    refund(loyal, routed, 700)
    buy(loyal, DAY1, 100, by=c)  # merged away: counts for a
    catch_up(loyal, STATS, batch_size=1)  # live: one event at a time

    build_fresh(loyal, STATS, batch_size=5000)  # the rebuild: one batch

    live = dump(sql, loyal, STATS.tables)
    assert live == dump(sql, loyal, [t + REBUILD_SUFFIX for t in STATS.tables])
    assert [stats(sql, loyal, x)["order_count"] for x in (a, b)] == [1, 2]


def test_a_tenant_on_the_layout_before_merges_counted_is_rebuilt_from_the_log(
    runtime: Runtime, loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (survivor, _), (source, _) = person(loyal), person(loyal)
    buy(loyal, DAY1, 4000, by=survivor)
    buy(loyal, DAY1, 1000, by=source)
    merge(loyal, survivor, source)
    catch_up(loyal, STATS)
    # As provisioned before: per-customer stats and days only, tracked up to the head.
    schema = f'"{loyal.schema}"'
    sql.execute(f"DROP TABLE {schema}.customer_stats_orders, {schema}.customer_stats_links")
    sql.execute(f"CREATE TABLE {schema}.customer_order_days (customer_id uuid, day date)")
    sql.execute(
        "UPDATE membercore.tenants SET schema_version = %s WHERE slug = %s",
        (TENANT_SCHEMA_VERSION - 1, loyal.slug),
    )

    upgraded = Tenants(runtime.pool, installers=runtime.tenants.installers).get(loyal.slug)

    assert rows(sql, loyal, "SELECT to_regclass('{s}.customer_order_days') AS t") == [{"t": None}]
    catch_up(upgraded, STATS)
    assert stats(sql, upgraded, survivor)["total_spend"] == 5000
