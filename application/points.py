"""Points commands and queries: redeem (and reverse a redemption), adjust, hold / capture /
release, balances, the ledger, and the expiry job (which also releases timed-out holds).

Each command loads the customer's ``PointsAccount`` for the point type (opening it when the
customer has none yet), lets it decide at ``app.clock()`` and saves its events in one
transaction together with the idempotent response (``ctx.complete``). A stale account
(another writer got there first) is reloaded and decided again (``app.retrying``). Commands on a
merged-away or erased customer are refused (409 ``customer_merged`` / ``customer_erased``), as
customer commands are; queries answer for the id as given.

The rules are the program version in force now (``loyalty_rules(app, at)``): burn order,
redeemability, expiry of positive adjustments; the tenant's time zone is ``rules.timezone``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.context import CommandContext
from application.levels import qualify
from application.merges import load_customer
from application.program import loyalty_rules
from domain.errors import (
    FieldProblem,
    InvalidInput,
    PointsNotRedeemable,
    PointTypeNotFound,
)
from domain.expiry import expires_at
from domain.loyalty import MAX_HOLD_TIMEOUT_MINUTES, LoyaltyRules, PointTypeRules
from domain.points_account import LotTakes, PointsAccount

# Points are integers; this bound keeps every amount far inside bigint and exact in JSON (2^53).
MAX_POINTS = 10**15
# The longest a hold may last, whoever sets it (request or program).
MAX_HOLD_SECONDS = MAX_HOLD_TIMEOUT_MINUTES * 60


@dataclass(frozen=True)
class PointsResult:
    """The outcome of a points command (``api.commands.Result``)."""

    status: int
    detail: dict[str, Any]
    position: int
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return dict(self.detail)


def _lots(takes: LotTakes) -> list[dict[str, Any]]:
    return [{"lot_id": lot_id, "amount": n} for lot_id, n in takes]


def load_account(app: Membercore, customer_id: UUID, point_type: str) -> PointsAccount | None:
    try:
        account: PointsAccount = app.repository.get(PointsAccount.id_for(customer_id, point_type))
    except AggregateNotFoundError:
        return None
    return account


def _account(app: Membercore, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
    account = load_account(app, customer_id, point_type)
    return account if account is not None else PointsAccount.open(customer_id, point_type, at=at)


def _point_type(rules: LoyaltyRules, point_type: str) -> PointTypeRules:
    pt = rules.point_types.get(point_type)
    if pt is None:
        raise PointTypeNotFound(point_type)
    return pt


def _amount(amount: int, *, signed: bool = False) -> None:
    bad = isinstance(amount, bool) or not isinstance(amount, int)
    if bad or abs(amount) > MAX_POINTS or (amount == 0 if signed else amount < 1):
        reason = "a non-zero integer" if signed else "a positive integer"
        raise InvalidInput([FieldProblem("amount", f"must be {reason} of at most {MAX_POINTS}")])


# (status, response detail) or (status, detail, other aggregates the command changed).
Decide = Callable[
    [PointsAccount, LoyaltyRules, datetime],
    tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], Sequence[Aggregate]],
]


def _command(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    ctx: CommandContext,
    decide: Decide,
    *,
    needs_type: bool = True,
) -> PointsResult:
    """Load, decide, save (with the stored response), retrying on a concurrent write."""

    def attempt(first: bool) -> PointsResult:
        at = app.clock()
        load_customer(app, customer_id).require_active()
        rules = loyalty_rules(app, at)
        if needs_type:
            _point_type(rules, point_type)
        account = _account(app, customer_id, point_type, at)
        if account.closed:
            # Merged away after the customer was read: the retry answers customer_merged.
            raise IntegrityError(f"customer {customer_id} merged concurrently")
        status, detail, *also = decide(account, rules, at)
        body = {"customer_id": str(customer_id), "point_type": point_type, **detail}
        side_effect = ctx.complete(status, body)
        recordings = app.save(account, *(also[0] if also else ()), side_effect=side_effect)
        position = recordings[-1].notification.id if recordings else 0
        return PointsResult(status, body, position, side_effect is not None)

    return app.retrying(attempt)


def redeem_points(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    *,
    redemption_id: str,
    amount: int,
    reason: str | None,
    ctx: CommandContext,
) -> PointsResult:
    """Spend ``amount`` points in the type's burn order (409 ``insufficient_points``,
    409 ``points_not_redeemable``); the response lists the lots taken."""
    _amount(amount)

    def decide(account: PointsAccount, rules: LoyaltyRules, at: datetime) -> Any:
        pt = _point_type(rules, point_type)
        if not pt.redeemable:
            raise PointsNotRedeemable(point_type)
        until = at + timedelta(days=pt.reversal_days)
        takes = account.redeem(
            redemption_id,
            amount,
            at=at,
            burn_order=pt.burn_order,
            reason=reason,
            actor=ctx.actor,
            reversible_until=until,
        )
        return 201, {
            "redemption_id": redemption_id,
            "amount": amount,
            "lots": _lots(takes),
            "reversible_until": until.isoformat(),
            "available": account.available(at),
        }

    return _command(app, customer_id, point_type, ctx, decide)


def adjust_points(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    *,
    adjustment_id: str,
    amount: int,
    reason: str,
    ctx: CommandContext,
) -> PointsResult:
    """A signed manual correction by ``ctx.actor`` with a ``reason``. A positive one is a new lot
    expiring per the type's rule counted from now; a negative one consumes like a redemption.
    Where the type is the basis of a ladder the customer is on (growth value, 成长值), the
    correction counts there too, effective now: up moves the level at once; down lowers the
    value, and the level follows at the next assessment (a refund, by contrast, is effective at
    its order's time, so it takes back a level that order gave)."""
    _amount(amount, signed=True)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput([FieldProblem("reason", "a reason is required")])

    def decide(account: PointsAccount, rules: LoyaltyRules, at: datetime) -> Any:
        pt = _point_type(rules, point_type)
        until = expires_at(pt.expiry, at, ZoneInfo(rules.timezone)) if amount > 0 else None
        takes = account.adjust(
            adjustment_id,
            amount,
            reason=reason,
            actor=ctx.actor,
            at=at,
            expires_at=until,
            burn_order=pt.burn_order,
            program_version=rules.version,
        )
        detail: dict[str, Any] = {"adjustment_id": adjustment_id, "amount": amount}
        if amount > 0:
            detail["lot_id"] = f"adjustment:{adjustment_id}"
            detail["expires_at"] = until.isoformat() if until else None
        else:
            detail["lots"] = _lots(takes)
        detail["available"] = account.available(at)
        levels = qualify(
            app,
            customer_id,
            tuple(load_customer(app, customer_id).roles),
            rules,
            {point_type: amount},
            entry_id=f"adjustment:{point_type}:{adjustment_id}",
            effective_at=at,
            at=at,
        )
        detail["levels"] = levels.changes
        return 201, detail, levels.aggregates

    return _command(app, customer_id, point_type, ctx, decide)


def _hold_timeout(
    pt: PointTypeRules, at: datetime, ttl_seconds: int | None, until: datetime | None
) -> datetime:
    """When a hold made at ``at`` times out: ``ttl_seconds`` from now, or ``until``, or the
    type's ``hold_timeout_minutes``; never later than ``MAX_HOLD_SECONDS`` from now."""
    if until is not None:
        if until.tzinfo is None:
            raise InvalidInput([FieldProblem("expires_at", "must carry a time zone offset")])
        if not at < until <= at + timedelta(seconds=MAX_HOLD_SECONDS):
            raise InvalidInput(
                [FieldProblem("expires_at", f"must be within {MAX_HOLD_SECONDS} s from now")]
            )
        return until
    if ttl_seconds is not None:
        return at + timedelta(seconds=ttl_seconds)
    return at + timedelta(minutes=pt.hold_timeout_minutes)


def hold_points(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    *,
    hold_id: str,
    amount: int,
    ctx: CommandContext,
    ttl_seconds: int | None = None,
    expires_at: datetime | None = None,
) -> PointsResult:
    """Set points aside (they count against available) until captured or released, or until
    the hold times out (``ttl_seconds`` or ``expires_at``; default the type's
    ``hold_timeout_minutes``): then the expiry job releases it, and capture is refused."""
    _amount(amount)
    if ttl_seconds is not None and expires_at is not None:
        raise InvalidInput(
            [FieldProblem("ttl_seconds", "give ttl_seconds or expires_at, not both")]
        )
    bad_ttl = isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | None)
    if bad_ttl or (ttl_seconds is not None and not 1 <= ttl_seconds <= MAX_HOLD_SECONDS):
        raise InvalidInput(
            [FieldProblem("ttl_seconds", f"must be an integer from 1 to {MAX_HOLD_SECONDS}")]
        )

    def decide(account: PointsAccount, rules: LoyaltyRules, at: datetime) -> Any:
        pt = _point_type(rules, point_type)
        if not pt.redeemable:
            raise PointsNotRedeemable(point_type)
        until = _hold_timeout(pt, at, ttl_seconds, expires_at)
        takes = account.hold(
            hold_id, amount, at=at, burn_order=pt.burn_order, actor=ctx.actor, expires_at=until
        )
        return 201, {
            "hold_id": hold_id,
            "amount": amount,
            "status": "held",
            "expires_at": until.isoformat(),
            "lots": _lots(takes),
            "available": account.available(at),
        }

    return _command(app, customer_id, point_type, ctx, decide)


def _resolve_hold(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    hold_id: str,
    ctx: CommandContext,
    resolution: str,
) -> PointsResult:
    def decide(account: PointsAccount, rules: LoyaltyRules, at: datetime) -> Any:
        if resolution == "captured":
            hold = account.capture(hold_id, at=at, actor=ctx.actor)
        else:
            hold = account.release(hold_id, at=at, actor=ctx.actor)
        return 200, {
            "hold_id": hold_id,
            "amount": hold.points,
            "status": resolution,
            "expires_at": _iso(hold.expires_at),
            "lots": _lots(hold.lots),
            "available": account.available(at),
        }

    # A hold made under an earlier program can be resolved after its type left the program.
    return _command(app, customer_id, point_type, ctx, decide, needs_type=False)


def capture_hold(
    app: Membercore, customer_id: UUID, point_type: str, hold_id: str, ctx: CommandContext
) -> PointsResult:
    """Spend a hold, at most once and before its timeout (409 ``hold_already_resolved``,
    409 ``hold_expired``, 404 ``hold_not_found``)."""
    return _resolve_hold(app, customer_id, point_type, hold_id, ctx, "captured")


def release_hold(
    app: Membercore, customer_id: UUID, point_type: str, hold_id: str, ctx: CommandContext
) -> PointsResult:
    """Give a hold back to its lots, at most once and before its timeout (after it, the
    timeout releases it: 409 ``hold_expired``); what returns past its expiry expires."""
    return _resolve_hold(app, customer_id, point_type, hold_id, ctx, "released")


def reverse_redemption(
    app: Membercore,
    customer_id: UUID,
    point_type: str,
    redemption_id: str,
    *,
    reversal_id: str,
    amount: int | None,
    reason: str | None,
    ctx: CommandContext,
) -> PointsResult:
    """Give back ``amount`` points (default: what is left unreversed) of a redemption to the
    exact lots it took, last-taken first, with their original expiry (404
    ``redemption_not_found``, 409 ``reversal_exceeds_redemption``, 409
    ``reversal_window_closed`` past the type's ``reversal_days``)."""
    if amount is not None:
        _amount(amount)

    def decide(account: PointsAccount, rules: LoyaltyRules, at: datetime) -> Any:
        takes = account.reverse_redemption(
            redemption_id, amount, reversal_id=reversal_id, at=at, reason=reason, actor=ctx.actor
        )
        redemption = account.redemptions[redemption_id]
        return 201, {
            "redemption_id": redemption_id,
            "reversal_id": reversal_id,
            "amount": sum(n for _, n in takes),
            "lots": _lots(takes),
            "reversed_total": redemption.reversed,
            "reversible": redemption.points - redemption.reversed,
            "available": account.available(at),
        }

    # Like a hold, a redemption made under an earlier program stays reversible.
    return _command(app, customer_id, point_type, ctx, decide, needs_type=False)


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
        balance_of(load_account(app, customer_id, code), code, at, tz) for code in rules.point_types
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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
            "expires_at": _iso(event.expires_at),
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
            "lots": _lots(event.lots),
        }
    if isinstance(event, PointsAccount.Held):
        return {
            **common,
            "kind": "held",
            "hold_id": event.hold_id,
            "amount": event.points,
            "actor": event.actor,
            "expires_at": _iso(event.expires_at),
            "lots": _lots(event.lots),
        }
    if isinstance(event, PointsAccount.HoldExpired):
        return {
            **common,
            "kind": "hold_expired",
            "hold_id": event.hold_id,
            "amount": event.points,
            "expires_at": event.expires_at.isoformat(),
            "as_of": event.as_of.isoformat(),
            "lots": _lots(event.lots),
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
            "lots": _lots(event.lots),
            # Of what came back: settling a clamp refund's write-off, and repaying debt.
            "reclaimed": _lots(event.reclaimed),
            "repaid": _lots(event.repaid),
        }
    if isinstance(event, PointsAccount.HoldCaptured | PointsAccount.HoldReleased):
        kind = "hold_captured" if isinstance(event, PointsAccount.HoldCaptured) else "hold_released"
        return {
            **common,
            "kind": kind,
            "hold_id": event.hold_id,
            "amount": event.points,
            "actor": event.actor,
            "lots": _lots(event.lots),
        }
    if isinstance(event, PointsAccount.Expired):
        return {
            **common,
            "kind": "expired",
            "as_of": event.as_of.isoformat(),
            "amount": event.points,
            "lots": _lots(event.lots),
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
            "lots": _lots(event.lots),
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
            "expires_at": _iso(event.expires_at),
            "lots": _lots(event.lots),
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
    if load_account(app, customer_id, point_type) is None:
        if point_type not in loyalty_rules(app).point_types:
            raise PointTypeNotFound(point_type)
        return EntriesPage([], None)
    events = list(
        app.events.get(PointsAccount.id_for(customer_id, point_type), gt=after, limit=limit)
    )
    items = [e for e in (entry_of(ev) for ev in events) if e is not None]
    next_cursor = events[-1].originator_version if len(events) == limit else None
    return EntriesPage(items, next_cursor)


# -- expiry job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryRun:
    as_of: datetime
    accounts: int = 0
    expired_accounts: int = 0
    lots: int = 0
    points: int = 0
    position: int = 0
    holds: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "accounts_checked": self.accounts,
            "accounts_expired": self.expired_accounts,
            "lots_expired": self.lots,
            "points_expired": self.points,
            "holds_expired": self.holds,
        }


@dataclass(frozen=True)
class AccountExpiry:
    """What the job did to one account (all 0 when nothing was due)."""

    holds: int = 0
    lots: int = 0
    points: int = 0
    position: int = 0


def expire_account(app: Membercore, account_id: UUID, as_of: datetime) -> AccountExpiry:
    """Release the holds of one account timed out by ``as_of`` and expire its lots due by
    then; nothing due (already done by an earlier or concurrent run): nothing is written."""

    def attempt(first: bool) -> AccountExpiry:
        try:
            account: PointsAccount = app.repository.get(account_id)
        except AggregateNotFoundError:
            return AccountExpiry()
        settled = account.settle(as_of, at=app.clock())
        if not (settled.holds or settled.points):
            return AccountExpiry()
        recordings = app.save(account)
        position = recordings[-1].notification.id
        return AccountExpiry(settled.holds, settled.lots, settled.points, position)

    return app.retrying(attempt)


def expire_points(app: Membercore, as_of: datetime, accounts: Iterable[UUID]) -> ExpiryRun:
    """The expiry job over ``accounts`` (those the caller found with lots due or holds timed
    out by ``as_of``, e.g. from the ``points_lots`` and ``points_holds`` tables). Idempotent: a
    second or concurrent run finds it done in the accounts themselves and writes nothing.
    ``as_of`` may not be in the future: points are never expired early."""
    if as_of.tzinfo is None:
        raise InvalidInput([FieldProblem("as_of", "must carry a time zone offset")])
    if as_of > app.clock():
        raise InvalidInput([FieldProblem("as_of", "must not be in the future")])
    checked = expired_accounts = lots = points = holds = position = 0
    for account_id in dict.fromkeys(accounts):
        checked += 1
        done = expire_account(app, account_id, as_of)
        if done.points or done.holds:
            expired_accounts += 1
            lots += done.lots
            points += done.points
            holds += done.holds
            position = max(position, done.position)
    if position == 0:
        position = app.recorder.max_notification_id() or 0
    return ExpiryRun(as_of, checked, expired_accounts, lots, points, position, holds)
