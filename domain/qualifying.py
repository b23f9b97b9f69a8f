"""A qualifying entry on the customer's ladders, and the levels in force: pure, on memberships
the caller has read.

An order (its spend and the points it earned) and a refund (the same, negative) count on every
level group whose basis they carry and whose ladder the customer's roles put them on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules

# What the caller read: the membership of a customer in a group by its id (None: there is none).
Memberships = Callable[[UUID], LevelMembership | None]


@dataclass(frozen=True)
class Qualified:
    """What one entry did. ``changed``: memberships with new events (opened or counted), to be
    saved with the entry's other aggregates. ``changes``: one ``{"group", "from", "to"}`` per
    group whose level moved (``from`` None: the entry opened the membership)."""

    changed: tuple[LevelMembership, ...]
    changes: list[dict[str, Any]]
    opened: tuple[LevelMembership, ...] = ()


def qualify_entry(
    memberships: Memberships,
    customer_id: UUID,
    roles: Collection[str],
    loyalty: LoyaltyRules,
    amounts: Mapping[str, int],
    *,
    entry_id: str,
    effective_at: datetime,
    at: datetime,
) -> Qualified:
    """Count one entry (``amounts``: basis → signed value), opening a membership at the first
    level where there is none. An ``entry_id`` already counted is ignored; negative values
    re-run the assessment at once (the membership decides)."""
    tz = ZoneInfo(loyalty.timezone)
    changed: list[LevelMembership] = []
    opened: list[LevelMembership] = []
    changes: list[dict[str, Any]] = []
    for group in loyalty.level_groups.values():
        if group.basis not in amounts or not loyalty.on_group(group.code, roles):
            continue
        membership = memberships(LevelMembership.id_for(customer_id, group.code))
        before: str | None = None
        if membership is None:
            membership = LevelMembership.open(
                customer_id, group, at=at, program_version=loyalty.version
            )
            opened.append(membership)
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
            changed.append(membership)
        if membership.level != before:
            changes.append({"group": group.code, "from": before, "to": membership.level})
    return Qualified(tuple(changed), changes, tuple(opened))


def levels_at(
    memberships: Memberships, customer_id: UUID, loyalty: LoyaltyRules, at: datetime
) -> dict[str, str]:
    """Group code → level in force at ``at`` (override included) on the groups of ``loyalty``
    (the version in force at ``at``) the customer was on by then."""
    out: dict[str, str] = {}
    for code in loyalty.level_groups:
        membership = memberships(LevelMembership.id_for(customer_id, code))
        if membership is not None and membership.created_on <= at:
            out[code] = membership.level_at(at)
    return out
