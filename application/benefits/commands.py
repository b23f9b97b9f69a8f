"""Benefit commands: grant directly, revoke a grant, redeem (核销).

Each loads the customer's ``BenefitAccount`` (opened when the customer has none yet) and lets it
decide at ``app.clock()`` under the program in force; the kernel saves and answers. Every
redemption of a customer is decided on that one stream, so concurrent redemptions never exceed
a quota (a writer that lost the race decides again on the new state). A repeated client id
(``grant_id``, ``redemption_id``) with the same request is answered again by the account
(nothing written); with another request it is ``idempotency_key_reused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar
from uuid import UUID

from application.app import Membercore
from application.benefits.queries import level_sources
from application.context import CommandContext
from application.instants import iso, parse_instant
from application.kernel import Command, Decision, Outcome, handles
from application.levels import current_levels, zone
from application.loaders import active_customer, benefit_account
from application.program import loyalty_rules
from domain.benefit_quotas import Redemption, period_key, quota_use
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.errors import GrantNotFound
from domain.loyalty import BenefitRules


@dataclass(frozen=True)
class BenefitCommand(Command):
    """A command on one customer's benefit account."""

    scope: ClassVar[tuple[str, ...]] = ("customer_id",)
    customer_id: UUID


@dataclass(frozen=True)
class GrantBenefit(BenefitCommand):
    """Grant ``code`` directly from now until ``until`` (RFC 3339 with an offset, or a date: the
    start of that day in the tenant's zone; default now + the benefit's ``validity_days``, no
    end without them). 404 ``benefit_not_found`` for a code the program does not have."""

    operation = "GrantBenefit"
    client_id = "grant_id"
    grant_id: str
    code: str
    reason: str
    until: str | None = None


@dataclass(frozen=True)
class RevokeBenefitGrant(BenefitCommand):
    """End a direct grant now (404 ``benefit_grant_not_found``); a grant revoked before stays
    as it is (nothing recorded)."""

    operation = "RevokeBenefitGrant"
    scope = ("customer_id", "grant_id")
    grant_id: str
    reason: str


@dataclass(frozen=True)
class RedeemBenefit(BenefitCommand):
    """Use the benefit ``code`` once (核销), under the program in force now: 404
    ``benefit_not_found``, 409 ``benefit_disabled``, ``benefit_not_held``,
    ``benefit_quota_exhausted`` (the quota of the current local period is used up)."""

    operation = "RedeemBenefit"
    client_id = "redemption_id"
    # Redeemers of one quota race on one account: each round lets one of them through.
    attempts = 12
    code: str
    redemption_id: str
    note: str | None = None


def _decided(
    cmd: BenefitCommand,
    customer: Customer,
    account: BenefitAccount,
    detail: dict[str, Any],
    recorded: bool,
) -> Decision:
    # Not recorded: nothing changed (a repeated client id, or a grant revoked before).
    outcome = Outcome.CREATED if recorded else Outcome.DONE
    body = {"customer_id": str(cmd.customer_id), **detail}
    # Decided on an active customer: a merge taking it away meanwhile makes it decide again.
    return Decision(outcome, body, save=(account,), unchanged=(customer,), position_of=account.id)


def _grant_detail(account: BenefitAccount, grant_id: str) -> dict[str, Any]:
    g = account.grants[grant_id]
    return {
        "grant_id": g.grant_id,
        "benefit": g.code,
        "valid_from": g.valid_from.isoformat(),
        "until": iso(g.until),
        "reason": g.reason,
        "revoked_at": iso(g.revoked_at),
    }


@handles(GrantBenefit)
def grant_benefit(app: Membercore, cmd: GrantBenefit, ctx: CommandContext) -> Decision:
    at = app.clock()
    customer = active_customer(app, cmd.customer_id)
    rules = loyalty_rules(app, at)
    until = parse_instant(cmd.until, zone(rules), field="until") if cmd.until else None
    account = benefit_account(app, cmd.customer_id) or BenefitAccount.open(cmd.customer_id, at=at)
    _, recorded = account.grant_benefit(
        cmd.grant_id,
        cmd.code,
        rules.benefits.get(cmd.code),
        until=until,
        reason=cmd.reason,
        actor=ctx.actor,
        at=at,
    )
    return _decided(cmd, customer, account, _grant_detail(account, cmd.grant_id), recorded)


@handles(RevokeBenefitGrant)
def revoke_grant(app: Membercore, cmd: RevokeBenefitGrant, ctx: CommandContext) -> Decision:
    at = app.clock()
    customer = active_customer(app, cmd.customer_id)
    account = benefit_account(app, cmd.customer_id)
    if account is None:
        raise GrantNotFound(cmd.grant_id)
    account.revoke(cmd.grant_id, reason=cmd.reason, actor=ctx.actor, at=at)
    return _decided(cmd, customer, account, _grant_detail(account, cmd.grant_id), recorded=False)


@handles(RedeemBenefit)
def redeem_benefit(app: Membercore, cmd: RedeemBenefit, ctx: CommandContext) -> Decision:
    at = app.clock()
    customer = active_customer(app, cmd.customer_id)
    rules = loyalty_rules(app, at)
    tz = zone(rules)
    benefit = rules.benefits.get(cmd.code)
    account = benefit_account(app, cmd.customer_id) or BenefitAccount.open(cmd.customer_id, at=at)
    known = cmd.redemption_id in account.redemptions
    sources: list[str] = []
    if benefit is not None and not known:
        sources = level_sources(rules, current_levels(app, cmd.customer_id, at)).get(cmd.code, [])
    redemption, recorded = account.redeem(
        cmd.redemption_id,
        benefit,
        code=cmd.code,
        level_sources=sources,
        tz=tz,
        program_version=rules.version,
        note=cmd.note,
        actor=ctx.actor,
        at=at,
    )
    detail = _redemption_detail(account, redemption, benefit, tz)
    return _decided(cmd, customer, account, detail, recorded)


def _redemption_detail(
    account: BenefitAccount, r: Redemption, benefit: BenefitRules | None, tz: tzinfo
) -> dict[str, Any]:
    """The answer to a redemption: what it used, and the quota left right after it."""
    quota: dict[str, Any] = {"quota": None, "period": None, "used": None, "remaining": None}
    if benefit is not None and benefit.quota_count is not None:
        before = [x for x in account.redemptions.values() if x.seq <= r.seq]
        use = quota_use(benefit, before, tz, r.at)
        assert use is not None
        quota = {
            "quota": use.count,
            "period": use.period,
            "used": use.used,
            "remaining": use.remaining,
            "period_key": period_key(r.at, use.period, tz),
            "resets_at": iso(use.resets_at),
        }
    return {
        "redemption_id": r.redemption_id,
        "benefit": r.code,
        "source": r.source,
        "redeemed_at": r.at.isoformat(),
        "program_version": r.program_version,
        "note": r.note,
        **quota,
    }
