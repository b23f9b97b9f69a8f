"""Erasing a customer who holds points, a level and orders: the money facts stay and still
balance, and a later refund of their order still reverses exactly (real PostgreSQL)."""

from __future__ import annotations

import pytest

from application.kernel import Caller, execute
from application.orders import RefundOrder
from application.points.queries import points_entries
from application.privacy import EraseCustomer
from application.program import define_program
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from tests.integration.orders_support import refund_now
from tests.integration.test_merge_assets import (
    PROGRAM,
    account,
    balance,
    buy,
    customer,
    level,
    qualifying,
    redeem,
)


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def balanced(acc: PointsAccount) -> bool:
    """Per lot: earned = redeemed + expired + reversed + adjusted + transferred + remaining +
    held; and over the account, what was earned and not taken is what the lots hold."""
    per_lot = all(
        lot.earned
        == lot.redeemed
        + lot.expired
        + lot.reversed
        + lot.adjusted
        + lot.transferred
        + lot.remaining
        + lot.held
        for lot in acc.lots.values()
    )
    t = acc.totals
    taken = t["redeemed"] + t["expired"] + t["reversed"] + t["adjusted_out"] + t["debt_repaid"]
    held = sum(lot.remaining + lot.held for lot in acc.lots.values())
    return per_lot and t["earned"] + t["adjusted_in"] - taken == held


def test_an_erased_customers_points_level_and_orders_stay_and_a_later_refund_reverses(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    order_id = buy(loyal, cid, 12_000)  # 120 points, gold
    redeem(loyal, cid, 20)
    ledger = points_entries(loyal.app, cid, "points").items

    execute(loyal.app, EraseCustomer(cid, "customer request"), Caller("t"))

    acc = account(loyal, cid)
    assert acc is not None
    assert balanced(acc)
    assert balance(loyal, cid) == 100
    assert points_entries(loyal.app, cid, "points").items == ledger
    assert (qualifying(loyal, cid), level(loyal, cid)) == (12_000, "gold")

    refund_now(loyal.app, RefundOrder("pos", order_id, "r1", amount=6_000))

    acc = account(loyal, cid)
    assert acc is not None
    assert balanced(acc)
    assert balance(loyal, cid) == 40  # 60 points reversed from the order's own lot
    assert acc.lots[f"order:pos:{order_id}"].reversed == 60
    assert (qualifying(loyal, cid), level(loyal, cid)) == (6_000, "normal")
