"""Qualifying entries and the levels in force, on memberships read from the store.

Points adjustments call ``qualify`` and save the memberships it returns in their own
transaction (orders and refunds call the pure ``domain.qualifying`` on what they prefetched).
Every decision is the aggregate's, with the group's rules of the program version in force and
the tenant's time zone, both passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from application.app import Membercore
from application.loaders import optional
from application.program import loyalty_rules
from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules
from domain.qualifying import Qualified, levels_at, qualify_entry


def zone(rules: LoyaltyRules) -> ZoneInfo:
    return ZoneInfo(rules.timezone)


def _memberships(app: Membercore) -> Callable[[UUID], LevelMembership | None]:
    return lambda membership_id: optional(app, membership_id, LevelMembership)


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
) -> Qualified:
    """Count one qualifying entry (``amounts``: basis → signed value) on the customer's ladders
    (``domain.qualifying.qualify_entry``); the changed memberships are NOT saved: the caller
    saves them in its own transaction."""
    return qualify_entry(
        _memberships(app),
        customer_id,
        roles,
        loyalty,
        amounts,
        entry_id=entry_id,
        effective_at=effective_at,
        at=at,
    )


def current_levels(app: Membercore, customer_id: UUID, at: datetime) -> dict[str, str]:
    """Group code → level code in force at ``at`` (override included), for the groups of the
    program in force at ``at`` the customer is on."""
    return levels_at(_memberships(app), customer_id, loyalty_rules(app, at), at)
