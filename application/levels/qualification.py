"""Qualifying entries and the levels in force.

Orders, refunds and points adjustments call ``qualify`` and save the memberships it returns in
their own transaction. Every decision is the aggregate's, with the group's rules of the program
version in force and the tenant's time zone, both passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application.app import Membercore
from application.loaders import membership as load_membership
from application.program import loyalty_rules
from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules


@dataclass(frozen=True)
class LevelOutcome:
    """What a qualifying entry did. ``aggregates`` changed and are NOT saved: the caller saves
    them in its own transaction. ``changes``: one ``{"group", "from", "to"}`` per group whose
    level moved (``from`` None: the membership was opened by this entry)."""

    aggregates: list[LevelMembership]
    changes: list[dict[str, Any]]


def zone(rules: LoyaltyRules) -> ZoneInfo:
    return ZoneInfo(rules.timezone)


def qualify(
    app: Membercore,
    customer_id: UUID,
    roles: Collection[str],
    loyalty: LoyaltyRules,
    amounts: Mapping[str, int],
    *,
    entry_id: str,
    effective_at: datetime,
    at: datetime,
    load: Callable[[UUID], Any] | None = None,
) -> LevelOutcome:
    """Count one qualifying entry (``amounts``: basis → signed value) on every level group of
    ``loyalty`` whose basis is in ``amounts`` and whose role the customer holds, opening the
    membership at the first level where there is none. An ``entry_id`` already counted is
    ignored. Negative values (refunds) re-run the assessment at once. ``load``: where the
    caller already read the memberships (by id; None for one that does not exist)."""
    tz = zone(loyalty)
    aggregates: list[LevelMembership] = []
    changes: list[dict[str, Any]] = []
    for group in loyalty.level_groups.values():
        if group.basis not in amounts or not loyalty.on_group(group.code, roles):
            continue
        if load is None:
            membership = load_membership(app, customer_id, group.code)
        else:
            loaded = load(LevelMembership.id_for(customer_id, group.code))
            membership = loaded if isinstance(loaded, LevelMembership) else None
        before: str | None = None
        if membership is None:
            membership = LevelMembership.open(
                customer_id, group, at=at, program_version=loyalty.version
            )
        else:
            before = membership.level
        membership.qualify(
            group,
            tz,
            entry_id=entry_id,
            value=amounts[group.basis],
            effective_at=effective_at,
            at=at,
            program_version=loyalty.version,
        )
        if membership.pending_events:
            aggregates.append(membership)
        if membership.level != before:
            changes.append({"group": group.code, "from": before, "to": membership.level})
    return LevelOutcome(aggregates, changes)


def current_levels(app: Membercore, customer_id: UUID, at: datetime) -> dict[str, str]:
    """Group code → level code in force at ``at`` (override included), for the groups of the
    program in force at ``at`` the customer is on."""
    rules = loyalty_rules(app, at)
    out: dict[str, str] = {}
    for code in rules.level_groups:
        membership = load_membership(app, customer_id, code)
        if membership is not None and membership.created_on <= at:
            out[code] = membership.level_at(at)
    return out
