"""Holds on a points account: points set aside from the lots (in burn order) for a later capture
or release, timing out at their ``expires_at`` (ledger time: the expiry job or the account's next
command records the ``HoldExpired``; until then ``available`` already counts them as released).

A mixin of :class:`~domain.points_account.PointsAccount`, whose events and state it uses."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.errors import (
    ClientIdReused,
    FieldProblem,
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotFound,
    InvalidInput,
)
from domain.lots import Hold, LotTakes, Settled
from domain.points_inputs import known_burn_order, positive


class PointsHolds:
    """``hold``, ``capture``, ``release`` and the queries over open holds."""

    # What the methods use of PointsAccount (declared for the type checker only).
    if TYPE_CHECKING:
        holds: dict[str, Hold]
        resolved_holds: dict[str, str]
        Held: type[Any]
        HoldCaptured: type[Any]
        HoldReleased: type[Any]

        def settle(self, as_of: datetime, *, at: datetime) -> Settled: ...
        def expire(self, as_of: datetime, *, at: datetime) -> int: ...
        def _plan(
            self, points: int, at: datetime, burn_order: str, exclude: str | None = None
        ) -> LotTakes: ...
        def _trigger(self, event_class: type[Any], **kwargs: Any) -> None: ...
        def _require(self, points: int, at: datetime) -> None: ...

    def timed_out_holds(self, at: datetime) -> list[Hold]:
        """Open holds whose timeout is at or before ``at``, soonest first (then by id)."""
        due = [h for h in self.holds.values() if h.timed_out(at)]
        due.sort(key=lambda h: (h.expires_at, h.hold_id))
        return due

    @property
    def held(self) -> int:
        """Points of every open hold (``held_at`` leaves out those timed out)."""
        return sum(h.points for h in self.holds.values())

    def held_at(self, at: datetime) -> int:
        """Points of the holds still open at ``at`` (not timed out by then)."""
        return sum(h.points for h in self.holds.values() if not h.timed_out(at))

    def hold(
        self,
        hold_id: str,
        points: int,
        *,
        at: datetime,
        burn_order: str = "soonest_expiry",
        actor: str = "",
        expires_at: datetime | None = None,
    ) -> LotTakes:
        """Set ``points`` aside from the lots (in burn order): they count against available
        until the hold is captured or released, or reaches its timeout ``expires_at`` (the
        application always gives one; ``None`` is what holds recorded before timeouts read as).
        """
        positive(points, "amount")
        known_burn_order(burn_order)
        if hold_id in self.resolved_holds:
            raise HoldAlreadyResolved(hold_id, self.resolved_holds[hold_id])
        held = self.holds.get(hold_id)
        if held is not None:
            if held.points != points:
                raise ClientIdReused("hold_id", hold_id)
            return held.lots  # a repeat of this hold
        if expires_at is not None and expires_at <= at:
            raise InvalidInput([FieldProblem("expires_at", "must be after the hold")])
        self._require(points, at)  # expiry-aware: a rejected command triggers nothing
        self.settle(at, at=at)
        takes = self._plan(points, at, burn_order)
        self._trigger(
            self.Held,
            timestamp=at,
            hold_id=hold_id,
            points=points,
            lots=takes,
            burn_order=burn_order,
            actor=actor,
            expires_at=expires_at,
        )
        return takes

    def _open_hold(self, hold_id: str, at: datetime) -> Hold:
        """The hold, if it can still be captured or released at ``at``: not resolved, and not
        past its timeout (whether or not something released it yet)."""
        resolution = self.resolved_holds.get(hold_id)
        if resolution == "expired":
            raise HoldExpired(hold_id, None)
        if resolution is not None:
            raise HoldAlreadyResolved(hold_id, resolution)
        hold = self.holds.get(hold_id)
        if hold is None:
            raise HoldNotFound(hold_id)
        if hold.timed_out(at):
            raise HoldExpired(hold_id, hold.expires_at)
        return hold

    def capture(self, hold_id: str, *, at: datetime, actor: str = "") -> Hold:
        """Spend a hold (at most once, before its timeout): its points count as redeemed from
        the lots held, even from a lot whose own expiry passed while it was held (the hold was
        a promise made while the points were valid)."""
        return self._close_hold(self.HoldCaptured, hold_id, at=at, actor=actor)

    def release(self, hold_id: str, *, at: datetime, actor: str = "") -> Hold:
        """Give a hold back (at most once) to the same lots with their original expiry; what
        returns to a lot already past its expiry expires at once."""
        hold = self._close_hold(self.HoldReleased, hold_id, at=at, actor=actor)
        self.expire(at, at=at)
        return hold

    def _close_hold(
        self, event_class: type[Any], hold_id: str, *, at: datetime, actor: str
    ) -> Hold:
        """Record ``event_class`` (captured or released) of the whole hold, if still open."""
        hold = self._open_hold(hold_id, at)
        self.settle(at, at=at)
        self._trigger(
            event_class,
            timestamp=at,
            hold_id=hold_id,
            points=hold.points,
            lots=hold.lots,
            actor=actor,
        )
        return hold
