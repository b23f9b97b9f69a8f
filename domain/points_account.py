"""The points ledger of one customer for one point type: lots, holds, debt.

Every earn is a *lot* with its own ``expires_at`` (``domain.expiry``) and ``active_at`` (pending
until then). Consuming commands take lots in the type's burn order and record exactly which lots
they took and how much of each:

* ``soonest_expiry`` (default): soonest ``expires_at`` first (never-expiring lots last), ties by
  earliest ``earned_at``, then ``lot_id``;
* ``oldest_first``: earliest ``earned_at`` first, then ``lot_id``.

Per lot, at every version: ``earned = redeemed + expired + reversed + adjusted + transferred +
remaining + held`` (``adjusted``: taken by a negative adjustment; ``reversed``: taken by a
refund, including debt repaid from the lot; ``transferred``: moved to another customer's account
by a merge or its undo, where it arrives as a lot with the same dates). ``available(t)``
counts active (not pending), unexpired, free remaining points minus outstanding debt: it goes
below zero only through debt, which only a refund under the ``negative`` policy creates.

Time is passed in (``at`` is when a command is recorded); every command first expires what is
due by its ``at``, so a point is never both consumed and expired. A lot expires at the instant
``expires_at`` (valid while ``t < expires_at``). Lots that are fully consumed leave the state;
running totals stay.

Holds time out: a hold made with ``expires_at`` is released at that instant (ledger time, not
the clock of whoever notices), by the expiry job or by the next command on the account
(``settle``), recorded as ``HoldExpired``; until then ``available(t)`` already counts it as
released. After its timeout a hold can be neither captured nor released (``HoldExpired``).

A redemption can be reversed (``reverse_redemption``), in parts: the points go back to the
exact lots it took, with their original expiry, the last-taken lots first. Lots a redemption
still can give back to stay in ``spent_lots`` after they are consumed, so they can be restored;
per lot ``redeemed`` is net of what reversals restored.

This module holds the aggregate: its events, state, queries and the earn, redeem, adjust and
expiry commands. The other command families are mixins in their own modules: holds
(``domain.points_holds``), refund and redemption reversals (``domain.points_reversals``) and
merge transfers (``domain.points_transfers``); the lot arithmetic is ``domain.lots``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.copying import ContainerCopies
from domain.errors import (
    ClientIdReused,
    FieldProblem,
    InsufficientPoints,
    InvalidInput,
)
from domain.lots import (
    Hold,
    Lot,
    LotTakes,
    Redemption,
    Settled,
)
from domain.lots import due as _due
from domain.lots import free as _free_lots
from domain.lots import plan as _plan_lots
from domain.lots import returning as _returning
from domain.lots import takes as _takes
from domain.points_holds import PointsHolds
from domain.points_inputs import known_burn_order, positive
from domain.points_reversals import PointsReversals
from domain.points_transfers import PointsTransfers

POINTS_NAMESPACE = UUID("3b0c6f0e-2a55-5d8e-a3c1-7e4f9d2b8a61")
TOTAL_KEYS = (
    "earned",
    "adjusted_in",
    "redeemed",
    "adjusted_out",
    "expired",
    "reversed",
    "debt_incurred",
    "debt_repaid",
    "shortfall",
    "transferred_in",
    "transferred_out",
    "restored",
)


class PointsAccount(PointsHolds, PointsReversals, PointsTransfers, ContainerCopies, Aggregate):
    """One customer's ledger of one point type. Its id is ``id_for(customer_id, point_type)``."""

    TOPIC: ClassVar[str] = "membercore.PointsAccount"

    class Created(Aggregate.Created):
        TOPIC = "membercore.PointsAccount.Created"

    class Event(Aggregate.Event):
        """Every event after the opening names the account's customer and point type, so the
        feed and the projections need no lookup."""

        TOPIC = "membercore.PointsAccount.Event"
        customer_id: UUID
        point_type: str

        def mutate(self, aggregate: Any) -> Any:
            # Time passing (any later event) closes reversal windows: what only a reversal
            # could still have restored leaves the state, as consumed lots do.
            account = super().mutate(aggregate)
            if account is not None:
                account._close_reversal_windows(self.timestamp)
            return account

    class Opened(Created):
        """The account of ``customer_id`` for ``point_type`` was opened. v1."""

        TOPIC = "membercore.PointsAccount.Opened"
        customer_id: UUID
        point_type: str

    class Earned(Event):
        """A lot was earned. ``earned_at``: the event (order) time; the event's timestamp: when
        it was recorded. ``repaid``: outstanding debt paid off from this lot at once (counted as
        reversed on the lot). v1."""

        TOPIC = "membercore.PointsAccount.Earned"
        lot_id: str
        points: int
        earned_at: datetime
        active_at: datetime
        expires_at: datetime | None
        source: dict[str, str]
        program_version: int
        repaid: int

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate._add_lot(
                self.lot_id,
                self.points,
                self.earned_at,
                self.active_at,
                self.expires_at,
                self.repaid,
            )
            if self.source.get("kind") == "order" and self.lot_id in aggregate.lots:
                aggregate.lot_orders[self.lot_id] = (
                    self.source.get("channel", ""),
                    self.source.get("order_id", ""),
                )
            aggregate._count("earned", self.points)

    class Redeemed(Event):
        """Points were spent, taken from ``lots`` in ``burn_order``; reversible until
        ``reversible_until`` (the type's reversal window; added later: ``None`` on older
        events, reversible for ever). v1."""

        TOPIC = "membercore.PointsAccount.Redeemed"
        redemption_id: str
        points: int
        reason: str | None
        lots: LotTakes
        burn_order: str
        actor: str
        reversible_until: datetime | None = None

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate.redemptions[self.redemption_id] = Redemption(
                self.redemption_id, self.points, _takes(self.lots), (), self.reversible_until
            )
            if self.reversible_until is not None:
                bisect.insort(aggregate.windows, (self.reversible_until, self.redemption_id))
            for lot_id, n in self.lots:
                aggregate.reversible[lot_id] = aggregate.reversible.get(lot_id, 0) + n
            aggregate._consume(self.lots, "redeemed")
            aggregate._count("redeemed", self.points)

    class Held(Event):
        """Points were set aside from ``lots`` for a later capture or release, until
        ``expires_at`` (the timeout; added later: ``None`` on older events, no timeout). v1."""

        TOPIC = "membercore.PointsAccount.Held"
        hold_id: str
        points: int
        lots: LotTakes
        burn_order: str
        actor: str
        expires_at: datetime | None = None

        def apply(self, aggregate: PointsAccount) -> None:
            for lot_id, n in self.lots:
                lot = aggregate.lots[lot_id]
                aggregate.lots[lot_id] = replace(
                    lot, remaining=lot.remaining - n, held=lot.held + n
                )
            # Decoded lots may be lists: state keeps tuples, so replay equals live.
            aggregate.holds[self.hold_id] = Hold(
                self.hold_id, self.points, _takes(self.lots), self.timestamp, self.expires_at
            )

    class HoldCaptured(Event):
        """A hold was spent: its points count as redeemed from the lots it held. v1."""

        TOPIC = "membercore.PointsAccount.HoldCaptured"
        hold_id: str
        points: int
        lots: LotTakes
        actor: str

        def apply(self, aggregate: PointsAccount) -> None:
            for lot_id, n in self.lots:
                lot = aggregate.lots[lot_id]
                aggregate._put(replace(lot, held=lot.held - n, redeemed=lot.redeemed + n))
            aggregate._resolve(self.hold_id, "captured")
            aggregate._count("redeemed", self.points)

    class HoldReleased(Event):
        """A hold was given back to the same lots (their original expiry). v1."""

        TOPIC = "membercore.PointsAccount.HoldReleased"
        hold_id: str
        points: int
        lots: LotTakes
        actor: str

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate._unhold(self.hold_id, self.lots, "released")

    class HoldExpired(Event):
        """A hold reached its timeout ``expires_at`` (at or before ``as_of``) and was given back
        to the same lots, as a release at ``expires_at`` would: what returned to a lot already
        past its own expiry expires in the same command (an ``Expired`` event). v1."""

        TOPIC = "membercore.PointsAccount.HoldExpired"
        hold_id: str
        points: int
        lots: LotTakes
        expires_at: datetime
        as_of: datetime

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate._unhold(self.hold_id, self.lots, "expired")

    class RedemptionReversed(Event):
        """Part or all of redemption ``redemption_id`` was reversed: ``lots`` got their points
        back (the last-taken lots first), with their original dates; ``restored_lots`` are
        those lots' ``{lot_id, earned, earned_at, active_at, expires_at}`` (a lot that had
        been consumed comes back). Of what came back, ``reclaimed`` (per lot) settles what a
        ``clamp`` refund of that lot had written off, and ``repaid`` (per lot) outstanding
        debt, both counted as reversed on the lot, as an earn's ``repaid`` is: the customer
        does not get back points a refund already took. What returns to a lot past its expiry
        expires in the same command (an ``Expired`` event). v1."""

        TOPIC = "membercore.PointsAccount.RedemptionReversed"
        reversal_id: str
        redemption_id: str
        points: int
        reason: str | None
        actor: str
        lots: LotTakes
        restored_lots: list[dict[str, Any]]
        reclaimed: LotTakes = ()
        repaid: LotTakes = ()

        def apply(self, aggregate: PointsAccount) -> None:
            redemption = aggregate.redemptions[self.redemption_id]
            aggregate.redemptions[self.redemption_id] = redemption.with_restored(_takes(self.lots))
            aggregate.redemption_reversals[self.reversal_id] = self.redemption_id
            aggregate.reversal_takes[self.reversal_id] = _takes(self.lots)
            reclaimed, repaid = dict(self.reclaimed), dict(self.repaid)
            for lot_id, n in self.lots:
                lot = aggregate.lots.get(lot_id) or aggregate.spent_lots.pop(lot_id)
                left = aggregate.reversible[lot_id] - n
                if left:
                    aggregate.reversible[lot_id] = left
                else:
                    del aggregate.reversible[lot_id]
                back = reclaimed.get(lot_id, 0) + repaid.get(lot_id, 0)
                aggregate._put(
                    replace(
                        lot,
                        redeemed=lot.redeemed - n,
                        remaining=lot.remaining + n - back,
                        reversed=lot.reversed + back,
                    )
                )
            for lot_id, n in reclaimed.items():
                owed = aggregate.written_off[lot_id] - n
                if owed:
                    aggregate.written_off[lot_id] = owed
                else:
                    del aggregate.written_off[lot_id]
            aggregate.debt -= sum(repaid.values())
            aggregate._count("restored", self.points)
            aggregate._count("shortfall", -sum(reclaimed.values()))
            aggregate._count("reversed", sum(reclaimed.values()))
            aggregate._count("debt_repaid", sum(repaid.values()))

    class Expired(Event):
        """Lots reached their ``expires_at`` (at or before ``as_of``): what they still had
        free expired. v1."""

        TOPIC = "membercore.PointsAccount.Expired"
        as_of: datetime
        points: int
        lots: LotTakes

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate._consume(self.lots, "expired")
            aggregate._count("expired", self.points)

    class Reversed(Event):
        """Points earned by lot ``lot_id`` were reversed (a refund): ``taken_from_lot`` from it,
        ``lots`` from the other lots, ``debt`` left owing (``negative`` policy), ``shortfall``
        written off (``clamp`` policy). v1."""

        TOPIC = "membercore.PointsAccount.Reversed"
        reversal_id: str
        lot_id: str
        points: int
        policy: str
        taken_from_lot: int
        lots: LotTakes
        debt: int
        shortfall: int

        def apply(self, aggregate: PointsAccount) -> None:
            taken = ((self.lot_id, self.taken_from_lot), *self.lots)
            aggregate._consume(_takes(taken), "reversed")
            aggregate.debt += self.debt
            if self.shortfall:
                owed = aggregate.written_off.get(self.lot_id, 0) + self.shortfall
                aggregate.written_off[self.lot_id] = owed
            aggregate._count("reversed", self.points - self.debt - self.shortfall)
            aggregate._count("debt_incurred", self.debt)
            aggregate._count("shortfall", self.shortfall)

    class Adjusted(Event):
        """A manual correction by ``actor`` for ``reason``. Positive ``amount``: a new lot
        ``lot_id`` (which first repays debt, ``repaid``); negative: taken from ``lots`` like a
        redemption. v1."""

        TOPIC = "membercore.PointsAccount.Adjusted"
        adjustment_id: str
        amount: int
        reason: str
        actor: str
        lot_id: str | None
        active_at: datetime | None
        expires_at: datetime | None
        lots: LotTakes
        repaid: int
        program_version: int

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate.adjustments[self.adjustment_id] = (self.amount, _takes(self.lots))
            if self.amount > 0:
                assert self.lot_id is not None
                aggregate._add_lot(
                    self.lot_id,
                    self.amount,
                    self.timestamp,
                    self.active_at or self.timestamp,
                    self.expires_at,
                    self.repaid,
                )
                aggregate._count("adjusted_in", self.amount)
            else:
                aggregate._consume(self.lots, "adjusted")
                aggregate._count("adjusted_out", -self.amount)

    class TransferredOut(Event):
        """A merge (or its undo) moved what ``lots`` still had free, and ``debt``, to the
        account ``to_account``. v1."""

        TOPIC = "membercore.PointsAccount.TransferredOut"
        transfer_id: str
        to_account: UUID
        lots: LotTakes
        debt: int
        # The account's customer was merged away: it takes no more points until an undo.
        closes: bool = False

        def apply(self, aggregate: PointsAccount) -> None:
            aggregate.closed = aggregate.closed or self.closes
            aggregate._consume(self.lots, "transferred")
            aggregate.debt -= self.debt
            aggregate._count("transferred_out", sum(n for _, n in self.lots))

    class TransferredIn(Event):
        """Lots moved here from ``from_account`` by a merge (or its undo), with their original
        dates: ``lots`` are ``{lot_id, source_lot_id, points, earned_at, active_at,
        expires_at}``; ``debt`` came along. v1."""

        TOPIC = "membercore.PointsAccount.TransferredIn"
        transfer_id: str
        from_account: UUID
        lots: list[dict[str, Any]]
        debt: int
        # An undo gave the customer back: the account takes points again.
        reopens: bool = False

        def apply(self, aggregate: PointsAccount) -> None:
            for lot in self.lots:
                arriving = Lot(
                    lot["lot_id"],
                    lot["points"],
                    datetime.fromisoformat(lot["earned_at"]),
                    datetime.fromisoformat(lot["active_at"]),
                    datetime.fromisoformat(lot["expires_at"]) if lot["expires_at"] else None,
                    remaining=lot["points"],
                )
                spent = aggregate.spent_lots.get(arriving.lot_id)
                if spent is not None and _returning(spent, arriving):
                    # The lot coming back (an undo) to where it waits for a reversal: one lot.
                    del aggregate.spent_lots[arriving.lot_id]
                    n = arriving.remaining
                    arriving = replace(
                        spent, remaining=spent.remaining + n, transferred=spent.transferred - n
                    )
                aggregate._put(arriving)
            aggregate.debt += self.debt
            aggregate.closed = aggregate.closed and not self.reopens
            aggregate.arrived[self.transfer_id] = tuple(lot["lot_id"] for lot in self.lots)
            aggregate.arrived_debt[self.transfer_id] = self.debt
            aggregate._count("transferred_in", sum(lot["points"] for lot in self.lots))

    def __init__(self, customer_id: UUID, point_type: str) -> None:
        self.customer_id = customer_id
        self.point_type = point_type
        self.lots: dict[str, Lot] = {}
        self.holds: dict[str, Hold] = {}
        self.resolved_holds: dict[str, str] = {}
        self.debt = 0
        self.totals: dict[str, int] = dict.fromkeys(TOTAL_KEYS, 0)
        # Lot ids each transfer brought in (an undo sends back what is left of them).
        self.arrived: dict[str, tuple[str, ...]] = {}
        self.arrived_debt: dict[str, int] = {}
        # Closed while its customer is merged into another (orders follow the merge).
        self.closed = False
        # The order (channel, order id) each open lot earned on this account came from.
        self.lot_orders: dict[str, tuple[str, str]] = {}
        # Every redemption (for reversals), reversal id -> redemption id, and per lot the points
        # reversals could still give back; consumed lots with some stay in ``spent_lots``.
        self.redemptions: dict[str, Redemption] = {}
        self.redemption_reversals: dict[str, str] = {}
        # What each reversal and adjustment took or gave, so a repeated id answers it again.
        self.reversal_takes: dict[str, LotTakes] = {}
        self.adjustments: dict[str, tuple[int, LotTakes]] = {}
        self.reversible: dict[str, int] = {}
        self.spent_lots: dict[str, Lot] = {}
        # Per lot: what a ``clamp`` refund of it wrote off because the points were spent; a
        # redemption reversal that brings points back to the lot takes that back first.
        self.written_off: dict[str, int] = {}
        # Open reversal windows, soonest closing first: (reversible_until, redemption id).
        self.windows: list[tuple[datetime, str]] = []

    # -- identity -------------------------------------------------------------------------------

    @staticmethod
    def id_for(customer_id: UUID, point_type: str) -> UUID:
        return uuid5(POINTS_NAMESPACE, f"{customer_id}\n{point_type}")

    @classmethod
    def open(cls, customer_id: UUID, point_type: str, *, at: datetime) -> PointsAccount:
        return cls._create(
            cls.Opened,
            id=cls.id_for(customer_id, point_type),
            timestamp=at,
            customer_id=customer_id,
            point_type=point_type,
        )

    def has_lot(self, lot_id: str) -> bool:
        """Whether a lot with this id is open, or consumed but kept for reversals."""
        return lot_id in self.lots or lot_id in self.spent_lots

    def _trigger(self, event_class: type[Any], **kwargs: Any) -> None:
        self.trigger_event(
            event_class, customer_id=self.customer_id, point_type=self.point_type, **kwargs
        )

    # -- state helpers (used by apply; no rules here) -------------------------------------------

    def _put(self, lot: Lot) -> None:
        if lot.open:
            self.lots[lot.lot_id] = lot
        else:
            self.lots.pop(lot.lot_id, None)  # consumed lots leave the state; totals stay
            self.lot_orders.pop(lot.lot_id, None)
            if self.reversible.get(lot.lot_id):
                # A redemption reversal may still bring it back, with its dates and counters.
                self.spent_lots[lot.lot_id] = lot

    def _close_reversal_windows(self, now: datetime) -> None:
        """Forget what only reversals of redemptions whose window closed before ``now`` could
        have restored (the redemption stays known, with nothing left to give back)."""
        while self.windows and self.windows[0][0] < now:
            _, redemption_id = self.windows.pop(0)
            redemption = self.redemptions[redemption_id]
            for lot_id, n in redemption.left():
                left = self.reversible.get(lot_id, 0) - n
                if left > 0:
                    self.reversible[lot_id] = left
                    continue
                self.reversible.pop(lot_id, None)
                self.spent_lots.pop(lot_id, None)
            self.redemptions[redemption_id] = replace(redemption, lots=(), restored=())

    def _unhold(self, hold_id: str, lots: LotTakes, resolution: str) -> None:
        """The hold's points go back to the lots they were taken from (a release or timeout)."""
        for lot_id, n in lots:
            lot = self.lots[lot_id]
            self._put(replace(lot, held=lot.held - n, remaining=lot.remaining + n))
        self._resolve(hold_id, resolution)

    def _count(self, key: str, n: int) -> None:
        if n:
            self.totals[key] = self.totals.get(key, 0) + n

    def _add_lot(
        self,
        lot_id: str,
        points: int,
        earned_at: datetime,
        active_at: datetime,
        expires_at: datetime | None,
        repaid: int,
    ) -> None:
        self.debt -= repaid
        self._count("debt_repaid", repaid)
        self._put(
            Lot(
                lot_id,
                points,
                earned_at,
                active_at,
                expires_at,
                remaining=points - repaid,
                reversed=repaid,
            )
        )

    def _consume(self, takes: LotTakes, counter: str) -> None:
        for lot_id, n in takes:
            lot = self.lots[lot_id]
            self._put(
                replace(lot, remaining=lot.remaining - n, **{counter: getattr(lot, counter) + n})
            )

    def _resolve(self, hold_id: str, resolution: str) -> None:
        self.holds.pop(hold_id, None)
        self.resolved_holds[hold_id] = resolution

    # -- queries --------------------------------------------------------------------------------

    def _free(self, at: datetime) -> list[tuple[Lot, int]]:
        return _free_lots(self.lots.values(), self.timed_out_holds(at))

    def available(self, at: datetime) -> int:
        """Active (not pending), unexpired, unheld remaining points minus outstanding debt;
        holds timed out by ``at`` count as released."""
        free = sum(n for lot, n in self._free(at) if lot.active(at) and not lot.expired_by(at))
        return free - self.debt

    def pending(self, at: datetime) -> int:
        """Points of lots not active yet at ``at`` (and not expired by then)."""
        return sum(n for lot, n in self._free(at) if not lot.active(at) and not lot.expired_by(at))

    def expiring(self, at: datetime) -> list[tuple[datetime, int]]:
        """``(expires_at, points)`` of what will expire after ``at`` if nothing else takes it:
        free remaining of unexpired lots with an expiry, pending ones included, soonest first."""
        return sorted(
            (lot.expires_at, n)
            for lot, n in self._free(at)
            if lot.expires_at is not None and lot.expires_at > at and n > 0
        )

    def due(self, as_of: datetime) -> LotTakes:
        """What expiring everything due by ``as_of`` would take from each lot."""
        return _due(self.lots.values(), as_of)

    def _plan(
        self, points: int, at: datetime, burn_order: str, exclude: str | None = None
    ) -> LotTakes:
        return _plan_lots(self.lots.values(), points, at, burn_order, exclude)

    def _require(self, points: int, at: datetime) -> None:
        available = self.available(at)
        if points > available:
            raise InsufficientPoints(self.point_type, available, points)

    # -- commands -------------------------------------------------------------------------------

    def expire(self, as_of: datetime, *, at: datetime) -> int:
        """Expire what every lot due by ``as_of`` still has free; returns the points expired
        (0, and no event, when nothing is due: running it again changes nothing)."""
        takes = self.due(as_of)
        if not takes:
            return 0
        points = sum(n for _, n in takes)
        self._trigger(self.Expired, timestamp=at, as_of=as_of, points=points, lots=takes)
        return points

    def settle(self, as_of: datetime, *, at: datetime) -> Settled:
        """Release every hold timed out by ``as_of`` (one ``HoldExpired`` each, at its own
        timeout), then expire what is due by ``as_of``, including what came back to lots past
        their expiry. Nothing due: no event (running it again changes nothing)."""
        holds = self.timed_out_holds(as_of)
        for hold in holds:
            self._trigger(
                self.HoldExpired,
                timestamp=at,
                hold_id=hold.hold_id,
                points=hold.points,
                lots=hold.lots,
                expires_at=hold.expires_at,
                as_of=as_of,
            )
        lots = len(self.due(as_of))
        return Settled(len(holds), lots, self.expire(as_of, at=at))

    def earn(
        self,
        lot_id: str,
        points: int,
        *,
        earned_at: datetime,
        at: datetime,
        expires_at: datetime | None,
        active_at: datetime,
        source: Mapping[str, str],
        program_version: int,
    ) -> None:
        """Record a new lot. A lot already past expiry at ``at`` (a back-dated order) expires
        at once; otherwise it first repays outstanding debt."""
        positive(points, "points")
        if not lot_id:
            raise InvalidInput([FieldProblem("lot_id", "must not be empty")])
        if self.has_lot(lot_id):
            raise InvalidInput([FieldProblem("lot_id", f"lot {lot_id!r} already exists")])
        self.settle(at, at=at)
        expired_now = expires_at is not None and expires_at <= at
        repaid = 0 if expired_now else min(self.debt, points)
        self._trigger(
            self.Earned,
            timestamp=at,
            lot_id=lot_id,
            points=points,
            earned_at=earned_at,
            active_at=active_at,
            expires_at=expires_at,
            source=dict(source),
            program_version=program_version,
            repaid=repaid,
        )
        if expired_now:
            self.expire(at, at=at)

    def redeem(
        self,
        redemption_id: str,
        points: int,
        *,
        at: datetime,
        burn_order: str = "soonest_expiry",
        reason: str | None = None,
        actor: str = "",
        reversible_until: datetime | None = None,
    ) -> LotTakes:
        """Spend ``points`` from the lots in ``burn_order``, reversible until
        ``reversible_until`` (None: for ever); returns the lots taken."""
        positive(points, "amount")
        known_burn_order(burn_order)
        done = self.redemptions.get(redemption_id)
        if done is not None:
            if done.points != points:
                raise ClientIdReused("redemption_id", redemption_id)
            return done.lots  # a repeat of this redemption: it took these, nothing more
        self._require(points, at)  # expiry-aware: a rejected command triggers nothing
        self.settle(at, at=at)
        takes = self._plan(points, at, burn_order)
        self._trigger(
            self.Redeemed,
            timestamp=at,
            redemption_id=redemption_id,
            points=points,
            reason=reason,
            lots=takes,
            burn_order=burn_order,
            actor=actor,
            reversible_until=reversible_until,
        )
        return takes

    def adjust(
        self,
        adjustment_id: str,
        amount: int,
        *,
        reason: str,
        actor: str,
        at: datetime,
        expires_at: datetime | None,
        burn_order: str = "soonest_expiry",
        program_version: int = 0,
    ) -> LotTakes:
        """A manual correction, with a reason and an actor. Positive: a new lot
        ``adjustment:<id>`` active at once, expiring at ``expires_at`` (the type's expiry from
        ``at``), repaying debt first. Negative: taken from the lots like a redemption."""
        problems = []
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            problems.append(FieldProblem("amount", "must be a non-zero integer"))
        if not reason or not reason.strip():
            problems.append(FieldProblem("reason", "a reason is required"))
        if not actor:
            problems.append(FieldProblem("actor", "an actor is required"))
        if problems:
            raise InvalidInput(problems)
        known_burn_order(burn_order)
        done = self.adjustments.get(adjustment_id)
        if done is not None:
            if done[0] != amount:
                raise ClientIdReused("adjustment_id", adjustment_id)
            return done[1]  # a repeat of this adjustment
        lot_id: str | None = None
        if amount > 0:
            lot_id = f"adjustment:{adjustment_id}"
            if lot_id in self.lots:
                raise ClientIdReused("adjustment_id", adjustment_id)
            if expires_at is not None and expires_at <= at:
                raise InvalidInput([FieldProblem("expires_at", "must be after the adjustment")])
        else:
            self._require(-amount, at)
        self.settle(at, at=at)
        takes: LotTakes = () if amount > 0 else self._plan(-amount, at, burn_order)
        repaid = min(self.debt, amount) if amount > 0 else 0
        self._trigger(
            self.Adjusted,
            timestamp=at,
            adjustment_id=adjustment_id,
            amount=amount,
            reason=reason,
            actor=actor,
            lot_id=lot_id,
            active_at=at if amount > 0 else None,
            expires_at=expires_at if amount > 0 else None,
            lots=takes,
            repaid=repaid,
            program_version=program_version,
        )
        return takes
