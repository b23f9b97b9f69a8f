"""Level and benefit commands on the kernel's in-memory ports (no PostgreSQL): what each handler
decides, replays by client id, and the assessment job over the memberships named due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application.benefits.commands import GrantBenefit, RedeemBenefit, RevokeBenefitGrant
from application.errors import IdempotencyKeyReused
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.levels import current_levels, qualify
from application.levels.assessment import AssessLevels, assess_due
from application.levels.overrides import EndLevelOverride, SetLevelOverride
from application.program import define_program, loyalty_rules
from application.registration import RegisterCustomer
from domain.benefits import benefit_account_id
from domain.errors import (
    BenefitNotFound,
    ClientIdReused,
    GrantNotFound,
    InvalidInput,
    LevelGroupNotFound,
    OverrideNotFound,
)
from domain.level_membership import LevelMembership
from infrastructure.memory import InMemoryIdempotencyStore, InMemoryMembercore

AT = datetime(2026, 3, 10, 4, tzinfo=UTC)
PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "basis": "spend",
            "window": {"mode": "calendar", "period": "year"},
            "assessment": {"mode": "calendar", "period": "year", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 1000, "benefits": ["lounge"]},
            ],
        }
    ],
    "benefits": [
        {"code": "free_shipping", "quota": {"count": 2, "period": "month"}, "validity_days": 30},
        {"code": "lounge", "quota": {"count": 1, "period": "year"}},
    ],
}
CALLER = Caller("ops")


@pytest.fixture
def app() -> InMemoryMembercore:
    app = InMemoryMembercore(now=AT)
    define_program(app, PROGRAM, "t")
    return app


@pytest.fixture
def cid(app: InMemoryMembercore) -> UUID:
    answer = execute(app, RegisterCustomer([("member_no", "m-1")]), CALLER)
    return UUID(answer.body["customer_id"])


def run(app: InMemoryMembercore, cmd: Command) -> Answer:
    return execute(app, cmd, CALLER)


def gold(app: InMemoryMembercore, cid: UUID) -> None:
    """``cid`` gold at ``AT``, on 1500 of spend."""
    rules = loyalty_rules(app, AT)
    outcome = qualify(
        app, cid, ["consumer"], rules, {"spend": 1500}, entry_id="o1", effective_at=AT, at=AT
    )
    app.save(*outcome.changed)


def stream(app: InMemoryMembercore, aggregate_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.events.get(aggregate_id)]


def test_an_override_is_set_once_and_a_bare_date_ends_at_the_tenant_local_midnight(
    app: InMemoryMembercore, cid: UUID
) -> None:
    cmd = SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-04-01", "launch")

    first, again = run(app, cmd), run(app, cmd)

    assert (first.outcome, again.outcome) == (Outcome.CREATED, Outcome.DONE)
    assert first.body["until"] == "2026-04-01T00:00:00+08:00"
    assert (first.body["level_now"], first.body["actor"]) == ("gold", "ops")
    assert (again.body, again.position) == (first.body, first.position)
    membership = LevelMembership.id_for(cid, "consumer")
    assert stream(app, membership) == ["Opened", "OverrideSet"]


def test_another_override_under_a_used_override_id_is_client_id_reused(
    app: InMemoryMembercore, cid: UUID
) -> None:
    run(app, SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-04-01", "launch"))

    with pytest.raises(ClientIdReused):
        run(app, SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-05-01", "launch"))


def test_override_refusals_name_the_group_the_override_and_the_end(
    app: InMemoryMembercore, cid: UUID
) -> None:
    with pytest.raises(LevelGroupNotFound):
        run(app, SetLevelOverride(cid, "vip", "ov-1", "gold", "2026-04-01", "x"))
    with pytest.raises(InvalidInput):
        run(app, SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-04-01T00:00", "x"))
    with pytest.raises(OverrideNotFound):
        run(app, EndLevelOverride(cid, "consumer", "nope"))


def test_ending_an_override_twice_records_one_end(app: InMemoryMembercore, cid: UUID) -> None:
    run(app, SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-04-01", "launch"))

    ended = run(app, EndLevelOverride(cid, "consumer", "ov-1"))
    again = run(app, EndLevelOverride(cid, "consumer", "ov-1"))

    assert (ended.outcome, ended.body["level_now"]) == (Outcome.DONE, "normal")
    assert again.position == ended.position
    assert stream(app, LevelMembership.id_for(cid, "consumer")).count("OverrideEnded") == 1


def test_a_keyed_end_with_another_reason_is_idempotency_key_reused(
    app: InMemoryMembercore, cid: UUID
) -> None:
    keyed = Caller("ops", "t", InMemoryIdempotencyStore())
    run(app, SetLevelOverride(cid, "consumer", "ov-1", "gold", "2026-04-01", "launch"))
    execute(app, EndLevelOverride(cid, "consumer", "ov-1", "a"), keyed, client_id="k1")

    with pytest.raises(IdempotencyKeyReused):
        execute(app, EndLevelOverride(cid, "consumer", "ov-1", "b"), keyed, client_id="k1")


def test_the_assessment_job_runs_each_due_membership_once(
    app: InMemoryMembercore, cid: UUID
) -> None:
    gold(app, cid)
    new_year = datetime(2028, 1, 1, tzinfo=UTC)  # 2027 holds nothing
    app.clock = lambda: new_year  # type: ignore[method-assign]
    membership = LevelMembership.id_for(cid, "consumer")

    first = assess_due(app, new_year, [membership, membership])
    second = assess_due(app, new_year, [membership])

    assert (first.checked, first.changed, first.by_type) == (1, 1, {"Downgraded": 1})
    assert (second.changed, second.events) == (0, 0)
    assert second.position == first.position
    assert current_levels(app, cid, new_year) == {"consumer": "normal"}


def test_the_assessment_job_command_needs_an_offset(app: InMemoryMembercore) -> None:
    with pytest.raises(InvalidInput):
        AssessLevels(datetime(2026, 1, 1))


def test_a_grant_defaults_to_validity_days_and_a_replay_answers_it_again(
    app: InMemoryMembercore, cid: UUID
) -> None:
    cmd = GrantBenefit(cid, "g-1", "free_shipping", "apology")

    first, again = run(app, cmd), run(app, cmd)

    assert (first.outcome, again.outcome) == (Outcome.CREATED, Outcome.DONE)
    assert first.body["until"] == (AT + timedelta(days=30)).isoformat()
    assert again.body == first.body
    assert stream(app, benefit_account_id(cid)) == ["Opened", "Granted"]
    with pytest.raises(ClientIdReused):
        run(app, GrantBenefit(cid, "g-1", "lounge", "apology"))


def test_an_unknown_benefit_or_grant_is_refused_and_writes_nothing(
    app: InMemoryMembercore, cid: UUID
) -> None:
    with pytest.raises(BenefitNotFound):
        run(app, GrantBenefit(cid, "g-1", "spa", "x"))
    with pytest.raises(BenefitNotFound):
        run(app, RedeemBenefit(cid, "spa", "r-1"))
    with pytest.raises(GrantNotFound):
        run(app, RevokeBenefitGrant(cid, "g-1", "x"))

    assert app.last_position_of(benefit_account_id(cid)) == 0


def test_a_redemption_through_a_level_then_its_replay_then_another_under_its_id(
    app: InMemoryMembercore, cid: UUID
) -> None:
    gold(app, cid)

    first = run(app, RedeemBenefit(cid, "lounge", "r-1", "T2"))
    again = run(app, RedeemBenefit(cid, "lounge", "r-1", "T2"))

    assert (first.outcome, again.outcome) == (Outcome.CREATED, Outcome.DONE)
    assert (first.body["source"], first.body["remaining"]) == ("level:consumer:gold", 0)
    assert again.body == first.body
    with pytest.raises(ClientIdReused):
        run(app, RedeemBenefit(cid, "lounge", "r-1", "T3"))


def test_revoking_a_grant_twice_records_one_revocation(app: InMemoryMembercore, cid: UUID) -> None:
    run(app, GrantBenefit(cid, "g-1", "free_shipping", "apology"))

    revoked = run(app, RevokeBenefitGrant(cid, "g-1", "mistake"))
    again = run(app, RevokeBenefitGrant(cid, "g-1", "mistake"))

    assert revoked.body["revoked_at"] == AT.isoformat()
    assert (again.body, again.position) == (revoked.body, revoked.position)
    assert stream(app, benefit_account_id(cid)).count("GrantRevoked") == 1
