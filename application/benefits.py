"""Benefit commands and queries: what a customer holds, direct grants, revocations, redemptions.

A customer holds a benefit at ``at`` when a level they are on then grants it (the program's level
group, ``application.levels.current_levels``) or a direct grant on their ``BenefitAccount`` is
valid then. Every redemption of a customer is decided on that one account stream (load, decide,
save, retried on conflict), so concurrent redemptions never exceed a quota. See docs/benefits.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError

from application.app import Membercore
from application.context import CommandContext
from application.errors import IdempotencyKeyReused
from application.levels import current_levels
from application.merges import load_customer
from application.program import loyalty_rules
from domain.benefits import (
    BenefitAccount,
    GrantNotFound,
    Holding,
    QuotaUse,
    Redemption,
    benefit_account_id,
    default_until,
    holding,
    period_key,
    quota_use,
)
from domain.errors import BenefitNotFound, FieldProblem, InvalidInput
from domain.loyalty import BenefitRules, LoyaltyRules

# A redemption race is decided one writer per round: allow more rounds than the default.
REDEEM_ATTEMPTS = 12


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_instant(app: Membercore, raw: str, *, field: str) -> datetime:
    """RFC 3339 with an offset, or a bare ``YYYY-MM-DD``: the start of that day in the tenant's
    time zone (400 ``invalid_input`` otherwise). Years 1970-9998 only; an offset with seconds
    (stored events keep minutes) is turned into UTC."""
    value: datetime | None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            value = datetime.combine(day, time.min, tzinfo=zone(loyalty_rules(app).timezone))
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    offset = value.utcoffset() if value is not None else None
    if value is None or offset is None or not 1970 <= value.year <= 9998:
        reason = "must be an RFC 3339 time with an offset, or a date YYYY-MM-DD (1970-9998)"
        raise InvalidInput([FieldProblem(field, reason)])
    if offset.seconds % 60 or offset.microseconds:
        value = value.astimezone(UTC)
    return value


def load_account(app: Membercore, customer_id: UUID) -> BenefitAccount | None:
    try:
        account: BenefitAccount = app.repository.get(benefit_account_id(customer_id))
    except AggregateNotFoundError:
        return None
    return account


def _active_customer(app: Membercore, customer_id: UUID) -> None:
    """404 for an unknown customer; the customer commands' errors for a merged or erased one."""
    load_customer(app, customer_id).require_active()


def levels_of(app: Membercore, customer_id: UUID, at: datetime) -> dict[str, str]:
    """Group code → level code in force at ``at`` (the levels module's contract)."""
    return dict(current_levels(app, customer_id, at))


def level_sources(rules: LoyaltyRules, levels: Mapping[str, str]) -> dict[str, list[str]]:
    """Benefit code → the ``level:<group>:<level>`` sources granting it, given the levels held."""
    sources: dict[str, list[str]] = {}
    for group_code, level_code in sorted(levels.items()):
        group = rules.level_groups.get(group_code)
        level = group.level(level_code) if group is not None else None
        if level is None:
            continue
        for code in level.benefits:
            sources.setdefault(code, []).append(f"level:{group_code}:{level_code}")
    return sources


# -- what a customer holds ----------------------------------------------------------------------


@dataclass(frozen=True)
class HeldBenefit:
    code: str
    name: str
    enabled: bool
    sources: tuple[str, ...]
    valid_until: datetime | None
    quota: QuotaUse | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "enabled": self.enabled,
            "sources": list(self.sources),
            "valid_until": _iso(self.valid_until),
            "quota": _quota_dict(self.quota),
        }


def _quota_dict(quota: QuotaUse | None) -> dict[str, Any] | None:
    if quota is None:
        return None
    return {
        "count": quota.count,
        "period": quota.period,
        "used": quota.used,
        "remaining": quota.remaining,
        "period_key": quota.period_key,
        "resets_at": _iso(quota.resets_at),
    }


def benefits_of(
    app: Membercore, customer_id: UUID, at: datetime | None = None
) -> list[HeldBenefit]:
    """The benefits the customer holds at ``at`` (now when None), in the program's order.

    A benefit switched off in the program is still listed (``enabled`` false) when held. A
    customer merged into another holds none: its grants and level went with the merge (the
    read answers with ``merged_into``).
    """
    customer = load_customer(app, customer_id)
    if customer.merged_into is not None and not customer.erased:
        return []
    customer.require_active()
    rules = loyalty_rules(app) if at is None else loyalty_rules(app, at)
    at = app.clock() if at is None else at
    tz = zone(rules.timezone)
    by_level = level_sources(rules, levels_of(app, customer_id, at)) if rules.benefits else {}
    account = load_account(app, customer_id)
    grants = tuple(account.grants.values()) if account is not None else ()
    redemptions = tuple(account.redemptions.values()) if account is not None else ()
    held: list[HeldBenefit] = []
    for code, benefit in rules.benefits.items():
        h: Holding | None = holding(grants, code, at, by_level.get(code, ()))
        if h is None:
            continue
        quota = quota_use(benefit, redemptions, tz, at)
        held.append(
            HeldBenefit(code, benefit.name, benefit.enabled, h.sources, h.valid_until, quota)
        )
    return held


def redemption_history(
    app: Membercore, customer_id: UUID, *, after: int = 0, limit: int = 100, code: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The customer's redemptions in order, after the ``after``-th (``seq``); the next cursor."""
    _active_customer(app, customer_id)
    account = load_account(app, customer_id)
    found = [] if account is None else account.redemptions_of(code)
    page = [r for r in found if r.seq > after][:limit]
    more = len(page) == limit and page[-1].seq < found[-1].seq
    return [_redemption_item(r) for r in page], str(page[-1].seq) if more else None


def _redemption_item(r: Redemption) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "redemption_id": r.redemption_id,
        "benefit": r.code,
        "source": r.source,
        "period_key": r.period_key,
        "redeemed_at": r.at.isoformat(),
        "program_version": r.program_version,
        "note": r.note,
        "actor": r.actor,
    }


# -- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenefitResult:
    """A benefit command's outcome: a body and the log position of its last event (or of the
    account's last, when nothing needed recording)."""

    customer_id: UUID
    position: int
    detail: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return {"customer_id": str(self.customer_id), **self.detail}


def _save(
    app: Membercore, ctx: CommandContext, account: BenefitAccount, result: BenefitResult
) -> BenefitResult:
    recordings = app.save(account, side_effect=ctx.complete(result.status, result.body()))
    return BenefitResult(
        result.customer_id,
        recordings[-1].notification.id,
        result.detail,
        result.status,
        ctx.idempotent,
    )


def _unchanged(app: Membercore, customer_id: UUID, detail: dict[str, Any]) -> BenefitResult:
    position = app.last_position_of(benefit_account_id(customer_id))
    return BenefitResult(customer_id, position, detail, 200)


def _benefit(rules: LoyaltyRules, code: str) -> BenefitRules:
    benefit = rules.benefits.get(code)
    if benefit is None:
        raise BenefitNotFound(code)
    return benefit


def _grant_detail(account: BenefitAccount, grant_id: str) -> dict[str, Any]:
    g = account.grants[grant_id]
    return {
        "grant_id": g.grant_id,
        "benefit": g.code,
        "valid_from": g.valid_from.isoformat(),
        "until": _iso(g.until),
        "reason": g.reason,
        "revoked_at": _iso(g.revoked_at),
    }


def grant_benefit(
    app: Membercore,
    customer_id: UUID,
    *,
    grant_id: str,
    code: str,
    until: datetime | None,
    reason: str,
    ctx: CommandContext,
) -> BenefitResult:
    """Grant ``code`` directly from now until ``until`` (default: now + the benefit's
    ``validity_days``; no end without them). The same ``grant_id`` again changes nothing."""

    def attempt(first: bool) -> BenefitResult:
        at = app.clock()
        _active_customer(app, customer_id)
        account = load_account(app, customer_id)
        existing = account.grants.get(grant_id) if account is not None else None
        if account is not None and existing is not None:
            if existing.code != code or (until is not None and existing.until != until):
                raise IdempotencyKeyReused(grant_id)
            return _unchanged(app, customer_id, _grant_detail(account, grant_id))
        benefit = _benefit(loyalty_rules(app), code)
        end = until if until is not None else default_until(at, benefit.validity_days)
        if account is None:
            account = BenefitAccount.open(customer_id, at=at)
        account.grant(
            grant_id, code, valid_from=at, until=end, reason=reason, actor=ctx.actor, at=at
        )
        result = BenefitResult(customer_id, 0, _grant_detail(account, grant_id), 201)
        return _save(app, ctx, account, result)

    return app.retrying(attempt)


def revoke_grant(
    app: Membercore, customer_id: UUID, grant_id: str, *, reason: str, ctx: CommandContext
) -> BenefitResult:
    """End a direct grant now; a grant revoked before stays as it is (nothing recorded)."""

    def attempt(first: bool) -> BenefitResult:
        at = app.clock()
        _active_customer(app, customer_id)
        account = load_account(app, customer_id)
        if account is None:
            raise GrantNotFound(grant_id)
        if not account.revoke(grant_id, reason=reason, actor=ctx.actor, at=at):
            return _unchanged(app, customer_id, _grant_detail(account, grant_id))
        result = BenefitResult(customer_id, 0, _grant_detail(account, grant_id), 200)
        return _save(app, ctx, account, result)

    return app.retrying(attempt)


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
            "resets_at": _iso(use.resets_at),
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


def redeem_benefit(
    app: Membercore,
    customer_id: UUID,
    code: str,
    *,
    redemption_id: str,
    note: str | None = None,
    ctx: CommandContext,
) -> BenefitResult:
    """Use a benefit once (核销), under the program in force now.

    Unknown code: 404 ``benefit_not_found``; switched off: ``benefit_disabled``; not held now:
    ``benefit_not_held``; quota of the current local period used up: ``benefit_quota_exhausted``.
    A ``redemption_id`` already recorded on the account answers that redemption and changes
    nothing (another benefit under the same id: ``idempotency_key_reused``).
    """

    def attempt(first: bool) -> BenefitResult:
        at = app.clock()
        _active_customer(app, customer_id)
        rules = loyalty_rules(app)
        tz = zone(rules.timezone)
        account = load_account(app, customer_id)
        known = account.redemptions.get(redemption_id) if account is not None else None
        if account is not None and known is not None:
            if known.code != code:
                raise IdempotencyKeyReused(redemption_id)
            detail = _redemption_detail(account, known, rules.benefits.get(code), tz)
            return _unchanged(app, customer_id, detail)
        benefit = _benefit(rules, code)
        sources = level_sources(rules, levels_of(app, customer_id, at)).get(code, [])
        if account is None:
            account = BenefitAccount.open(customer_id, at=at)
        redemption, _ = account.redeem(
            redemption_id,
            benefit,
            level_sources=sources,
            tz=tz,
            program_version=rules.version,
            note=note,
            actor=ctx.actor,
            at=at,
        )
        detail = _redemption_detail(account, redemption, benefit, tz)
        return _save(app, ctx, account, BenefitResult(customer_id, 0, detail, 201))

    return app.retrying(attempt, attempts=REDEEM_ATTEMPTS)
