"""Orders and refunds on real PostgreSQL: earning, idempotency, back-dating, program versions,
exact reversal, atomicity, concurrency, batches and the stats projection."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.kernel import Caller, Outcome, execute
from application.orders import BatchItem, OrderLineInput, PlaceOrder, RefundOrder, place_orders
from application.privacy import EraseCustomer
from application.program import define_program
from domain.errors import (
    ClientIdReused,
    CustomerErased,
    CustomerNotFound,
    RefundExceedsOrder,
)
from domain.order import Order
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from projections.customer_stats import CustomerStatsProjection
from projections.engine import catch_up
from tests.integration.orders_support import CALLER, place, refund_now
from tests.integration.points_support import customer, now
from tests.integration.support import events, rows, run_at_once

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 365},
        },
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]},
    ],
    "benefits": [{"code": "free_shipping", "quota": {"count": 2, "period": "month"}}],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "growth",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "calendar", "period": "year"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 1000, "benefits": ["free_shipping"]},
            ],
        }
    ],
}


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def order(customer_id: UUID | None = None, **kw: Any) -> PlaceOrder:
    fields: dict[str, Any] = {
        "order_id": f"o-{uuid4().hex[:12]}",
        "channel": "tmall",
        "placed_at": now() - timedelta(minutes=1),
        "amount": 2933,
        "customer_id": customer_id,
    }
    fields.update(kw)
    return PlaceOrder(**fields)


def answered(item: BatchItem) -> str:
    """A batch item's outcome, or the name of the error that refused it."""
    return type(item.error).__name__ if item.error else str(item.outcome)


def account(tenant: Tenant, customer_id: UUID, point_type: str = "points") -> PointsAccount:
    acc: PointsAccount = tenant.app.repository.get(PointsAccount.id_for(customer_id, point_type))
    return acc


def test_an_order_earns_points_per_the_rules_into_a_lot_of_the_customer(loyal: Tenant) -> None:
    cid = customer(loyal)
    result = place(loyal.app, order(cid))
    assert result.outcome is Outcome.CREATED
    assert result.body["points"] == [
        {"point_type": "points", "earned": 29},
        {"point_type": "growth", "earned": 29},
    ]
    assert account(loyal, cid).available(now()) == 29


def test_the_same_order_again_is_a_replay_that_writes_nothing(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    cmd = order(cid)
    first = place(loyal.app, cmd)
    before = len(events(sql, loyal))
    again = place(loyal.app, cmd)
    assert again.outcome is Outcome.DONE
    assert again.body == first.body
    assert again.position == first.position
    assert len(events(sql, loyal)) == before
    assert account(loyal, cid).available(now()) == 29


def test_the_same_order_id_with_another_body_is_refused(loyal: Tenant) -> None:
    cid = customer(loyal)
    cmd = order(cid)
    place(loyal.app, cmd)
    with pytest.raises(ClientIdReused):
        place(loyal.app, order(cid, order_id=cmd.order_id, amount=1))


def test_order_ids_are_per_channel(loyal: Tenant) -> None:
    cid = customer(loyal)
    a = place(loyal.app, order(cid, order_id="same", channel="tmall"))
    b = place(loyal.app, order(cid, order_id="same", channel="jd"))
    assert a.outcome is b.outcome is Outcome.CREATED
    assert account(loyal, cid).available(now()) == 58


def test_an_identity_nobody_holds_registers_the_buyer_and_later_orders_find_them(
    loyal: Tenant,
) -> None:
    who = ("jd_pin", f"pin-{uuid4()}")
    first = place(loyal.app, order(identity=who, channel="jd"))
    second = place(loyal.app, order(identity=who, channel="jd"))
    cid = UUID(first.body["customer_id"])
    assert second.body["customer_id"] == str(cid)
    assert account(loyal, cid).available(now()) == 58


def test_an_order_for_an_unknown_customer_is_refused_and_writes_nothing(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    before = len(events(sql, loyal))
    with pytest.raises(CustomerNotFound):
        place(loyal.app, order(uuid4()))
    assert len(events(sql, loyal)) == before


def test_an_order_for_an_erased_customer_is_refused(loyal: Tenant) -> None:
    cid = customer(loyal)
    execute(loyal.app, EraseCustomer(cid, None), Caller("t"))
    with pytest.raises(CustomerErased):
        place(loyal.app, order(cid))


def test_a_back_dated_order_expires_by_its_own_time(loyal: Tenant) -> None:
    cid = customer(loyal)
    long_ago = now() - timedelta(days=800)
    recent = now() - timedelta(days=10)
    place(loyal.app, order(cid, placed_at=long_ago))
    place(loyal.app, order(cid, placed_at=recent))
    acc = account(loyal, cid)
    assert acc.available(now()) == 29  # the lot earned 800 days ago is already past expiry


def test_an_order_is_evaluated_with_the_program_version_in_force_when_placed(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    before_change = now()
    time.sleep(0.01)
    doubled = {**PROGRAM, "point_types": [dict(PROGRAM["point_types"][0])]}
    doubled["point_types"][0]["earn"] = [{"per_amount": 100, "points": 2}]
    doubled["level_groups"] = []
    define_program(loyal.app, doubled, "t")
    old = place(loyal.app, order(cid, placed_at=before_change, amount=1000))
    new = place(loyal.app, order(cid, amount=1000, placed_at=now()))
    assert old.body["points"][0] == {"point_type": "points", "earned": 10}
    assert new.body["points"] == [{"point_type": "points", "earned": 20}]
    placed: Order = loyal.app.repository.get(Order.id_for("tmall", old.body["order_id"]))
    assert placed.program_version == 1


def test_partial_refunds_accumulate_and_reverse_all_points_once_refunded_in_full(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    placed = place(loyal.app, order(cid, amount=10_000))
    oid = placed.body["order_id"]
    r1 = refund_now(loyal.app, RefundOrder("tmall", oid, "r1", amount=3_333))
    r2 = refund_now(loyal.app, RefundOrder("tmall", oid, "r2", amount=6_667))
    reversed_ = [
        p["reversed"] for r in (r1, r2) for p in r.body["points"] if p["point_type"] == "points"
    ]
    assert sum(reversed_) == 100
    assert r2.body["refunded_total"] == 10_000
    assert account(loyal, cid).available(now()) == 0
    with pytest.raises(RefundExceedsOrder):
        refund_now(loyal.app, RefundOrder("tmall", oid, "r3", amount=1))


def test_a_refund_by_lines_reverses_what_those_lines_earned(loyal: Tenant) -> None:
    cid = customer(loyal)
    lines = [OrderLineInput("a", "sku-a", 1, 6000), OrderLineInput("b", "sku-b", 2, 4000)]
    placed = place(loyal.app, order(cid, amount=10_000, lines=lines))
    oid = placed.body["order_id"]
    refund = refund_now(loyal.app, RefundOrder("tmall", oid, "r1", lines={"b": 4000}))
    points = next(p for p in refund.body["points"] if p["point_type"] == "points")
    assert points["reversed"] == 40
    assert account(loyal, cid).available(now()) == 60


def test_the_same_refund_again_is_a_replay_and_another_body_is_refused(loyal: Tenant) -> None:
    cid = customer(loyal)
    oid = place(loyal.app, order(cid, amount=1000)).body["order_id"]
    first = refund_now(loyal.app, RefundOrder("tmall", oid, "r1", amount=500))
    again = refund_now(loyal.app, RefundOrder("tmall", oid, "r1", amount=500))
    assert again.outcome is Outcome.DONE
    assert again.body == first.body
    with pytest.raises(ClientIdReused):
        refund_now(loyal.app, RefundOrder("tmall", oid, "r1", amount=400))


def test_the_same_order_refunded_in_full_twice_at_once_succeeds_exactly_once(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    for round_ in range(5):
        oid = place(loyal.app, order(cid, amount=5000)).body["order_id"]

        def refund(i: int, oid: str = oid, round_: int = round_) -> str:
            try:
                refund_now(loyal.app, RefundOrder("tmall", oid, f"r{round_}-{i}", amount=5000))
            except RefundExceedsOrder:
                return "refused"
            return "refunded"

        outcomes = run_at_once(4, refund)
        assert sorted(outcomes) == ["refunded", "refused", "refused", "refused"]
        placed: Order = loyal.app.repository.get(Order.id_for("tmall", oid))
        assert placed.refunded_total == 5000
    assert account(loyal, cid).available(now()) == 0


def test_the_same_new_order_placed_at_once_is_placed_once(loyal: Tenant) -> None:
    cid = customer(loyal)
    cmd = order(cid, amount=1000)
    outcomes = run_at_once(4, lambda i: place(loyal.app, cmd).outcome)
    assert sorted(outcomes) == ["created", "done", "done", "done"]
    assert account(loyal, cid).available(now()) == 10


def test_a_batch_places_each_order_on_its_own(loyal: Tenant) -> None:
    cid = customer(loyal)
    good = order(cid, amount=1000)
    unknown = order(uuid4())
    who = ("jd_pin", f"pin-{uuid4()}")
    new_a, new_b = order(identity=who), order(identity=who)

    items, position = place_orders(loyal.app, [good, unknown, good, new_a, new_b], CALLER)
    assert [answered(i) for i in items] == ["created", "CustomerNotFound", "done"] + 2 * ["created"]
    assert items[3].body
    assert items[4].body
    assert items[3].body["customer_id"] == items[4].body["customer_id"]
    assert position == loyal.app.recorder.max_notification_id()
    assert account(loyal, cid).available(now()) == 10


def test_stats_count_orders_spend_net_of_refunds_and_distinct_days(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    day1 = datetime(2026, 1, 5, 3, tzinfo=UTC)  # 11:00 in Shanghai
    oid = place(loyal.app, order(cid, amount=4000, placed_at=day1)).body["order_id"]
    place(loyal.app, order(cid, amount=2000, placed_at=day1 + timedelta(hours=1)))
    place(loyal.app, order(cid, amount=3000, placed_at=day1 + timedelta(days=3)))
    refund_now(loyal.app, RefundOrder("tmall", oid, "r1", amount=1000))
    catch_up(loyal, CustomerStatsProjection())
    (row,) = rows(sql, loyal, "SELECT * FROM {s}.customer_stats WHERE customer_id = %s", cid)
    assert row["order_count"] == 3
    assert row["gross_spend"] - row["refunded"] == 8000
    assert row["refund_count"] == 1
    assert row["purchase_days"] == 2
    assert row["first_order_at"] == day1
    assert row["last_order_at"] == day1 + timedelta(days=3)


def test_a_batch_racing_the_same_orders_placed_one_by_one_places_each_once(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    for _ in range(5):
        cmds = [order(cid, amount=1000) for _ in range(3)]

        def work(i: int, cmds: list[PlaceOrder] = cmds) -> list[str]:
            if i == 0:
                items, _ = place_orders(loyal.app, cmds, CALLER)
                return [answered(item) for item in items]
            return [str(place(loyal.app, c).outcome) for c in cmds]

        batch, single = run_at_once(2, work)
        # Every order answered by both: placed once, and answered again once.
        both = zip(batch, single, strict=True)
        assert all(sorted((b, s)) == ["created", "done"] for b, s in both)
    assert account(loyal, cid).available(now()) == 150


def test_concurrent_batches_for_the_same_buyers_place_every_order_once(loyal: Tenant) -> None:
    buyers = [customer(loyal) for _ in range(6)]

    def work(i: int) -> list[str]:
        cmds = [order(buyers[k % 6], amount=1000, order_id=f"b{i}-{k}") for k in range(30)]
        items, _ = place_orders(loyal.app, cmds, CALLER)
        return [answered(item) for item in items]

    statuses = run_at_once(3, work)
    assert all(s == "created" for batch in statuses for s in batch)
    assert sum(account(loyal, b).available(now()) for b in buyers) == 3 * 30 * 10
