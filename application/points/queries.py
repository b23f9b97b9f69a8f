"""Points reads, from the accounts themselves (always current): balances per point type and
each account's ledger of entries. Queries answer for the id as given (a merged-away customer's
empty accounts, with ``merged_into`` from the API).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application.app import Membercore
from application.instants import iso
from application.loaders import load_customer, points_account
from application.points.commands import lots_of
from application.program import loyalty_rules
from domain.errors import PointTypeNotFound
from domain.points_account import PointsAccount

# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiring:
    on: date
    amount: int


@dataclass(frozen=True)
class Balance:
    point_type: str
    available: int
    pending: int
    held: int
    expiring: list[Expiring] = field(default_factory=list)


def balance_of(
    account: PointsAccount | None, point_type: str, at: datetime, tz: ZoneInfo
) -> Balance:
    if account is None:
        return Balance(point_type, 0, 0, 0)
    by_day: dict[date, int] = {}
    for when, points in account.expiring(at):
        day = when.astimezone(tz).date()
        by_day[day] = by_day.get(day, 0) + points
    return Balance(
        point_type,
        account.available(at),
        account.pending(at),
        account.held_at(at),
        [Expiring(d, n) for d, n in sorted(by_day.items())],
    )


def points_balances(app: Membercore, customer_id: UUID, at: datetime) -> list[Balance]:
    """Per point type of the program in force at ``at``: available, pending and held points at
    ``at`` and the upcoming expiries grouped by the local date (tenant time zone) of the
    instant they expire. Read from the accounts themselves, so always current."""
    load_customer(app, customer_id)
    rules = loyalty_rules(app, at)
    tz = ZoneInfo(rules.timezone)
    return [
        balance_of(points_account(app, customer_id, code), code, at, tz)
        for code in rules.point_types
    ]


def entry_of(event: Any) -> dict[str, Any] | None:
    """One ledger entry of an account event (None for the account's opening)."""
    common = {"version": event.originator_version, "recorded_at": event.timestamp.isoformat()}
    if isinstance(event, PointsAccount.Earned):
        return {
            **common,
            "kind": "earned",
            "lot_id": event.lot_id,
            "amount": event.points,
            "earned_at": event.earned_at.isoformat(),
            "active_at": event.active_at.isoformat(),
            "expires_at": iso(event.expires_at),
            "source": dict(event.source),
            "program_version": event.program_version,
            "debt_repaid": event.repaid,
        }
    if isinstance(event, PointsAccount.Redeemed):
        return {
            **common,
            "kind": "redeemed",
            "redemption_id": event.redemption_id,
            "amount": event.points,
            "reason": event.reason,
            "actor": event.actor,
            "lots": lots_of(event.lots),
        }
    if isinstance(event, PointsAccount.Held):
        return {
            **common,
            "kind": "held",
            "hold_id": event.hold_id,
            "amount": event.points,
            "actor": event.actor,
            "expires_at": iso(event.expires_at),
            "lots": lots_of(event.lots),
        }
    if isinstance(event, PointsAccount.HoldExpired):
        return {
            **common,
            "kind": "hold_expired",
            "hold_id": event.hold_id,
            "amount": event.points,
            "expires_at": event.expires_at.isoformat(),
            "as_of": event.as_of.isoformat(),
            "lots": lots_of(event.lots),
        }
    if isinstance(event, PointsAccount.RedemptionReversed):
        return {
            **common,
            "kind": "redemption_reversed",
            "reversal_id": event.reversal_id,
            "redemption_id": event.redemption_id,
            "amount": event.points,
            "reason": event.reason,
            "actor": event.actor,
            "lots": lots_of(event.lots),
            # Of what came back: settling a clamp refund's write-off, and repaying debt.
            "reclaimed": lots_of(event.reclaimed),
            "repaid": lots_of(event.repaid),
        }
    if isinstance(event, PointsAccount.HoldCaptured | PointsAccount.HoldReleased):
        kind = "hold_captured" if isinstance(event, PointsAccount.HoldCaptured) else "hold_released"
        return {
            **common,
            "kind": kind,
            "hold_id": event.hold_id,
            "amount": event.points,
            "actor": event.actor,
            "lots": lots_of(event.lots),
        }
    if isinstance(event, PointsAccount.Expired):
        return {
            **common,
            "kind": "expired",
            "as_of": event.as_of.isoformat(),
            "amount": event.points,
            "lots": lots_of(event.lots),
        }
    if isinstance(event, PointsAccount.Reversed):
        return {
            **common,
            "kind": "reversed",
            "reversal_id": event.reversal_id,
            "lot_id": event.lot_id,
            "amount": event.points,
            "policy": event.policy,
            "taken_from_lot": event.taken_from_lot,
            "lots": lots_of(event.lots),
            "debt": event.debt,
            "shortfall": event.shortfall,
        }
    if isinstance(event, PointsAccount.Adjusted):
        return {
            **common,
            "kind": "adjusted",
            "adjustment_id": event.adjustment_id,
            "amount": event.amount,
            "reason": event.reason,
            "actor": event.actor,
            "lot_id": event.lot_id,
            "expires_at": iso(event.expires_at),
            "lots": lots_of(event.lots),
            "debt_repaid": event.repaid,
            "program_version": event.program_version,
        }
    return None


@dataclass(frozen=True)
class EntriesPage:
    items: list[dict[str, Any]]
    next_cursor: int | None


def points_entries(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    *,
    after: int = 0,
    limit: int = 100,
) -> EntriesPage:
    """The account's ledger in order, from its events: earns (with ``expires_at``),
    redemptions and holds (with the lots taken), hold timeouts, redemption reversals (with the
    lots restored), expiries, reversals, adjustments (with ``reason`` and ``actor``). Paged by
    stream version (``after``)."""
    load_customer(app, customer_id)
    if points_account(app, customer_id, point_type) is None:
        if point_type not in loyalty_rules(app).point_types:
            raise PointTypeNotFound(point_type)
        return EntriesPage([], None)
    events = list(
        app.events.get(PointsAccount.id_for(customer_id, point_type), gt=after, limit=limit)
    )
    items = [e for e in (entry_of(ev) for ev in events) if e is not None]
    next_cursor = events[-1].originator_version if len(events) == limit else None
    return EntriesPage(items, next_cursor)
