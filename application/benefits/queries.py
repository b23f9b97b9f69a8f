"""What a customer holds and has redeemed.

A customer holds a benefit at ``at`` when a level they are on then grants it (the program's
level groups, ``application.levels.current_levels``) or a direct grant on their
``BenefitAccount`` is valid then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from application.app import Membercore
from application.instants import iso
from application.levels import current_levels, zone
from application.loaders import active_customer, benefit_account, load_customer
from application.program import loyalty_rules
from domain.benefit_quotas import Holding, QuotaUse, Redemption, holding, quota_use
from domain.loyalty import LoyaltyRules


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
            "valid_until": iso(self.valid_until),
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
        "resets_at": iso(quota.resets_at),
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
    tz = zone(rules)
    by_level = level_sources(rules, current_levels(app, customer_id, at)) if rules.benefits else {}
    account = benefit_account(app, customer_id)
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
    active_customer(app, customer_id)
    account = benefit_account(app, customer_id)
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
