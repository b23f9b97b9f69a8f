"""Benefits on the real PostgreSQL event store: concurrent redemptions against a quota,
idempotent replays, the program version and source recorded, local periods by the tenant clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.benefits.commands import GrantBenefit, RedeemBenefit, RevokeBenefitGrant
from application.benefits.queries import benefits_of, redemption_history
from application.context import CommandContext
from application.kernel import Answer, Caller, Outcome, execute
from application.levels import qualify
from application.loaders import benefit_account
from application.program import define_program, loyalty_rules
from domain.benefits import BenefitAccount
from domain.errors import (
    BenefitDisabled,
    BenefitNotFound,
    BenefitNotHeld,
    BenefitQuotaExhausted,
    ClientIdReused,
    CustomerNotFound,
)
from infrastructure.tenancy import Tenant
from tests.integration.support import events, register, run_at_once

CTX = CommandContext("t")
CALLER = Caller("t")
PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "benefits": [
        {
            "code": "free_shipping",
            "name": "包邮",
            "quota": {"count": 2, "period": "month"},
            "validity_days": 30,
        },
        {"code": "birthday_coupon", "name": "生日券", "quota": {"count": 1, "period": "year"}},
        {"code": "lounge", "name": "贵宾室", "enabled": False},
    ],
}
REDEEMED = BenefitAccount.Redeemed.TOPIC


def setup(tenant: Tenant, label: str = "m1") -> UUID:
    define_program(tenant.app, PROGRAM, CTX.actor)
    return register(tenant, ("member_no", label)).customer_id


def grant(tenant: Tenant, cid: UUID, code: str, grant_id: str = "g1") -> Answer:
    return execute(tenant.app, GrantBenefit(cid, grant_id, code, "vip"), CALLER)


def redeem(tenant: Tenant, cid: UUID, code: str, rid: str) -> Answer:
    return execute(tenant.app, RedeemBenefit(cid, code, rid), CALLER)


def revoke(tenant: Tenant, cid: UUID, grant_id: str) -> Answer:
    return execute(tenant.app, RevokeBenefitGrant(cid, grant_id, "error"), CALLER)


def redeemed_rows(sql: psycopg.Connection[Any], tenant: Tenant) -> list[Any]:
    return [e for e in events(sql, tenant) if e["topic"] == REDEEMED]


def test_concurrent_redemptions_against_a_quota_of_two_let_exactly_two_succeed(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "free_shipping")

    def attempt(i: int) -> str:
        try:
            redeem(tenant, cid, "free_shipping", f"r{i}")
        except BenefitQuotaExhausted:
            return "exhausted"
        return "redeemed"

    outcomes = run_at_once(8, attempt)

    assert sorted(outcomes) == ["exhausted"] * 6 + ["redeemed"] * 2
    assert len(redeemed_rows(sql, tenant)) == 2
    account = benefit_account(tenant.app, cid)
    assert account is not None
    assert len(account.redemptions) == 2


def test_concurrent_redemptions_under_one_redemption_id_record_it_once(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "free_shipping")

    results = run_at_once(6, lambda i: redeem(tenant, cid, "free_shipping", "same"))

    assert sorted(r.outcome for r in results) == [Outcome.CREATED] + [Outcome.DONE] * 5
    assert len({r.body["source"] for r in results}) == 1
    assert len(redeemed_rows(sql, tenant)) == 1


def test_a_redemption_replayed_by_its_id_answers_the_first_and_records_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "free_shipping")
    first = redeem(tenant, cid, "free_shipping", "r1")
    before = len(events(sql, tenant))

    again = redeem(tenant, cid, "free_shipping", "r1")

    assert (first.outcome, again.outcome) == (Outcome.CREATED, Outcome.DONE)
    assert again.body == first.body
    assert again.position == first.position
    assert len(events(sql, tenant)) == before


def test_a_redemption_id_reused_for_another_benefit_is_client_id_reused(tenant: Tenant) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "free_shipping")
    grant(tenant, cid, "birthday_coupon", grant_id="g2")
    redeem(tenant, cid, "free_shipping", "r1")

    with pytest.raises(ClientIdReused):
        redeem(tenant, cid, "birthday_coupon", "r1")


def test_a_redemption_records_the_program_version_and_the_source_used(tenant: Tenant) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "free_shipping")
    first = redeem(tenant, cid, "free_shipping", "r1")
    renamed = {**PROGRAM, "benefits": [{**PROGRAM["benefits"][0], "name": "包邮卡"}]}
    define_program(tenant.app, renamed, CTX.actor)

    second = redeem(tenant, cid, "free_shipping", "r2")

    assert (first.body["program_version"], second.body["program_version"]) == (1, 2)
    assert first.body["source"] == second.body["source"] == "grant:g1"
    items, _ = redemption_history(tenant.app, cid)
    assert [(i["redemption_id"], i["program_version"], i["source"]) for i in items] == [
        ("r1", 1, "grant:g1"),
        ("r2", 2, "grant:g1"),
    ]


def test_the_quota_resets_at_the_tenant_local_month_start(tenant: Tenant) -> None:
    cid = setup(tenant)
    now = [datetime(2026, 3, 31, 15, 0, tzinfo=UTC)]  # 23:00 on 31 March in Shanghai
    tenant.app.clock = lambda: now[0]  # type: ignore[method-assign]
    grant(tenant, cid, "free_shipping")
    redeem(tenant, cid, "free_shipping", "r1")
    redeem(tenant, cid, "free_shipping", "r2")
    with pytest.raises(BenefitQuotaExhausted):
        redeem(tenant, cid, "free_shipping", "r3")

    now[0] = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 April in Shanghai
    fourth = redeem(tenant, cid, "free_shipping", "r4")

    assert fourth.body["period_key"] == "2026-04"
    assert fourth.body["remaining"] == 1


def test_a_direct_grant_defaults_to_validity_days_and_lapses_after(tenant: Tenant) -> None:
    cid = setup(tenant)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    now = [start]
    tenant.app.clock = lambda: now[0]  # type: ignore[method-assign]
    granted = grant(tenant, cid, "free_shipping")

    held = benefits_of(tenant.app, cid, start + timedelta(days=30) - timedelta(microseconds=1))
    lapsed = benefits_of(tenant.app, cid, start + timedelta(days=30))
    now[0] = start + timedelta(days=30)

    assert granted.body["until"] == (start + timedelta(days=30)).isoformat()
    assert [(b.code, b.sources) for b in held] == [("free_shipping", ("grant:g1",))]
    assert lapsed == []
    with pytest.raises(BenefitNotHeld):
        redeem(tenant, cid, "free_shipping", "late")


def test_a_revoked_grant_is_no_longer_held(tenant: Tenant) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "birthday_coupon")

    revoked = revoke(tenant, cid, "g1")
    again = revoke(tenant, cid, "g1")

    assert revoked.body["revoked_at"] is not None
    assert again.position == revoked.position
    assert benefits_of(tenant.app, cid) == []
    with pytest.raises(BenefitNotHeld):
        redeem(tenant, cid, "birthday_coupon", "r1")


def test_benefits_of_lists_a_switched_off_benefit_held_with_enabled_false(tenant: Tenant) -> None:
    cid = setup(tenant)
    grant(tenant, cid, "lounge")

    (lounge,) = benefits_of(tenant.app, cid)

    assert (lounge.code, lounge.enabled, lounge.quota) == ("lounge", False, None)
    with pytest.raises(BenefitDisabled):
        redeem(tenant, cid, "lounge", "r1")


def test_an_unknown_benefit_or_customer_is_refused_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = setup(tenant)
    before = len(events(sql, tenant))

    with pytest.raises(BenefitNotFound):
        redeem(tenant, cid, "spa", "r1")
    with pytest.raises(BenefitNotFound):
        grant(tenant, cid, "spa")
    with pytest.raises(CustomerNotFound):
        redeem(tenant, UUID(int=7), "free_shipping", "r1")
    assert len(events(sql, tenant)) == before


LEVELS_PROGRAM: dict[str, Any] = {
    **PROGRAM,
    "point_types": [
        *PROGRAM["point_types"],
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]},
    ],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "basis": "growth",
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 1000, "benefits": ["birthday_coupon"]},
            ],
        }
    ],
}


def reach(tenant: Tenant, cid: UUID, growth: int, entry_id: str) -> None:
    at = tenant.app.clock()
    outcome = qualify(
        tenant.app,
        cid,
        ["consumer"],
        loyalty_rules(tenant.app),
        {"growth": growth},
        entry_id=entry_id,
        effective_at=at,
        at=at,
    )
    tenant.app.save(*outcome.changed)


def test_a_customer_who_reaches_gold_holds_and_redeems_gold_benefits(tenant: Tenant) -> None:
    define_program(tenant.app, LEVELS_PROGRAM, CTX.actor)
    cid = register(tenant, ("member_no", "gold-1")).customer_id
    reach(tenant, cid, 999, "o1")
    with pytest.raises(BenefitNotHeld):
        redeem(tenant, cid, "birthday_coupon", "early")

    reach(tenant, cid, 1, "o2")
    held = benefits_of(tenant.app, cid)
    redeemed = redeem(tenant, cid, "birthday_coupon", "r1")

    assert [(b.code, b.sources, b.valid_until) for b in held] == [
        ("birthday_coupon", ("level:consumer:gold",), None)
    ]
    assert redeemed.body["source"] == "level:consumer:gold"
    with pytest.raises(BenefitQuotaExhausted):
        redeem(tenant, cid, "birthday_coupon", "r2")


def test_a_level_source_and_a_grant_share_one_quota(tenant: Tenant) -> None:
    define_program(tenant.app, LEVELS_PROGRAM, CTX.actor)
    cid = register(tenant, ("member_no", "gold-2")).customer_id
    reach(tenant, cid, 1000, "o1")
    grant(tenant, cid, "birthday_coupon")

    (held,) = benefits_of(tenant.app, cid)
    redeem(tenant, cid, "birthday_coupon", "r1")

    assert held.sources == ("level:consumer:gold", "grant:g1")
    with pytest.raises(BenefitQuotaExhausted):
        redeem(tenant, cid, "birthday_coupon", "r2")
