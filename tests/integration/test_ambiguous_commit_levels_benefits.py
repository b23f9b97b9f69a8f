"""A connection lost around COMMIT, for every level and benefit command (reliability cases C5,
C7): one effect, and the first answer, every time; a client's retry with the same client id (or
``Idempotency-Key``) answers the first answer again. The assessment job's own commands too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from application.benefits.commands import GrantBenefit, RedeemBenefit, RevokeBenefitGrant
from application.kernel import Caller, Command, Outcome, execute
from application.levels import qualify
from application.levels.assessment import AssessLevelMembership, AssessLevels
from application.levels.overrides import EndLevelOverride, SetLevelOverride
from application.program import loyalty_rules
from domain.benefits import benefit_account_id
from domain.errors import BenefitQuotaExhausted, ClientIdReused
from domain.level_membership import LevelMembership
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import (
    FAULTS,
    KEYED,
    Attempt,
    Fault,
    caller,
    check_against_twin,
    injected,
    names,
    pinned,
    rejection_replayed,
)
from tests.integration.points_support import customer, run

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "basis": "spend",
            "window": {"mode": "rolling_days", "days": 30},
            "assessment": {"mode": "rolling", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 1000},
                {"code": "platinum", "threshold": 5000},
            ],
        }
    ],
    "benefits": [
        {"code": "free_shipping", "name": "包邮", "quota": {"count": 1, "period": "month"}},
    ],
}

# A command on a fresh member, and the stream whose events are its effect.
Setup = Callable[[Tenant, UUID], Command]
Stream = Callable[[UUID], UUID]


def _membership(cid: UUID) -> UUID:
    return LevelMembership.id_for(cid, "consumer")


def _gold(tenant: Tenant, cid: UUID) -> None:
    """Gold three days ago: a daily assessment is due now (and keeps gold)."""
    at = tenant.app.clock() - timedelta(days=3)
    rules = loyalty_rules(tenant.app, at)
    outcome = qualify(
        tenant.app, cid, ["consumer"], rules, {"spend": 2000}, entry_id="o1", effective_at=at, at=at
    )
    tenant.app.save(*outcome.changed)


def _set(tenant: Tenant, cid: UUID) -> Command:
    until = (tenant.app.clock() + timedelta(days=10)).isoformat()
    return SetLevelOverride(cid, "consumer", "ov-1", "platinum", until, "launch")


def _end(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, _set(tenant, cid))
    return EndLevelOverride(cid, "consumer", "ov-1", "mistake")


def _assess(tenant: Tenant, cid: UUID) -> Command:
    _gold(tenant, cid)
    return AssessLevelMembership(_membership(cid), tenant.app.clock())


def _grant(tenant: Tenant, cid: UUID) -> Command:
    return GrantBenefit(cid, "g-1", "free_shipping", "apology")


def _revoke(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, _grant(tenant, cid))
    return RevokeBenefitGrant(cid, "g-1", "issued by mistake")


def _redeem(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, _grant(tenant, cid))
    return RedeemBenefit(cid, "free_shipping", "r-1", "T2")


COMMANDS: dict[str, tuple[Setup, Stream]] = {
    "SetLevelOverride": (_set, _membership),
    "EndLevelOverride": (_end, _membership),
    "AssessLevelMembership": (_assess, _membership),
    "GrantBenefit": (_grant, benefit_account_id),
    "RevokeBenefitGrant": (_revoke, benefit_account_id),
    "RedeemBenefit": (_redeem, benefit_account_id),
}


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    return pinned(tenant, PROGRAM)


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "customer_id"}


@KEYED
@FAULTS
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    loyal: Tenant, name: str, fault: Fault, keyed: bool
) -> None:
    setup, stream = COMMANDS[name]

    def attempt() -> Attempt:
        """The command on a member of its own, and the stream it changes."""
        cid = customer(loyal)
        return setup(loyal, cid), lambda: names(loyal.app, stream(cid))

    check_against_twin(loyal, fault, keyed, attempt, _without_ids)


@FAULTS
def test_the_assessment_job_losing_a_commit_assesses_each_membership_once(
    loyal: Tenant, fault: Fault
) -> None:
    cid = customer(loyal)
    _gold(loyal, cid)
    before = len(names(loyal.app, _membership(cid)))
    by = caller(loyal, keyed=True)
    job = AssessLevels(loyal.app.clock())

    answer = injected(fault, loyal.app, lambda: execute(loyal.app, job, by, client_id="job-1"))
    again = execute(loyal.app, job, by, client_id="job-1")
    rerun = execute(loyal.app, job, Caller("t"))

    recorded = names(loyal.app, _membership(cid))[before:]
    assert "Assessed" in recorded
    assert answer.body["changed"] == 1
    assert answer.body["by_type"] == {name: recorded.count(name) for name in set(recorded)}
    assert answer.body["events"] == len(recorded)
    assert again.outcome is Outcome.REPLAYED
    assert again.body == answer.body
    assert rerun.body["events"] == 0


def test_a_rejected_redemption_replays_its_rejection_after_the_quota_resets(
    loyal: Tenant,
) -> None:
    cid = customer(loyal)
    run(loyal, _grant(loyal, cid))
    run(loyal, RedeemBenefit(cid, "free_shipping", "r-1"))
    cmd = RedeemBenefit(cid, "free_shipping", "r-2")
    next_month = loyal.app.clock() + timedelta(days=32)

    rejection = rejection_replayed(
        loyal, cmd, BenefitQuotaExhausted, then=lambda: pinned(loyal, at=next_month)
    )

    assert rejection["code"] == "benefit_quota_exhausted"
    assert names(loyal.app, benefit_account_id(cid)).count("Redeemed") == 1


@pytest.mark.parametrize(
    ("first", "other"),
    [
        (
            SetLevelOverride(UUID(int=0), "consumer", "ov-1", "platinum", "2099-01-01", "a"),
            SetLevelOverride(UUID(int=0), "consumer", "ov-1", "gold", "2099-01-01", "a"),
        ),
        (
            GrantBenefit(UUID(int=0), "g-1", "free_shipping", "apology"),
            GrantBenefit(UUID(int=0), "g-1", "free_shipping", "birthday"),
        ),
        (
            RedeemBenefit(UUID(int=0), "free_shipping", "r-1", "T1"),
            RedeemBenefit(UUID(int=0), "free_shipping", "r-1", "T2"),
        ),
    ],
    ids=["override_id", "grant_id", "redemption_id"],
)
def test_a_repeated_client_id_is_a_replay_and_another_request_under_it_is_refused(
    loyal: Tenant, first: Command, other: Command
) -> None:
    cid = customer(loyal)
    run(loyal, GrantBenefit(cid, "g-0", "free_shipping", "setup"))
    mine = _for(first, cid)

    done = run(loyal, mine)
    again = run(loyal, mine)
    with pytest.raises(ClientIdReused) as reused:
        run(loyal, _for(other, cid))

    assert (done.outcome, again.outcome) == (Outcome.CREATED, Outcome.DONE)
    assert (again.body, again.position) == (done.body, done.position)
    assert reused.value.field == first.client_id


def _for(cmd: Command, cid: UUID) -> Command:
    fields = {**vars(cmd), "customer_id": cid}
    made: Command = type(cmd)(**fields)
    return made
