"""An order's multi-aggregate save is all or nothing, and a refund counts once whenever it comes.

* The save of an order (its order, the points accounts, the level membership) meets a points
  account whose next version another writer took in between: nothing of the order is stored, and
  the retry stores it whole, beside the other writer's event.
* A refund that arrives before its order is refused with nothing applied; once the order is
  there the refund applies, and sent again (twice) it is a replay: the points go back once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.kernel import Outcome
from application.orders import PlaceOrder, RefundOrder
from application.program import define_program
from domain.errors import OrderNotFound
from domain.level_membership import LevelMembership
from domain.order import Order
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from tests.integration.orders_support import place, refund_now
from tests.integration.support import events
from tests.integration.test_orders import PROGRAM, account, customer, now, order


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def streams(sql: psycopg.Connection[Any], tenant: Tenant) -> Counter[UUID]:
    """Events stored per stream."""
    return Counter(e["originator_id"] for e in events(sql, tenant))


def test_an_order_whose_points_account_version_is_taken_concurrently_stores_nothing_then_whole(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    place(loyal.app, order(cid, amount=1000))  # the accounts and levels exist
    points_id = PointsAccount.id_for(cid, "points")
    cmd = order(cid, amount=50_000)
    real_save = loyal.app.save
    seen: list[Counter[UUID]] = []
    saves: list[set[UUID]] = []

    def save_after_a_concurrent_adjustment(*aggregates: Any, **kw: Any) -> Any:
        saves.append({a.id for a in aggregates})
        if len(saves) == 1:
            assert points_id in saves[0], "the order's save holds its points account"
            # Another writer takes the points account's next version first.
            other: PointsAccount = loyal.app.repository.get(points_id)
            other.adjust("x1", 7, reason="goodwill", actor="t", at=now(), expires_at=None)
            real_save(other)
        else:
            seen.append(streams(sql, loyal))
        return real_save(*aggregates, **kw)

    before = streams(sql, loyal)
    loyal.app.save = save_after_a_concurrent_adjustment  # type: ignore[method-assign]
    try:
        result = place(loyal.app, cmd)
    finally:
        del loyal.app.save

    assert len(saves) == 2, "one conflict, then one retry"
    assert saves[0] == saves[1], "the retry saves the same aggregates"
    order_id = Order.id_for(cmd.channel, cmd.order_id)
    assert order_id in saves[0]
    assert LevelMembership.id_for(cid, "consumer") in saves[0]
    # Between the conflict and the retry: only the other writer's event was stored.
    assert seen[0] - before == Counter({points_id: 1})
    # After the retry: every part of the order, on top of the other writer's event.
    after = streams(sql, loyal)
    assert set(after - seen[0]) == saves[1]
    assert result.outcome is Outcome.CREATED
    acc = account(loyal, cid)
    assert acc.available(now()) == 10 + 7 + 500
    assert "adjustment:x1" in acc.lots


def test_a_refund_before_its_order_applies_nothing_then_once_however_often_it_comes(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    cmd: PlaceOrder = order(cid, amount=30_000)
    refund = RefundOrder(cmd.channel, cmd.order_id, "rf1", amount=10_000)
    before = len(events(sql, loyal))

    with pytest.raises(OrderNotFound):
        refund_now(loyal.app, refund)
    assert len(events(sql, loyal)) == before, "a refund of no order wrote something"

    place(loyal.app, cmd)
    assert account(loyal, cid).available(now()) == 300
    first = refund_now(loyal.app, refund)
    after_first = len(events(sql, loyal))
    again = refund_now(loyal.app, refund)
    third = refund_now(loyal.app, refund)

    assert first.outcome is Outcome.CREATED
    assert again.outcome is third.outcome is Outcome.DONE
    assert again.body == first.body == third.body
    assert len(events(sql, loyal)) == after_first, "a replayed refund wrote something"
    assert account(loyal, cid).available(now()) == 200
    stored: Order = loyal.app.repository.get(Order.id_for(cmd.channel, cmd.order_id))
    assert stored.refunded_total == 10_000
    assert list(stored.refunds) == ["rf1"]
