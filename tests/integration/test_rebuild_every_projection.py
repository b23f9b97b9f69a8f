"""D1 for every registered projection: rebuilt from event 0 after a mixed workload (every Customer
event, static tags included, merges and their undo, erasures whose keys are gone; orders,
refunds, orders reassigned by an undo, points redeemed (and reversed), held (captured, released,
timed out), adjusted and expired, levels upgraded, assessed, warned, downgraded and overridden),
the tables equal the live ones byte for byte; swapping the rebuild in changes nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.context import CommandContext
from application.kernel import Caller, Outcome, execute
from application.levels.assessment import run_level_assessments
from application.levels.overrides import EndLevelOverride, SetLevelOverride
from application.orders import OrderLineInput, PlaceOrder, RefundOrder
from application.points.commands import (
    AdjustPoints,
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from application.points.expiry import expire_due
from application.program import define_program
from application.registration import RegisterCustomer
from domain.customer import Customer
from domain.points_account import PointsAccount
from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections.engine import (
    REBUILD_SUFFIX,
    Projection,
    build_fresh,
    catch_up,
    head_position,
    rebuild,
    tracked_position,
)
from projections.registry import PROJECTIONS
from tests.integration import merge_support
from tests.integration.customer_events import ACTOR, Clock, erase, merge, person, undo_merge
from tests.integration.orders_support import place, refund_now
from tests.integration.support import dump, events, run_registration

CUSTOMER_TOPICS = {
    v.TOPIC
    for v in vars(Customer).values()
    if isinstance(v, type) and issubclass(v, Customer.Event | Customer.Created)
} - {Customer.Event.TOPIC, Customer.Created.TOPIC}
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
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "calendar", "period": "quarter", "warning_days": 30},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 100000},
                {"code": "platinum", "threshold": 300000},
            ],
        }
    ],
}


def activity(
    tenant: Tenant, clock: Clock, rng: random.Random, prefix: str, n: int
) -> list[Customer]:
    """``n`` customers and a mix of every kind of change, merges and undos."""
    people: list[Customer] = [
        person(
            tenant, clock, i, prefix, roles=["consumer", "agent"] if i % 4 == 0 else ["consumer"]
        )
        for i in range(n)
    ]
    shared = Identity("store_phone", f"{prefix}-021-555")
    for i, c in enumerate(people):
        at = clock()
        if i % 2 == 0:
            c.link_identities([Identity("jd_pin", f"{prefix}J{i}"), shared], actor=ACTOR, at=at)
        if i % 3 == 0:
            c.change_profile(
                {"name": f"Renamed{prefix}{i}", "attributes.city": None, "attributes.tier": i},
                channel=rng.choice(["app", "pos", None]),
                actor=ACTOR,
                at=clock(),
            )
        if i % 5 == 0:
            c.add_role("distributor", actor=ACTOR, at=clock())
            c.end_role("consumer", reason="upgraded", actor=ACTOR, at=clock())
        if i % 4 == 1:
            c.set_parent_agent(people[0].id, actor=ACTOR, at=clock())
        c.assign_owner(f"guide-{i % 3}", reason=None, actor=ACTOR, at=clock())
        if i % 6 == 5:
            c.end_owner(by="guide-x", reason="left", actor=ACTOR, at=clock())
        c.record_consent(
            purpose="marketing",
            channel=rng.choice(["sms", "email"]),
            granted=rng.random() < 0.7,
            policy_version="v1",
            source="app",
            actor=ACTOR,
            at=clock(),
        )
        if i % 3 != 2:
            tags = rng.sample(["vip", "b2b", "new", "churn_risk"], k=2)
            c.add_tags(tags, actor=ACTOR, at=clock(), channel=rng.choice(["pos", None]))
            if i % 6 == 1:
                c.remove_tag(tags[0], actor=ACTOR, at=clock())
        if i > 0 and i % 2 == 0:
            c.suggest_match(people[i - 1].id, "store_phone", actor=ACTOR, at=clock())
        if i % 7 == 3:
            c.unlink_identities([Identity("member_no", f"M{prefix}{i}")], actor=ACTOR, at=clock())
        tenant.app.save(c)
    # Merges: some stay, some are undone; a merged-away customer and a survivor get erased.
    for i in range(0, n - 1, 5):
        merge_id = merge(tenant, clock, people[i], people[i + 1])
        if i % 10 == 0:
            undo_merge(tenant, clock, people[i], people[i + 1], merge_id)
    return people


def erasures(tenant: Tenant, clock: Clock, prefix: str, people: list[Customer]) -> None:
    """Erase a few (a survivor, a merged-away, restored ones), then change some others."""
    n = len(people)
    # 1: merged away and restored by the undo; 5: a survivor; 6: merged away into 5; 11: restored.
    for i in (1, 2, 5, 6, 11, 15):
        if i < n:
            erase(tenant, clock, people[i])
    for i in range(3, n, 4):
        c = people[i]
        if not c.erased and c.merged_into is None:
            c.change_profile(
                {"email": f"late{prefix}{i}@x.cn"}, channel="app", actor=ACTOR, at=clock()
            )
            tenant.app.save(c)


def shopping(tenant: Tenant, clock: Clock, prefix: str, people: list[Customer]) -> list[UUID]:
    """Orders (with and without lines; back-dated past their points' expiry, or into the window's
    tail so a later assessment downgrades), refunds by amount and by line, redemptions, holds
    captured and released, adjustments both ways, level overrides set and ended. Returns the
    buyers."""
    app, ctx = tenant.app, CommandContext(ACTOR)
    buyers = [c for c in people if c.merged_into is None and not c.erased]
    for i, c in enumerate(buyers):
        amount = 30000 + 45000 * (i % 4)  # 300.00 .. 1650.00: gold from 1000.00
        lines = (
            [OrderLineInput("L1", "SKU-1", 1, amount // 2, "tea"),
             OrderLineInput("L2", "SKU-2", 2, amount // 4)]
            if i % 2 == 0 else None
        )  # fmt: skip
        order_id = f"{prefix}-{i}"
        placed = place(
            app, PlaceOrder(order_id, "tmall", clock(), amount, c.id, lines=lines, store_id="S1")
        )
        assert placed.outcome is Outcome.CREATED
        if i % 5 == 1:  # its points expired before it was synced: expired at once
            old = PlaceOrder(f"{order_id}-old", "pos", clock.now - timedelta(days=400), 20000, c.id)
            assert place(app, old).outcome is Outcome.CREATED
        if i % 5 == 2:  # gold from last year's spend: it leaves the window before July
            tail = PlaceOrder(
                f"{order_id}-tail", "jd", clock.now - timedelta(days=300), 150000, c.id
            )
            assert place(app, tail).outcome is Outcome.CREATED
        if i % 3 == 0:
            part: dict[str, Any] = {"lines": {"L1": amount // 4}} if lines else {"amount": 9000}
            refund = RefundOrder("tmall", order_id, "r1", **part)
            assert refund_now(app, refund).outcome is Outcome.CREATED
        if i % 4 == 1:
            execute(
                app,
                RedeemPoints(
                    c.id, "points", redemption_id=f"{order_id}-x", amount=10, reason="coupon"
                ),
                Caller(ctx.actor),
            )
            execute(
                app,
                ReverseRedemption(
                    c.id,
                    "points",
                    f"{order_id}-x",
                    reversal_id=f"{order_id}-v",
                    amount=4,
                    reason="returned",
                ),
                Caller(ctx.actor),
            )
        if i % 6 == 0:
            execute(
                app,
                HoldPoints(c.id, "points", hold_id=f"{order_id}-h1", amount=5),
                Caller(ctx.actor),
            )
            execute(app, CaptureHold(c.id, "points", f"{order_id}-h1"), Caller(ctx.actor))
            execute(
                app,
                HoldPoints(c.id, "points", hold_id=f"{order_id}-h2", amount=7),
                Caller(ctx.actor),
            )
            execute(app, ReleaseHold(c.id, "points", f"{order_id}-h2"), Caller(ctx.actor))
            # Left open: it times out, and the expiry job of ``seasons`` releases it.
            execute(
                app,
                HoldPoints(c.id, "points", hold_id=f"{order_id}-h3", amount=3),
                Caller(ctx.actor),
            )
        if i % 4 == 3:
            execute(
                app,
                AdjustPoints(
                    c.id, "points", adjustment_id=f"{order_id}-a", amount=50, reason="goodwill"
                ),
                Caller(ctx.actor),
            )
        if i % 8 == 7:
            execute(
                app,
                AdjustPoints(
                    c.id, "points", adjustment_id=f"{order_id}-b", amount=-20, reason="correction"
                ),
                Caller(ctx.actor),
            )
        if "consumer" in c.roles and i % 7 in (0, 3):
            # 40 days: the first batch's end before the assessments of ``seasons`` run.
            until = (clock.now + timedelta(days=40)).isoformat()
            override = SetLevelOverride(
                c.id, "consumer", f"{order_id}-o", "platinum", until, "launch"
            )
            execute(app, override, Caller(ctx.actor))
            if i % 7 == 3:
                execute(app, EndLevelOverride(c.id, "consumer", f"{order_id}-o"), Caller(ctx.actor))
    # Points lots and level entries move with a merge, and come back with its undo (two
    # customers of their own: the workload's other steps hold the people's aggregates).
    pair = [
        run_registration(app, RegisterCustomer([("pos_member_no", f"{prefix}-m{n}")]))
        for n in range(2)
    ]
    for n, r in enumerate(pair):
        place(app, PlaceOrder(f"{prefix}-m{n}", "pos", clock(), 60000, r.customer_id))
    merge_id = merge_support.merged(app, pair[0].customer_id, pair[1].customer_id, ACTOR)
    # Through the source's identity while merged: the undo hands the order back (Reassigned),
    # and its refund then reverses on the source.
    who = ("pos_member_no", f"{prefix}-m1")
    routed = place(app, PlaceOrder(f"{prefix}-mr", "pos", clock(), 30000, identity=who))
    assert routed.outcome is Outcome.CREATED
    merge_support.undo(app, merge_id, ACTOR)
    refund = RefundOrder("pos", f"{prefix}-mr", "r1", amount=10000)
    assert refund_now(app, refund).outcome is Outcome.CREATED
    # The same pair merged again, left in force: the routed order's lot (200 of its 300 left)
    # goes back to the survivor's account, where the undo had taken it from, and the
    # survivor's stats count both customers' orders.
    merge_support.merged(app, pair[0].customer_id, pair[1].customer_id, ACTOR)
    return [c.id for c in buyers]


def seasons(tenant: Tenant, clock: Clock, buyers: list[UUID]) -> None:
    """Time passes: the quarterly assessments keep, warn, end expired overrides and downgrade;
    the expiry job expires the back-dated lots."""
    accounts = [PointsAccount.id_for(c, "points") for c in buyers]
    for day in (datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 6, 10, tzinfo=UTC),
                datetime(2026, 7, 2, tzinfo=UTC)):  # fmt: skip
        clock.now = max(clock.now, day)
        run_level_assessments(tenant.app, clock())
        expire_due(tenant.app, clock(), accounts)


def live_and_rebuilt(
    sql: psycopg.Connection[Any], tenant: Tenant, p: Projection
) -> tuple[Any, Any]:
    build_fresh(tenant, p, batch_size=11)
    return dump(sql, tenant, p.tables), dump(sql, tenant, [t + REBUILD_SUFFIX for t in p.tables])


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_rebuild_equals_the_live_tables_after_a_mixed_workload_with_erasures(
    tenant: Tenant, sql: psycopg.Connection[Any], projection: Projection
) -> None:
    clock, rng = Clock(), random.Random(7)
    tenant.app.clock = clock  # loyalty commands are recorded at the workload's times
    define_program(tenant.app, PROGRAM, ACTOR)
    first = activity(tenant, clock, rng, "a", 12)
    buyers = shopping(tenant, clock, "a", first)
    catch_up(tenant, projection, batch_size=5)  # live, in many batches, while the keys exist
    erasures(tenant, clock, "a", first)
    seasons(tenant, clock, buyers)
    second = activity(tenant, clock, rng, "b", 25)
    shopping(tenant, clock, "b", second)
    catch_up(tenant, projection, batch_size=7)
    erasures(tenant, clock, "b", second)  # erased before the live projection saw them
    catch_up(tenant, projection, batch_size=3)

    topics = {r["topic"] for r in events(sql, tenant)}
    assert {t for t in CUSTOMER_TOPICS if t not in topics} == set()
    assert {t for t in projection.topics if t not in topics} == set(), "every topic it reads"
    live, rebuilt = live_and_rebuilt(sql, tenant, projection)

    assert live == rebuilt
    assert all(live), "every table has rows"
    rebuild(tenant, projection, batch_size=13)
    assert dump(sql, tenant, projection.tables) == live
    assert tracked_position(tenant, projection.name) == head_position(tenant)


def test_the_workload_erases_keys_so_the_rebuild_decodes_emptied_events(tenant: Tenant) -> None:
    # The comparison above is not vacuous: the live projection saw the personal values of
    # customers erased later, the rebuild sees them emptied.
    clock = Clock()
    c = person(tenant, clock, 1)
    registered = tenant.app.recorder.select_events(c.id)[0]
    plain: Any = tenant.app.mapper.to_domain_event(registered)
    assert plain.name == "Namep1"
    erase(tenant, clock, c)
    emptied: Any = tenant.app.mapper.to_domain_event(registered)
    assert (emptied.name, emptied.identities, emptied.attributes) == (None, (), {})
