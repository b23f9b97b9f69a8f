"""Levels on real PostgreSQL: qualifying entries saved by the caller, the assessment job's
idempotency and concurrency, the read model and the feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from eventsourcing.utils import get_topic

from application.kernel import Answer, Caller, execute
from application.levels.assessment import run_level_assessments as assess_levels
from application.levels.overrides import SetLevelOverride
from application.levels.qualification import current_levels, qualify
from application.levels.queries import level_status
from application.loaders import membership as load_membership
from application.points.commands import AdjustPoints
from application.program import define_program, loyalty_rules
from application.public_events import BY_TOPIC
from domain.level_membership import LevelMembership
from infrastructure.tenancy import Tenant
from projections.engine import catch_up
from projections.level_membership import (
    LevelMembershipProjection,
    due_memberships,
    profile_levels_sql,
)
from tests.integration.support import register, rows, run_at_once

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]}
    ],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "calendar", "period": "year"},
            "assessment": {"mode": "calendar", "period": "year", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "name": "普通", "threshold": 0},
                {"code": "gold", "name": "黄金", "threshold": 100000},
                {"code": "platinum", "name": "白金", "threshold": 300000},
            ],
        },
        {
            "code": "agent",
            "name": "团长等级",
            "role": "agent",
            "basis": "growth",
            "window": {"mode": "lifetime"},
            "assessment": {"mode": "anniversary", "period": "year", "downgrade": "recompute"},
            "levels": [
                {"code": "rookie", "name": "新手团长", "threshold": 0},
                {"code": "gold_leader", "name": "金牌团长", "threshold": 500},
            ],
        },
    ],
}
PROJECTION = LevelMembershipProjection()


def _setup(tenant: Tenant, clock: datetime) -> None:
    define_program(tenant.app, PROGRAM, "t")
    tenant.app.clock = lambda: clock


def _order(
    tenant: Tenant, customer_id: Any, roles: tuple[str, ...], entry: str, amounts: dict[str, int],
    at: datetime, effective_at: datetime | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    rules = loyalty_rules(tenant.app, at)
    outcome = qualify(
        tenant.app, customer_id, roles, rules, amounts,
        entry_id=entry, effective_at=effective_at or at, at=at,
    )  # fmt: skip
    if outcome.changed:
        tenant.app.save(*outcome.changed)
    return outcome.changes


def test_qualify_opens_one_membership_per_ladder_and_upgrades_saved_by_the_caller(
    tenant: Tenant,
) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u1"), roles=["consumer", "agent"]).customer_id

    changes = _order(tenant, c, ("consumer", "agent"), "order:pos:1",
                     {"spend": 120000, "growth": 600}, at)  # fmt: skip

    assert changes == [
        {"group": "consumer", "from": None, "to": "gold"},
        {"group": "agent", "from": None, "to": "gold_leader"},
    ]
    assert current_levels(tenant.app, c, at) == {"consumer": "gold", "agent": "gold_leader"}
    assert current_levels(tenant.app, c, at - timedelta(days=1)) == {}


def test_the_same_entry_id_twice_counts_once(tenant: Tenant) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u2")).customer_id
    _order(tenant, c, ("consumer",), "order:pos:1", {"spend": 60000}, at)

    changes = _order(tenant, c, ("consumer",), "order:pos:1", {"spend": 60000}, at)

    assert changes == []
    m = load_membership(tenant.app, c, "consumer")
    assert m is not None
    assert m.level == "normal"
    assert m.value_at(loyalty_rules(tenant.app).level_groups["consumer"], SHANGHAI, at) == 60000


def test_a_refund_takes_the_level_back_at_once(tenant: Tenant) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u3")).customer_id
    _order(tenant, c, ("consumer",), "order:pos:1", {"spend": 150000}, at)

    changes = _order(tenant, c, ("consumer",), "refund:pos:1:r1", {"spend": -60000},
                     at + timedelta(days=2), effective_at=at)  # fmt: skip

    assert changes == [{"group": "consumer", "from": "gold", "to": "normal"}]


def test_the_assessment_job_downgrades_at_the_shanghai_year_end_once_even_run_twice(
    tenant: Tenant,
) -> None:
    at = datetime(2024, 6, 1, tzinfo=UTC)  # platinum on 2024's spend, kept through 2025
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u4")).customer_id
    _order(tenant, c, ("consumer",), "order:pos:1", {"spend": 350000}, at)
    new_year = datetime(2026, 1, 1, tzinfo=SHANGHAI)  # 2025-12-31T16:00Z
    tenant.app.clock = lambda: new_year + timedelta(minutes=5)

    first = assess_levels(tenant.app, new_year - timedelta(seconds=1))
    second = assess_levels(tenant.app, new_year)
    third = assess_levels(tenant.app, new_year)

    # 2025-01-01 kept platinum on 2024; 2026-01-01 is a day away and 2025 holds nothing yet.
    assert first.by_type == {"Assessed": 1, "DowngradeWarned": 1}
    assert second.by_type == {"Downgraded": 1}  # 2026-01-01: nothing spent in 2025
    assert third.events == 0
    m = load_membership(tenant.app, c, "consumer")
    assert m is not None
    assert (m.level, m.since) == ("gold", new_year)


def test_concurrent_assessment_runs_record_each_downgrade_once(tenant: Tenant) -> None:
    at = datetime(2024, 6, 1, tzinfo=UTC)
    _setup(tenant, at)
    customers = [register(tenant, ("wechat_unionid", f"c{n}")).customer_id for n in range(6)]
    for n, c in enumerate(customers):
        _order(tenant, c, ("consumer",), f"order:pos:{n}", {"spend": 120000}, at)
    new_year = datetime(2026, 1, 1, tzinfo=SHANGHAI)
    tenant.app.clock = lambda: new_year + timedelta(hours=1)

    reports = run_at_once(4, lambda _: assess_levels(tenant.app, new_year))

    assert sum(r.by_type.get("Downgraded", 0) for r in reports) == len(customers)
    assert all(
        (m := load_membership(tenant.app, c, "consumer")) is not None and m.level == "normal"
        for c in customers
    )
    assert assess_levels(tenant.app, new_year).events == 0


def test_the_read_model_lists_levels_for_the_profile_and_the_due_memberships(
    tenant: Tenant, sql: psycopg.Connection[dict[str, Any]]
) -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u5"), roles=["consumer", "agent"]).customer_id
    _order(tenant, c, ("consumer", "agent"), "order:pos:1", {"spend": 120000, "growth": 10}, at)
    catch_up(tenant, PROJECTION)

    got = rows(sql, tenant, "SELECT " + profile_levels_sql(tenant.schema) + " AS levels"
               " FROM (SELECT %s::uuid AS customer_id) p", c)  # fmt: skip

    assert got == [{"levels": {"consumer": "gold", "agent": "rookie"}}]
    membership = LevelMembership.id_for(c, "consumer")
    assert due_memberships(tenant, datetime(2025, 11, 30, tzinfo=UTC)) == []
    assert due_memberships(tenant, datetime(2025, 12, 3, tzinfo=UTC)) == [membership]


def test_an_override_is_the_level_until_its_end_and_level_events_reach_the_feed(
    tenant: Tenant,
) -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "u6")).customer_id
    cmd = SetLevelOverride(c, "consumer", "ov-1", "platinum", "2025-07-01", "VIP compensation")
    execute(tenant.app, cmd, Caller("ops"))

    assert current_levels(tenant.app, c, at) == {"consumer": "platinum"}
    assert current_levels(tenant.app, c, datetime(2025, 7, 2, tzinfo=UTC)) == {"consumer": "normal"}
    (status,) = level_status(tenant.app, c, at)
    assert status["override"]["reason"] == "VIP compensation"
    assert status["override"]["computed_level"] == "normal"
    stream = tenant.app.events.get(LevelMembership.id_for(c, "consumer"))
    topics = [get_topic(type(e)) for e in stream]
    assert [BY_TOPIC[t].name for t in topics] == ["level.joined", "level.override_set"]


def _adjust(tenant: Tenant, customer_id: Any, adjustment_id: str, amount: int) -> Answer:
    cmd = AdjustPoints(customer_id, "growth", adjustment_id, amount, "campaign correction")
    return execute(tenant.app, cmd, Caller("ops-1"))


def test_a_growth_adjustment_counts_on_the_ladder_it_is_the_basis_of(tenant: Tenant) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "adj1"), roles=["consumer", "agent"]).customer_id

    result = _adjust(tenant, c, "a1", 600)

    assert result.body["levels"] == [{"group": "agent", "from": None, "to": "gold_leader"}]
    assert current_levels(tenant.app, c, at) == {"agent": "gold_leader"}  # consumer: on spend


def test_a_negative_growth_adjustment_lowers_the_value_and_the_level_waits_for_assessment(
    tenant: Tenant,
) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _setup(tenant, at)
    c = register(tenant, ("wechat_unionid", "adj2"), roles=["agent"]).customer_id
    _adjust(tenant, c, "a1", 600)
    tenant.app.clock = lambda: at + timedelta(minutes=5)

    result = _adjust(tenant, c, "a2", -200)

    assert result.body["levels"] == []
    (agent,) = level_status(tenant.app, c, at + timedelta(minutes=5))
    assert (agent["level"], agent["qualifying_value"]) == ("gold_leader", 400)
    assert agent["keep"]["gap"] == 100  # what the anniversary assessment will ask for


def test_an_adjustment_of_a_type_no_ladder_uses_touches_no_level(tenant: Tenant) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    doc = {**PROGRAM, "point_types": [*PROGRAM["point_types"], {"code": "points"}]}
    define_program(tenant.app, doc, "t")
    tenant.app.clock = lambda: at
    c = register(tenant, ("wechat_unionid", "adj4"), roles=["agent"]).customer_id

    cmd = AdjustPoints(c, "points", "p1", 900, "goodwill")
    result = execute(tenant.app, cmd, Caller("ops-1"))

    assert result.body["levels"] == []
    assert load_membership(tenant.app, c, "agent") is None
