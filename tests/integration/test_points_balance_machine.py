"""A stateful test of the ``points_balance`` projection on real PostgreSQL, driven through the
application: orders (earning, back-dated), refunds, redemptions and their reversals, holds
(with and without a timeout) captured or released, adjustments both ways, the expiry job and
the clock moving on. Amounts and ids are drawn so that many commands are refused.

After every step the projection is caught up and its rows are checked against the ledger (each
account aggregate loaded from the events): ``points_balance`` (customer, type, debt, held),
``points_lots`` (every open lot with its counters and dates) and ``points_holds`` (every open
hold with a timeout). Around every refused command, a dump of all three tables (as text, so byte
for byte) and the event count are taken before and after: a refusal changes neither.

The default profile runs a few examples (seconds); ``HYPOTHESIS_PROFILE=long`` runs more, and
the ``slow`` test many more.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from psycopg.sql import SQL, Identifier

from application.context import CommandContext
from application.errors import ApplicationError
from application.loaders import points_account
from application.orders import PlaceOrder, RefundOrder
from application.points.commands import (
    AdjustPoints,
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from application.program import define_program
from domain.errors import DomainError
from domain.points_account import PointsAccount
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.engine import catch_up, head_position
from projections.points_balance import BALANCE, HOLDS, LOTS, PointsBalanceProjection
from projections.points_balance.job import run_expiry
from tests.conftest import new_slug
from tests.integration.orders_support import place, refund_now
from tests.integration.points_support import run
from tests.integration.support import dump, register

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 60},
            "refund_policy": "negative",
        }
    ],
}
PROJECTION = PointsBalanceProjection()
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CTX = CommandContext("machine")
REFUSED = (DomainError, ApplicationError)


class PointsBalanceMachine(RuleBasedStateMachine):
    orders = Bundle("orders")
    redemptions = Bundle("redemptions")
    holds = Bundle("holds")

    def __init__(self, runtime: Runtime, sql: psycopg.Connection[Any]) -> None:
        super().__init__()
        self.sql = sql
        self.tenant: Tenant = runtime.tenants.create(new_slug("pbm"))
        self.now = T0
        self.tenant.app.clock = lambda: self.now
        define_program(self.tenant.app, PROGRAM, CTX.actor)
        self.customer: UUID = register(self.tenant, ("member_no", "m-1")).customer_id
        self.ids = 0
        self.refusals = 0

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    # -- the refusal check -----------------------------------------------------------------

    def snapshot(self) -> tuple[int, list[Any]]:
        catch_up(self.tenant, PROJECTION)
        return head_position(self.tenant), dump(self.sql, self.tenant, PROJECTION.tables)

    def command(self, run: Callable[[], Any]) -> Any:
        """Run a command; if it is refused, nothing of the log or the tables changed."""
        before = self.snapshot()
        try:
            return run()
        except REFUSED:
            self.refusals += 1
            assert self.snapshot() == before, "a refused command changed the log or the tables"
            return None

    # -- rules -------------------------------------------------------------------------------

    @rule(target=orders, amount=st.integers(1, 400), back_days=st.sampled_from([0, 0, 1, 30, 70]))
    def place(self, amount: int, back_days: int) -> Any:
        order_id = self.next_id("o")
        placed_at = self.now - timedelta(days=back_days)
        cmd = PlaceOrder(order_id, "pos", placed_at, amount * 100, self.customer)
        result = self.command(lambda: place(self.tenant.app, cmd))
        return order_id if result is not None else None

    @rule(order=orders, amount=st.integers(1, 500))
    def refund(self, order: str | None, amount: int) -> None:
        if order is None:
            return
        cmd = RefundOrder("pos", order, self.next_id("rf"), amount=amount * 100)
        self.command(lambda: refund_now(self.tenant.app, cmd))

    @rule(target=redemptions, amount=st.integers(1, 300))
    def redeem(self, amount: int) -> Any:
        rid = self.next_id("r")
        result = self.command(
            lambda: run(self.tenant, RedeemPoints(self.customer, "points", rid, amount))
        )
        return rid if result is not None else f"{rid}-refused"

    @rule(redemption=redemptions, amount=st.none() | st.integers(1, 200))
    def reverse(self, redemption: str, amount: int | None) -> None:
        reversal = ReverseRedemption(
            self.customer, "points", redemption, self.next_id("v"), amount=amount
        )
        self.command(lambda: run(self.tenant, reversal))

    @rule(
        target=holds,
        amount=st.integers(1, 300),
        ttl=st.none() | st.sampled_from([60, 3600, 86400 * 3]),
    )
    def hold(self, amount: int, ttl: int | None) -> Any:
        hid = self.next_id("h")
        self.command(
            lambda: run(
                self.tenant, HoldPoints(self.customer, "points", hid, amount, ttl_seconds=ttl)
            )
        )
        return hid

    @rule(hold=holds)
    def capture(self, hold: str) -> None:
        self.command(lambda: run(self.tenant, CaptureHold(self.customer, "points", hold)))

    @rule(hold=consumes(holds))
    def release(self, hold: str) -> None:
        self.command(lambda: run(self.tenant, ReleaseHold(self.customer, "points", hold)))

    @rule(amount=st.integers(-300, 300).filter(bool))
    def adjust(self, amount: int) -> None:
        aid = self.next_id("a")
        self.command(
            lambda: run(self.tenant, AdjustPoints(self.customer, "points", aid, amount, "machine"))
        )

    @rule(days=st.sampled_from([0, 1, 2, 30, 61]), seconds=st.sampled_from([0, 59, 61, 3601]))
    def advance(self, days: int, seconds: int) -> None:
        self.now += timedelta(days=days, seconds=seconds)

    @rule()
    def expire(self) -> None:
        run_expiry(self.tenant, self.now)

    # -- the rows against the ledger -----------------------------------------------------------

    def table(self, name: str) -> list[dict[str, Any]]:
        return self.sql.execute(
            SQL("SELECT * FROM {}.{}").format(Identifier(self.tenant.schema), Identifier(name))
        ).fetchall()

    @invariant()
    def rows_equal_the_ledger(self) -> None:
        catch_up(self.tenant, PROJECTION)
        account = points_account(self.tenant.app, self.customer, "points")
        balance, lots, holds = self.table(BALANCE), self.table(LOTS), self.table(HOLDS)
        if account is None:
            assert (balance, lots, holds) == ([], [], [])
            return
        assert balance == [
            {
                "account_id": account.id,
                "customer_id": self.customer,
                "point_type": "points",
                "debt": account.debt,
                "held": account.held,
            }
        ]
        assert {r["lot_id"]: _without(r, "account_id", "lot_id") for r in lots} == {
            lot.lot_id: {
                "earned": lot.earned,
                "remaining": lot.remaining,
                "held": lot.held,
                "earned_at": lot.earned_at,
                "active_at": lot.active_at,
                "expires_at": lot.expires_at,
            }
            for lot in account.lots.values()
        }
        assert {r["account_id"] for r in lots} <= {account.id}
        assert {r["hold_id"]: (r["points"], r["expires_at"]) for r in holds} == {
            h.hold_id: (h.points, h.expires_at)
            for h in account.holds.values()
            if h.expires_at is not None
        }
        assert all(r["account_id"] == account.id for r in holds)
        # The ledger's own arithmetic, per open lot.
        for lot in account.lots.values():
            assert lot.remaining >= 0
            assert lot.held == sum(
                n for h in account.holds.values() for lot_id, n in h.lots if lot_id == lot.lot_id
            )
        assert account.id == PointsAccount.id_for(self.customer, "points")


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def _profile_examples(default: int, long: int) -> int:
    return long if os.environ.get("HYPOTHESIS_PROFILE") == "long" else default


def run_machine(runtime: Runtime, sql: psycopg.Connection[Any], examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: PointsBalanceMachine(runtime, sql),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_points_balance_rows_equal_the_ledger_after_every_step_and_refusals_change_nothing(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    run_machine(runtime, sql, examples=_profile_examples(8, 150), steps=25)


@pytest.mark.slow
def test_points_balance_rows_equal_the_ledger_long_profile(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    run_machine(runtime, sql, examples=300, steps=50)
