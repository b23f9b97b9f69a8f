"""What ``GET /v1/customers/{id}/levels`` shows: per ladder, the level, the value in the window,
the next level and the gap to it, what keeps the current level, and the override in force."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application.app import Membercore
from application.levels.qualification import zone
from application.loaders import load_customer, membership
from application.program import loyalty_rules
from domain.customer import Customer
from domain.level_membership import LevelMembership
from domain.levels import rank_of, threshold_of
from domain.loyalty import LevelGroupRules, LoyaltyRules


def level_status(app: Membercore, customer_id: UUID, now: datetime) -> list[dict[str, Any]]:
    """Per level group the customer is on: the level, since when, the qualifying value in the
    window, the next level and the gap to it, and what keeps the current level by the next
    assessment (GET /v1/customers/{id}/levels). A ladder the customer's roles put them on but
    that nothing has counted on yet shows its entry level with ``since`` null, so a new member
    sees the gap to the first upgrade too."""
    customer = load_customer(app, customer_id)
    rules = loyalty_rules(app, now)
    tz = zone(rules)
    out: list[dict[str, Any]] = []
    for group in rules.level_groups.values():
        m = membership(app, customer_id, group.code)
        if m is not None:
            out.append(_status(group, tz, m, now))
        elif _may_join(customer) and rules.on_group(group.code, customer.roles):
            out.append(_not_joined(customer_id, rules, group, tz, now))
    return out


def _may_join(customer: Customer) -> bool:
    return not customer.erased and customer.merged_into is None


def _not_joined(
    customer_id: UUID, rules: LoyaltyRules, group: LevelGroupRules, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    # An unsaved membership at the entry level: what the first qualifying entry would open.
    entry = LevelMembership.open(customer_id, group, at=now, program_version=rules.version)
    return {**_status(group, tz, entry, now), "since": None, "keep": None}


def _status(
    group: LevelGroupRules, tz: ZoneInfo, m: LevelMembership, now: datetime
) -> dict[str, Any]:
    level = m.level_at(now)
    value = m.value_at(group, tz, now)
    bounds = m.window(group, tz, now)
    rank = rank_of(group, level)
    next_level = None
    if rank + 1 < len(group.levels):
        up = group.levels[rank + 1]
        next_level = {
            "code": up.code,
            "name": up.name,
            "threshold": up.threshold,
            "gap": max(0, up.threshold - value),
        }
    keep = None
    by = m.next_assessment_at(group, tz)
    if by is not None:
        threshold = threshold_of(group, m.base_level)
        kept = m.kept_value(group, tz, by)
        keep = {
            "level": m.base_level,
            "threshold": threshold,
            "by": by.isoformat(),
            "value": kept,
            "gap": max(0, threshold - kept),
        }
    o = m.override
    override = None
    if o is not None and o.in_force(now):
        reason, actor = m.override_notes[o.override_id]
        override = {
            "override_id": o.override_id,
            "level": o.level,
            "until": o.until.isoformat(),
            "reason": reason,
            "actor": actor,
            "set_at": o.set_at.isoformat(),
            "computed_level": m.base_level,
        }
    lv = group.level(level)
    return {
        "group": group.code,
        "name": group.name,
        "level": level,
        "level_name": lv.name if lv is not None else level,
        "since": _since(m, level).isoformat(),
        "qualifying_value": value,
        "window": {
            "mode": group.window.mode,
            "basis": group.basis,
            "from": bounds.lo.isoformat() if bounds.lo is not None else None,
            "to": now.isoformat(),
        },
        "next_level": next_level,
        "keep": keep,
        "override": override,
    }


def _since(m: LevelMembership, level: str) -> datetime:
    """Since when ``level`` is in force: the recorded ``since``, or the end date of an override
    that has expired without its end recorded yet."""
    o = m.override
    if level != m.level and o is not None:
        return o.until
    return m.since
