"""D1 for ``points_balance``: its tables do not depend on where batch boundaries fall. Applied one
event per batch (a live projector following the log) or in any split (a catch-up, a rebuild),
the same events leave the same rows, byte for byte (real PostgreSQL)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.context import CommandContext
from application.kernel import Caller, execute
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
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.engine import catch_up, head_position
from projections.points_balance import PointsBalanceProjection
from tests.integration.merge_support import merged, undo
from tests.integration.orders_support import place, refund_now
from tests.integration.support import dump, register, rows, run_at_once
from tests.integration.test_merge_assets import PROGRAM, now

PROJECTION = PointsBalanceProjection()
CTX = CommandContext("t")


def applied_in(
    sql: psycopg.Connection[Any], tenant: Tenant, name: str, cuts: Sequence[int], batch_size: int
) -> list[Any]:
    """Fresh ``*_<name>`` tables fed from position 0 in batches of at most ``batch_size``
    events that also end at each position of ``cuts``; their canonical dump."""
    suffix = f"_{name}"
    with tenant.datastore.transaction(commit=True) as curs:
        PROJECTION.create_tables(curs, tenant.schema, suffix)
    for until in [*sorted(cuts), head_position(tenant)]:
        catch_up(tenant, PROJECTION, batch_size=batch_size, tracking_name=name, suffix=suffix,
                 until=until)  # fmt: skip
    return dump(sql, tenant, [t + suffix for t in PROJECTION.tables])


def one_by_one(sql: psycopg.Connection[Any], tenant: Tenant, name: str) -> list[Any]:
    """What a live projector following the log event by event holds."""
    return applied_in(sql, tenant, name, (), 1)


def differing(a: list[Any], b: list[Any]) -> list[tuple[str, str]]:
    """Rows in either dump and not in the other (both ways), tagged with their side."""
    out: list[tuple[str, str]] = []
    for table_a, table_b in zip(a, b, strict=True):
        rows_a, rows_b = {r["row"] for r in table_a}, {r["row"] for r in table_b}
        out += [("only one by one", r) for r in sorted(rows_a - rows_b)]
        out += [("only batched", r) for r in sorted(rows_b - rows_a)]
    return out


def pair(tenant: Tenant, tag: str = "") -> tuple[UUID, UUID]:
    """Two customers, known by ``("pos_member_no", f"{tag}m0")`` and ``f"{tag}m1"``; the first
    pair (no tag) defines the program."""
    if not tag:
        define_program(tenant.app, PROGRAM, CTX.actor)
    return (
        register(tenant, ("pos_member_no", f"{tag}m0")).customer_id,
        register(tenant, ("pos_member_no", f"{tag}m1")).customer_id,
    )


def test_merging_a_pair_again_after_undo_and_refund_is_the_same_in_any_batches(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    survivor, source = pair(tenant)
    place(tenant.app, PlaceOrder("m0", "pos", now(), 60000, survivor))
    place(tenant.app, PlaceOrder("m1", "pos", now(), 60000, source))
    merge_id = merged(tenant.app, survivor, source)
    # Through the source's identity while merged: the survivor holds its lot, the undo sends
    # it back to the source, whose refund leaves 200 of its 300.
    place(tenant.app, PlaceOrder("mr", "pos", now(), 30000, identity=("pos_member_no", "m1")))
    before_undo = head_position(tenant)
    undo(tenant.app, merge_id)
    refund_now(tenant.app, RefundOrder("pos", "mr", "r1", amount=10000))
    merged(tenant.app, survivor, source)

    # Up to before the undo in one batch (the survivor's row of the routed lot exists), then
    # the undo taking it away and the second merge bringing it back in the next one.
    batched = applied_in(sql, tenant, "cut", [before_undo], 10_000)

    assert differing(one_by_one(sql, tenant, "one"), batched) == []


def test_an_undo_returning_a_lot_the_survivor_spent_from_is_the_same_in_any_batches(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    survivor, source = pair(tenant)
    place(tenant.app, PlaceOrder("m1", "pos", now(), 30000, source))
    before_merge = head_position(tenant)
    merge_id = merged(tenant.app, survivor, source)
    execute(
        tenant.app,
        RedeemPoints(survivor, "points", redemption_id="x1", amount=100, reason=None),
        Caller(CTX.actor),
    )
    undo(tenant.app, merge_id)

    # The source's row of its lot exists before the batch holding the merge taking it away
    # and the undo bringing back 200 of its 300.
    batched = applied_in(sql, tenant, "cut", [before_merge], 10_000)

    assert differing(one_by_one(sql, tenant, "one"), batched) == []


class Pair:
    """Two customers living a random life of orders (by id, or by the second one's identity:
    routed to the survivor while merged), refunds, redemptions and their reversals, holds,
    adjustments, merges either way and undos."""

    def __init__(self, tenant: Tenant, tag: str = "") -> None:
        self.tenant = tenant
        self.tag = tag
        self.ids = pair(tenant, tag)
        self.orders: list[str] = []
        self.redemptions: list[tuple[UUID, str]] = []
        self.merge_id: UUID | None = None
        self.n = 0

    def next_id(self, kind: str) -> str:
        self.n += 1
        return f"{self.tag}{kind}{self.n}"

    def step(self, kind: str, who: int, amount: int) -> None:
        app, customer = self.tenant.app, self.ids[who % 2]
        try:
            if kind == "order":
                order_id = self.next_id("o")
                routed = {"identity": ("pos_member_no", f"{self.tag}m1")}
                whom: dict[str, Any] = routed if who == 2 else {"customer_id": customer}
                # Now, or so long ago that its points expire at once.
                placed = now() - timedelta(days=400 if amount % 5 == 4 else 0)
                place(app, PlaceOrder(order_id, "pos", placed, amount * 100, **whom))
                self.orders.append(order_id)
            elif kind == "refund" and self.orders:
                order_id = self.orders[who % len(self.orders)]
                refund_now(app, RefundOrder("pos", order_id, self.next_id("r"), amount=amount * 10))
            elif kind == "redeem":
                redemption_id = self.next_id("x")
                execute(
                    app,
                    RedeemPoints(
                        customer, "points", redemption_id=redemption_id, amount=amount, reason=None
                    ),
                    Caller(CTX.actor),
                )
                self.redemptions.append((customer, redemption_id))
            elif kind == "reverse" and self.redemptions:
                holder, redemption_id = self.redemptions[who % len(self.redemptions)]
                execute(
                    app,
                    ReverseRedemption(
                        holder,
                        "points",
                        redemption_id,
                        reversal_id=self.next_id("v"),
                        amount=amount,
                        reason=None,
                    ),
                    Caller(CTX.actor),
                )
            elif kind == "hold":
                hold_id = self.next_id("h")
                execute(
                    app,
                    HoldPoints(customer, "points", hold_id=hold_id, amount=amount),
                    Caller(CTX.actor),
                )
                if amount % 3 == 0:
                    execute(app, CaptureHold(customer, "points", hold_id), Caller(CTX.actor))
                elif amount % 3 == 1:
                    execute(app, ReleaseHold(customer, "points", hold_id), Caller(CTX.actor))
            elif kind == "adjust":
                execute(
                    app,
                    AdjustPoints(
                        customer,
                        "points",
                        adjustment_id=self.next_id("a"),
                        amount=amount if who else -amount,
                        reason="c",
                    ),
                    Caller(CTX.actor),
                )
            elif kind == "merge" and self.merge_id is None:
                survivor, source = self.ids if who % 2 == 0 else self.ids[::-1]
                self.merge_id = merged(app, survivor, source)
            elif kind == "undo" and self.merge_id is not None:
                undo(app, self.merge_id)
                self.merge_id = None
        except DomainError:
            pass  # refused (not enough points, a merged-away customer, ...): nothing written


STEP = st.tuples(
    st.sampled_from(["order", "order", "refund", "redeem", "reverse", "hold", "adjust"]),
    st.integers(0, 2),
    st.integers(1, 400),
)
# Rounds: steps, a merge (either way), steps while merged, perhaps its undo.
ROUND = st.tuples(
    st.lists(STEP, max_size=3), st.integers(0, 1), st.lists(STEP, max_size=4), st.booleans()
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rounds=st.lists(ROUND, min_size=1, max_size=4), data=st.data())
def test_any_batch_split_leaves_the_tables_one_event_per_batch_leaves(
    runtime: Runtime,
    sql: psycopg.Connection[Any],
    rounds: list[tuple[list[tuple[str, int, int]], int, list[tuple[str, int, int]], bool]],
    data: Any,
) -> None:
    tenant = runtime.tenants.create(f"pb_{secrets.token_hex(5)}")
    life = Pair(tenant)
    steps = [
        step
        for before, direction, merged, undo in rounds
        for step in [*before, ("merge", direction, 0), *merged, *([("undo", 0, 0)] if undo else [])]
    ]
    starts = []  # where each step's events begin
    for step in steps:
        starts.append(head_position(tenant))
        life.step(*step)
    head = head_position(tenant)
    cuts = data.draw(st.lists(st.sampled_from(starts) | st.integers(1, head), max_size=6))
    batch_size = data.draw(st.integers(1, 12), label="batch_size")
    one = one_by_one(sql, tenant, "one")

    assert differing(one, applied_in(sql, tenant, "cut", cuts, batch_size)) == []
    # Two batches split between any two steps: a row the first leaves, changed in the second.
    for n, start in enumerate(starts):
        assert differing(one, applied_in(sql, tenant, f"at{n}", [start], 10_000)) == [], start


LIFE = [
    ("order", 0, 300), ("order", 1, 200), ("order", 1, 150), ("merge", 0, 0), ("order", 2, 300),
    ("redeem", 0, 250), ("hold", 0, 31), ("undo", 0, 0), ("refund", 2, 40), ("merge", 0, 0),
    ("redeem", 0, 100), ("undo", 0, 0), ("merge", 1, 0), ("adjust", 1, 70), ("reverse", 0, 50),
]  # fmt: skip


def test_catch_ups_running_at_once_neither_fail_nor_differ_from_one_event_per_batch(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    for tag in ("", "p2", "p3"):
        life = Pair(tenant, tag)
        for step in LIFE:
            life.step(*step)
    with tenant.datastore.transaction(commit=True) as curs:
        PROJECTION.create_tables(curs, tenant.schema, "_race")

    # The worker and the expiry job (its catch-up first) on the same tables, batches ending
    # at different places: each batch rewrites rows another may be writing.
    run_at_once(4, lambda i: catch_up(tenant, PROJECTION, batch_size=(1, 2, 3, 7)[i],
                                      tracking_name="race", suffix="_race"))  # fmt: skip

    raced = dump(sql, tenant, [t + "_race" for t in PROJECTION.tables])
    assert differing(one_by_one(sql, tenant, "one"), raced) == []


def test_a_reversal_settling_a_refund_of_spent_points_is_the_same_in_any_batches(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    customer, _ = pair(tenant)
    place(tenant.app, PlaceOrder("s1", "pos", now(), 30000, customer))
    execute(
        tenant.app,
        RedeemPoints(customer, "points", redemption_id="x1", amount=300, reason=None),
        Caller(CTX.actor),
    )
    refund_now(tenant.app, RefundOrder("pos", "s1", "r1", amount=30000))  # 300 spent: debt
    cut = head_position(tenant)
    execute(
        tenant.app,
        ReverseRedemption(customer, "points", "x1", reversal_id="v1", amount=None, reason=None),
        Caller(CTX.actor),
    )

    one = one_by_one(sql, tenant, "one")

    assert differing(one, applied_in(sql, tenant, "cut", [cut], 10_000)) == []
    # The 300 restored paid the refund's debt: no debt, nothing free on the lot.
    (account,) = rows(sql, tenant, "SELECT account_id, debt FROM {s}.points_balance_one"
                      " WHERE customer_id = %s AND point_type = 'points'", customer)  # fmt: skip
    assert account["debt"] == 0
    lots = rows(sql, tenant, "SELECT remaining FROM {s}.points_lots_one WHERE account_id = %s",
                account["account_id"])  # fmt: skip
    assert sum(r["remaining"] for r in lots) == 0
