"""Points commands: redeem (and reverse a redemption), adjust, hold, capture and release.

Each loads the customer's ``PointsAccount`` for the point type (opened when the customer has
none yet) and lets it decide at ``app.clock()``; the kernel saves and answers. Commands on a
merged-away or erased customer are refused (409 ``customer_merged`` / ``customer_erased``). A
repeated client id with the same request is answered again by the account (a replay, nothing
written); with another request it is ``idempotency_key_reused``.

The rules are the program version in force now (``loyalty_rules(app, at)``): burn order,
redeemability, expiry of positive adjustments; the tenant's time zone is ``rules.timezone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.context import CommandContext
from application.instants import iso, require_offset
from application.kernel import Command, Decision, Outcome, handles
from application.levels import qualify
from application.loaders import active_customer, points_account_or_new
from application.program import loyalty_rules
from domain.errors import FieldProblem, InvalidInput, PointsNotRedeemable, PointTypeNotFound
from domain.expiry import expires_at
from domain.lots import LotTakes
from domain.loyalty import MAX_HOLD_TIMEOUT_MINUTES, LoyaltyRules, PointTypeRules
from domain.points_account import PointsAccount

# Points are integers; this bound keeps every amount far inside bigint and exact in JSON (2^53).
MAX_POINTS = 10**15
# The longest a hold may last, whoever sets it (request or program).
MAX_HOLD_SECONDS = MAX_HOLD_TIMEOUT_MINUTES * 60


def _amount(amount: int, *, signed: bool = False) -> None:
    bad = isinstance(amount, bool) or not isinstance(amount, int)
    if bad or abs(amount) > MAX_POINTS or (amount == 0 if signed else amount < 1):
        reason = "a non-zero integer" if signed else "a positive integer"
        raise InvalidInput([FieldProblem("amount", f"must be {reason} of at most {MAX_POINTS}")])


@dataclass(frozen=True)
class PointsCommand(Command):
    """A command on one customer's account of one point type."""

    scope: ClassVar[tuple[str, ...]] = ("customer_id", "point_type")
    customer_id: UUID
    point_type: str


@dataclass(frozen=True)
class RedeemPoints(PointsCommand):
    """Spend ``amount`` points in the type's burn order (409 ``insufficient_points``, 409
    ``points_not_redeemable``); the answer lists the lots taken."""

    operation = "RedeemPoints"
    client_id = "redemption_id"
    redemption_id: str
    amount: int
    reason: str | None = None

    def __post_init__(self) -> None:
        _amount(self.amount)


@dataclass(frozen=True)
class AdjustPoints(PointsCommand):
    """A signed manual correction by the caller with a ``reason``. A positive one is a new lot
    expiring per the type's rule counted from now; a negative one consumes like a redemption.
    Where the type is the basis of a ladder the customer is on (growth value, 成长值), the
    correction counts there too, effective now: up moves the level at once; down lowers the
    value, and the level follows at the next assessment."""

    operation = "AdjustPoints"
    client_id = "adjustment_id"
    adjustment_id: str
    amount: int
    reason: str

    def __post_init__(self) -> None:
        _amount(self.amount, signed=True)
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise InvalidInput([FieldProblem("reason", "a reason is required")])


@dataclass(frozen=True)
class HoldPoints(PointsCommand):
    """Set points aside (they count against available) until captured or released, or until
    the hold times out (``ttl_seconds`` or ``expires_at``; default the type's
    ``hold_timeout_minutes``): then the expiry job releases it, and capture is refused."""

    operation = "HoldPoints"
    client_id = "hold_id"
    hold_id: str
    amount: int
    ttl_seconds: int | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        _amount(self.amount)
        ttl = self.ttl_seconds
        if ttl is not None and self.expires_at is not None:
            raise InvalidInput(
                [FieldProblem("ttl_seconds", "give ttl_seconds or expires_at, not both")]
            )
        bad = isinstance(ttl, bool) or not isinstance(ttl, int | None)
        if bad or (ttl is not None and not 1 <= ttl <= MAX_HOLD_SECONDS):
            raise InvalidInput(
                [FieldProblem("ttl_seconds", f"must be an integer from 1 to {MAX_HOLD_SECONDS}")]
            )


@dataclass(frozen=True)
class CaptureHold(PointsCommand):
    """Spend a hold, at most once and before its timeout (409 ``hold_already_resolved``, 409
    ``hold_expired``, 404 ``hold_not_found``)."""

    operation = "CaptureHold"
    scope = ("customer_id", "point_type", "hold_id")
    hold_id: str


@dataclass(frozen=True)
class ReleaseHold(PointsCommand):
    """Give a hold back to its lots, at most once and before its timeout (after it, the timeout
    releases it: 409 ``hold_expired``); what returns past its expiry expires."""

    operation = "ReleaseHold"
    scope = ("customer_id", "point_type", "hold_id")
    hold_id: str


@dataclass(frozen=True)
class ReverseRedemption(PointsCommand):
    """Give back ``amount`` points (default: what is left unreversed) of a redemption to the
    exact lots it took, last-taken first, with their original expiry (404
    ``redemption_not_found``, 409 ``reversal_exceeds_redemption``, 409
    ``reversal_window_closed`` past the type's ``reversal_days``)."""

    operation = "ReverseRedemption"
    client_id = "reversal_id"
    redemption_id: str
    reversal_id: str
    amount: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.amount is not None:
            _amount(self.amount)


# -- loading and answering ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    account: PointsAccount
    rules: LoyaltyRules
    at: datetime


def _read(app: Membercore, cmd: PointsCommand, *, needs_type: bool = True) -> _Read:
    at = app.clock()
    active_customer(app, cmd.customer_id)
    rules = loyalty_rules(app, at)
    if needs_type:
        point_type_rules(rules, cmd.point_type)
    account = points_account_or_new(app, cmd.customer_id, cmd.point_type, at)
    if account.closed:
        # Merged away after the customer was read: the retry answers customer_merged.
        raise IntegrityError(f"customer {cmd.customer_id} merged concurrently")
    return _Read(account, rules, at)


def _decided(
    cmd: PointsCommand, read: _Read, detail: dict[str, Any], *also: Aggregate, creates: bool = True
) -> Decision:
    account = read.account
    body = {"customer_id": str(cmd.customer_id), "point_type": cmd.point_type, **detail}
    # No new event: the account recognised a repeated client id and answered it again.
    outcome = Outcome.CREATED if creates and account.pending_events else Outcome.DONE
    return Decision(outcome, body, save=(account, *also), position_of=account.id)


def point_type_rules(rules: LoyaltyRules, point_type: str) -> PointTypeRules:
    pt = rules.point_types.get(point_type)
    if pt is None:
        raise PointTypeNotFound(point_type)
    return pt


def _redeemable(rules: LoyaltyRules, point_type: str) -> PointTypeRules:
    pt = point_type_rules(rules, point_type)
    if not pt.redeemable:
        raise PointsNotRedeemable(point_type)
    return pt


def lots_of(takes: LotTakes) -> list[dict[str, Any]]:
    return [{"lot_id": lot_id, "amount": n} for lot_id, n in takes]


# -- handlers -----------------------------------------------------------------------------------


@handles(RedeemPoints)
def redeem_points(app: Membercore, cmd: RedeemPoints, ctx: CommandContext) -> Decision:
    read = _read(app, cmd)
    pt = _redeemable(read.rules, cmd.point_type)
    until = read.at + timedelta(days=pt.reversal_days)
    account = read.account
    takes = account.redeem(
        cmd.redemption_id,
        cmd.amount,
        at=read.at,
        burn_order=pt.burn_order,
        reason=cmd.reason,
        actor=ctx.actor,
        reversible_until=until,
    )
    recorded = account.redemptions[cmd.redemption_id].reversible_until
    detail = {
        "redemption_id": cmd.redemption_id,
        "amount": cmd.amount,
        "lots": lots_of(takes),
        "reversible_until": iso(recorded),
        "available": account.available(read.at),
    }
    return _decided(cmd, read, detail)


@handles(AdjustPoints)
def adjust_points(app: Membercore, cmd: AdjustPoints, ctx: CommandContext) -> Decision:
    read = _read(app, cmd)
    pt = point_type_rules(read.rules, cmd.point_type)
    at, account = read.at, read.account
    until = expires_at(pt.expiry, at, ZoneInfo(read.rules.timezone)) if cmd.amount > 0 else None
    takes = account.adjust(
        cmd.adjustment_id,
        cmd.amount,
        reason=cmd.reason,
        actor=ctx.actor,
        at=at,
        expires_at=until,
        burn_order=pt.burn_order,
        program_version=read.rules.version,
    )
    detail: dict[str, Any] = {"adjustment_id": cmd.adjustment_id, "amount": cmd.amount}
    if cmd.amount > 0:
        lot_id = f"adjustment:{cmd.adjustment_id}"
        lot = account.lots.get(lot_id)
        detail["lot_id"] = lot_id
        detail["expires_at"] = iso(lot.expires_at if lot is not None else until)
    else:
        detail["lots"] = lots_of(takes)
    detail["available"] = account.available(at)
    levels = qualify(
        app,
        cmd.customer_id,
        tuple(active_customer(app, cmd.customer_id).roles),
        read.rules,
        {cmd.point_type: cmd.amount},
        entry_id=f"adjustment:{cmd.point_type}:{cmd.adjustment_id}",
        effective_at=at,
        at=at,
    )
    detail["levels"] = levels.changes
    return _decided(cmd, read, detail, *levels.changed)


def _hold_timeout(pt: PointTypeRules, at: datetime, cmd: HoldPoints) -> datetime:
    """When a hold made at ``at`` times out: ``ttl_seconds`` from now, or ``expires_at``, or the
    type's ``hold_timeout_minutes``; never later than ``MAX_HOLD_SECONDS`` from now."""
    until = cmd.expires_at
    if until is not None:
        require_offset(until, field="expires_at")
        if not at < until <= at + timedelta(seconds=MAX_HOLD_SECONDS):
            raise InvalidInput(
                [FieldProblem("expires_at", f"must be within {MAX_HOLD_SECONDS} s from now")]
            )
        return until
    if cmd.ttl_seconds is not None:
        return at + timedelta(seconds=cmd.ttl_seconds)
    return at + timedelta(minutes=pt.hold_timeout_minutes)


@handles(HoldPoints)
def hold_points(app: Membercore, cmd: HoldPoints, ctx: CommandContext) -> Decision:
    read = _read(app, cmd)
    pt = _redeemable(read.rules, cmd.point_type)
    account = read.account
    held = account.holds.get(cmd.hold_id)
    until = held.expires_at if held is not None else _hold_timeout(pt, read.at, cmd)
    takes = account.hold(
        cmd.hold_id,
        cmd.amount,
        at=read.at,
        burn_order=pt.burn_order,
        actor=ctx.actor,
        expires_at=until,
    )
    detail = {
        "hold_id": cmd.hold_id,
        "amount": cmd.amount,
        "status": "held",
        "expires_at": iso(until),
        "lots": lots_of(takes),
        "available": account.available(read.at),
    }
    return _decided(cmd, read, detail)


def _resolved(
    app: Membercore, cmd: CaptureHold | ReleaseHold, ctx: CommandContext, resolution: str
) -> Decision:
    # A hold made under an earlier program can be resolved after its type left the program.
    read = _read(app, cmd, needs_type=False)
    account = read.account
    if resolution == "captured":
        hold = account.capture(cmd.hold_id, at=read.at, actor=ctx.actor)
    else:
        hold = account.release(cmd.hold_id, at=read.at, actor=ctx.actor)
    detail = {
        "hold_id": cmd.hold_id,
        "amount": hold.points,
        "status": resolution,
        "expires_at": iso(hold.expires_at),
        "lots": lots_of(hold.lots),
        "available": account.available(read.at),
    }
    return _decided(cmd, read, detail, creates=False)


@handles(CaptureHold)
def capture_hold(app: Membercore, cmd: CaptureHold, ctx: CommandContext) -> Decision:
    return _resolved(app, cmd, ctx, "captured")


@handles(ReleaseHold)
def release_hold(app: Membercore, cmd: ReleaseHold, ctx: CommandContext) -> Decision:
    return _resolved(app, cmd, ctx, "released")


@handles(ReverseRedemption)
def reverse_redemption(app: Membercore, cmd: ReverseRedemption, ctx: CommandContext) -> Decision:
    # Like a hold, a redemption made under an earlier program stays reversible.
    read = _read(app, cmd, needs_type=False)
    account = read.account
    takes = account.reverse_redemption(
        cmd.redemption_id,
        cmd.amount,
        reversal_id=cmd.reversal_id,
        at=read.at,
        reason=cmd.reason,
        actor=ctx.actor,
    )
    redemption = account.redemptions[cmd.redemption_id]
    detail = {
        "redemption_id": cmd.redemption_id,
        "reversal_id": cmd.reversal_id,
        "amount": sum(n for _, n in takes),
        "lots": lots_of(takes),
        "reversed_total": redemption.reversed,
        "reversible": redemption.points - redemption.reversed,
        "available": account.available(read.at),
    }
    return _decided(cmd, read, detail)
