"""The loyalty scenario the golden fixture was recorded from (``make_fixture.py`` runs it once).

Everything runs through the application's commands on a fixed clock (``Clock``), so the
recorded events carry these times, not the wall clock's:

* program v1 (2026-03-01): ``points`` cleared every 1 January (Shanghai), ``growth`` expiring 90
  days after it is earned; a ``consumer`` ladder on growth (rolling 365 days, anniversary
  assessment, one step down) and an ``agent`` ladder on spend (calendar quarter, recomputed);
  benefits with monthly, yearly and quarterly quotas. Program v2 (2026-04-01) doubles points.
* seven customers (one an agent), orders with and without lines, three back-dated (one from
  last year, whose points were already cleared when it was synced);
* refunds by lines and by amount, one after the points were spent (debt, ``negative`` policy);
* redemptions, holds captured and released, adjustments both ways;
* benefits redeemed up to a quota, granted directly, granted and revoked;
* a level override; merges (one kept, two undone) moving points, levels and grants;
* since era 2026-12: tags put on and taken off, a redemption partly reversed, a growth
  adjustment counted on the ladder, an order placed through a merged-away customer's identity
  that the undo reassigns (then refunded on its rightful owner), and dan's open hold timing out;
* time passes to 2026-07-02: the level assessment job (a downgrade warning, downgrades, the
  override's end) and the expiry job run three times.

Changing this module changes the fixture only when the fixture is regenerated (see
``make_fixture.py``): the test reads the committed files.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from psycopg.sql import SQL, Identifier

from application.benefits.commands import GrantBenefit, RedeemBenefit, RevokeBenefitGrant
from application.context import CommandContext
from application.customers import AddTags, RemoveTag
from application.kernel import Caller, Outcome, execute
from application.levels.assessment import assess_due
from application.levels.overrides import SetLevelOverride
from application.merges import MergeCustomers, UndoMerge
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
from domain.level_membership import LevelMembership
from domain.points_account import PointsAccount
from domain.staff import StaffActivity
from infrastructure.crypto import IDENTITY_SECRET, SECRETS_TABLE
from infrastructure.tenancy import Tenant
from tests.integration.orders_support import place, refund_now

ACTOR = "golden"
NAMESPACE = UUID("5f0e7a52-1c3b-5d8e-9a47-6b2c0d1e3f48")


class Ids:
    """Customer and merge ids numbered from 1 (not random), so that a regenerated fixture
    differs from the committed one only where events did (and in sealed fields' nonces)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> UUID:
        self.n += 1
        return uuid5(NAMESPACE, str(self.n))


IDS = Ids()
CTX = CommandContext(ACTOR, new_id=IDS)
# The tenant's identity secret while recording: identity claim ids are keyed hashes under it.
SECRET = hashlib.sha256(b"membercore golden fixture").digest()
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
END = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
# The instant every golden balance is read at (after the scenario's last command).
AS_OF = datetime(2026, 7, 3, 0, 0, tzinfo=UTC)

BENEFITS: list[dict[str, Any]] = [
    {"code": "free_shipping", "quota": {"count": 2, "period": "month"}, "validity_days": 30},
    {"code": "birthday_coupon", "quota": {"count": 1, "period": "year"}},
    {"code": "group_kit", "quota": {"count": 1, "period": "quarter"}},
]


def program(points_per_yuan: int) -> dict[str, Any]:
    return {
        "currency": "CNY",
        "timezone": "Asia/Shanghai",
        "point_types": [
            {
                "code": "points",
                "earn": [{"per_amount": 100, "points": points_per_yuan}],
                "expiry": {"mode": "yearly_clearing", "month": 1, "day": 1},
                "refund_policy": "negative",
            },
            {
                "code": "growth",
                "redeemable": False,
                "earn": [{"per_amount": 100, "points": 1}],
                "expiry": {"mode": "rolling_days", "days": 90},
                "refund_policy": "clamp",
            },
        ],
        "level_groups": [
            {
                "code": "consumer",
                "role": "consumer",
                "basis": "growth",
                "window": {"mode": "rolling_days", "days": 365},
                "assessment": {
                    "mode": "anniversary",
                    "period": "year",
                    "downgrade": "one_step",
                    "warning_days": 30,
                },
                "levels": [
                    {"code": "normal", "threshold": 0},
                    {"code": "gold", "threshold": 2000, "benefits": ["free_shipping"]},
                    {
                        "code": "platinum",
                        "threshold": 10000,
                        "benefits": ["free_shipping", "birthday_coupon"],
                    },
                ],
            },
            {
                "code": "agent",
                "role": "agent",
                "basis": "spend",
                "window": {"mode": "calendar", "period": "quarter"},
                "assessment": {
                    "mode": "calendar",
                    "period": "quarter",
                    "downgrade": "recompute",
                    "warning_days": 14,
                },
                "levels": [
                    {"code": "rookie", "threshold": 0},
                    {"code": "gold_leader", "threshold": 500000, "benefits": ["group_kit"]},
                ],
            },
        ],
        "benefits": BENEFITS,
    }


class Clock:
    """The scenario's time: each reading one minute later; ``jump`` moves it forward."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    def jump(self, to: datetime) -> None:
        self.now = max(self.now, to)


def _customer(tenant: Tenant, label: str, *roles: str) -> UUID:
    cmd = RegisterCustomer(
        identities=[("member_no", f"golden-{label}")],
        name=f"Golden {label}",
        phone=None,
        email=f"{label}@golden.example",
        roles=list(roles) or None,
        channel="mini_program",
        customer_id=IDS(),
    )
    return UUID(execute(tenant.app, cmd, Caller(CTX.actor)).body["customer_id"])


def _order(
    tenant: Tenant,
    order_id: str,
    customer_id: UUID,
    amount: int,
    placed_at: datetime,
    lines: list[OrderLineInput] | None = None,
) -> None:
    cmd = PlaceOrder(order_id, "tmall", placed_at, amount, customer_id, lines=lines)
    assert place(tenant.app, cmd).outcome is Outcome.CREATED, order_id


def _refund(tenant: Tenant, order_id: str, refund_id: str, **part: Any) -> None:
    refund = RefundOrder("tmall", order_id, refund_id, **part)
    assert refund_now(tenant.app, refund).outcome is Outcome.CREATED, order_id


def _merge(app: Any, survivor: UUID, source: UUID) -> UUID:
    """A merge under the next numbered id."""
    merge_id = IDS()
    execute(app, MergeCustomers(survivor, source, merge_id=merge_id), Caller(CTX.actor))
    return merge_id


def _undo(app: Any, merge_id: UUID) -> None:
    execute(app, UndoMerge(merge_id), Caller(CTX.actor))


def run(tenant: Tenant) -> dict[str, UUID]:
    """Record the scenario in ``tenant`` (a fresh one); returns the customers by label."""
    IDS.n = 0
    with tenant.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL("UPDATE {}.{} SET value = %s WHERE name = %s").format(
                Identifier(tenant.schema), Identifier(SECRETS_TABLE)
            ),
            (SECRET, IDENTITY_SECRET),
        )
    app, clock = tenant.app, Clock()
    app.clock = clock
    define_program(app, program(1), CTX.actor)
    c = {
        label: _customer(tenant, label, *roles)
        for label, roles in (
            ("ann", ()),
            ("bob", ("consumer", "agent")),
            ("cai", ()),
            ("dan", ()),
            ("eve", ()),
            ("fay", ()),
            ("gus", ()),
        )
    }
    # Back-dated: last year's order (its points were cleared on 1 January, before the sync);
    # one from February (same quarter for the agent ladder).
    _order(tenant, "ann-2025", c["ann"], 80000, datetime(2025, 11, 20, 10, tzinfo=UTC))
    _order(tenant, "bob-feb", c["bob"], 100000, datetime(2026, 2, 10, 10, tzinfo=UTC))
    lines = [
        OrderLineInput("L1", "TEA-1", 1, 30000, "tea"),
        OrderLineInput("L2", "CUP-2", 2, 20000, "cups"),
    ]
    _order(tenant, "ann-1", c["ann"], 50000, clock(), lines)
    _order(tenant, "bob-1", c["bob"], 600000, clock())
    _order(tenant, "cai-1", c["cai"], 250000, clock())
    pots = OrderLineInput("L3", "POT-3", 3, 90000, "pots")
    _order(tenant, "dan-1", c["dan"], 120000, clock(), [lines[0], pots])
    for label in ("eve", "fay", "gus"):
        _order(tenant, f"{label}-1", c[label], 40000, clock())
    _order(tenant, "ann-back", c["ann"], 30000, clock() - timedelta(days=20))
    # Spending points: a redemption, a hold captured, a hold released, adjustments both ways.
    execute(
        app,
        RedeemPoints(c["cai"], "points", redemption_id="cai-r1", amount=2300, reason="coupon"),
        Caller(CTX.actor),
    )
    execute(app, HoldPoints(c["cai"], "points", hold_id="cai-h1", amount=100), Caller(CTX.actor))
    execute(app, CaptureHold(c["cai"], "points", "cai-h1"), Caller(CTX.actor))
    execute(app, HoldPoints(c["ann"], "points", hold_id="ann-h1", amount=150), Caller(CTX.actor))
    execute(app, ReleaseHold(c["ann"], "points", "ann-h1"), Caller(CTX.actor))
    execute(app, HoldPoints(c["dan"], "points", hold_id="dan-h-open", amount=40), Caller(CTX.actor))
    execute(
        app,
        AdjustPoints(c["dan"], "points", adjustment_id="dan-a1", amount=300, reason="goodwill"),
        Caller(CTX.actor),
    )
    execute(
        app,
        AdjustPoints(c["dan"], "points", adjustment_id="dan-a2", amount=-50, reason="correction"),
        Caller(CTX.actor),
    )
    # Refunds: by lines, by amount, and one after cai's points were spent (200 left as debt).
    _refund(tenant, "ann-1", "ann-1-r1", lines={"L1": 15000})
    _refund(tenant, "bob-1", "bob-1-r1", amount=200000)
    _refund(tenant, "cai-1", "cai-1-r1", amount=30000)
    _refund(tenant, "dan-1", "dan-1-r1", lines={"L3": 90000})
    # Benefits: cai is gold (growth 2500, 2200 after the refund): free shipping twice in March.
    execute(app, RedeemBenefit(c["cai"], "free_shipping", "cai-fs1"), Caller(CTX.actor))
    execute(app, RedeemBenefit(c["cai"], "free_shipping", "cai-fs2"), Caller(CTX.actor))
    execute(app, RedeemBenefit(c["bob"], "group_kit", "bob-kit1"), Caller(CTX.actor))
    execute(app, GrantBenefit(c["dan"], "dan-g1", "birthday_coupon", "birthday"), Caller(CTX.actor))
    execute(app, RedeemBenefit(c["dan"], "birthday_coupon", "dan-bc1"), Caller(CTX.actor))
    execute(app, GrantBenefit(c["ann"], "ann-g1", "free_shipping", "apology"), Caller(CTX.actor))
    execute(app, RedeemBenefit(c["ann"], "free_shipping", "ann-fs1"), Caller(CTX.actor))
    execute(app, RevokeBenefitGrant(c["ann"], "ann-g1", "mistake"), Caller(CTX.actor))
    execute(app, GrantBenefit(c["gus"], "gus-g1", "free_shipping", "welcome"), Caller(CTX.actor))
    # A level override for 40 days; the assessment job ends it later.
    until = (clock.now + timedelta(days=40)).isoformat()
    override = SetLevelOverride(c["dan"], "consumer", "dan-o1", "platinum", until, "launch")
    execute(app, override, Caller(CTX.actor))
    # Merges: fay into ann undone, gus into dan undone, eve into cai kept.
    _undo(app, _merge(app, c["ann"], c["fay"]))
    _undo(app, _merge(app, c["dan"], c["gus"]))
    _merge(app, c["cai"], c["eve"])
    # April: program v2 (points doubled); more orders, a second month of free shipping.
    clock.jump(datetime(2026, 4, 1, 9, tzinfo=UTC))
    define_program(app, program(2), CTX.actor)
    _order(tenant, "ann-2", c["ann"], 60000, clock())
    _order(tenant, "cai-2", c["cai"], 30000, clock())
    _order(tenant, "gus-2", c["gus"], 20000, clock())
    execute(app, RedeemBenefit(c["cai"], "free_shipping", "cai-fs3"), Caller(CTX.actor))
    execute(
        app,
        RedeemPoints(c["ann"], "points", redemption_id="ann-r1", amount=700, reason="gift"),
        Caller(CTX.actor),
    )
    _refund(tenant, "ann-2", "ann-2-r1", amount=10000)
    # Era 2026-12: tags, a redemption reversal, growth adjusted by hand, an order routed through
    # hal's identity while hal is merged into ann, given back to hal by the undo and refunded.
    execute(app, AddTags(c["ann"], ["vip", "tea_lover"], channel="wecom"), Caller(CTX.actor))
    execute(app, RemoveTag(c["ann"], "tea_lover"), Caller(CTX.actor))
    execute(
        app,
        ReverseRedemption(
            c["ann"], "points", "ann-r1", reversal_id="ann-rv1", amount=200, reason="gift returned"
        ),
        Caller(CTX.actor),
    )
    execute(
        app,
        AdjustPoints(c["bob"], "growth", adjustment_id="bob-g1", amount=500, reason="campaign"),
        Caller(CTX.actor),
    )
    c["hal"] = _customer(tenant, "hal")
    hal_merge = _merge(app, c["ann"], c["hal"])
    routed = PlaceOrder("hal-1", "tmall", clock(), 40000, identity=("member_no", "golden-hal"))
    assert place(app, routed).outcome is Outcome.CREATED
    _undo(app, hal_merge)
    _refund(tenant, "hal-1", "hal-1-r1", amount=10000)
    # A staff member's burst of ownership removals (a StaffActivity alert, upcast in the fixture).
    activity = StaffActivity.start("guide-golden", at=clock())
    activity.record_removals(3, threshold=2, window_minutes=60, at=clock())
    app.save(activity)
    # Time passes: bob is warned (no spend in Q2), the quarter ends (the agent ladder is
    # recomputed), growth lots expire.
    for day in (datetime(2026, 5, 20, tzinfo=UTC), datetime(2026, 6, 20, tzinfo=UTC), END):
        clock.jump(day)
        ladders = [LevelMembership.id_for(i, g) for i in c.values() for g in ("consumer", "agent")]
        assess_due(app, clock(), ladders)
        accounts = [PointsAccount.id_for(i, t) for i in c.values() for t in ("points", "growth")]
        expire_due(app, clock(), accounts)
    return c
