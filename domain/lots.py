"""Points lots and the arithmetic over them: what a lot holds, what a hold, a redemption or a
reversal took from which lots, and the burn order that decides which lots a consumption takes.

Pure values and functions of them; ``domain.points_account`` records their changes as events.
Burn orders:

* ``soonest_expiry`` (default): soonest ``expires_at`` first (never-expiring lots last), ties by
  earliest ``earned_at``, then ``lot_id``;
* ``oldest_first``: earliest ``earned_at`` first, then ``lot_id``.

A lot expires at the instant ``expires_at`` (valid while ``t < expires_at``) and is pending
until ``active_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

LotTakes = tuple[tuple[str, int], ...]
"""``((lot_id, points), ...)``: what a command took from (or gave back to) each lot."""


@dataclass(frozen=True)
class Lot:
    """One earn. ``remaining`` is free (not held); the other counters say where the rest went."""

    lot_id: str
    earned: int
    earned_at: datetime
    active_at: datetime
    expires_at: datetime | None
    remaining: int
    held: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0
    transferred: int = 0

    def active(self, at: datetime) -> bool:
        return self.active_at <= at

    def expired_by(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at

    @property
    def open(self) -> bool:
        return self.remaining > 0 or self.held > 0


@dataclass(frozen=True)
class Hold:
    hold_id: str
    points: int
    lots: LotTakes
    held_at: datetime
    # The timeout; None only for holds recorded before holds had one (they never time out).
    expires_at: datetime | None = None

    def timed_out(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at


@dataclass(frozen=True)
class Redemption:
    """What a redemption took (``lots``, in burn order) and what reversals gave back so far
    (``restored``, per lot)."""

    redemption_id: str
    points: int
    lots: LotTakes
    restored: LotTakes = ()
    # The end of its reversal window (None: recorded before windows, reversible for ever).
    reversible_until: datetime | None = None

    @property
    def reversed(self) -> int:
        return sum(n for _, n in self.restored)

    def left(self) -> list[tuple[str, int]]:
        """Per lot, in the order taken: what a reversal can still give back."""
        restored = dict(self.restored)
        return [(lot_id, n - restored.get(lot_id, 0)) for lot_id, n in self.lots]

    def plan(self, points: int) -> LotTakes:
        """``points`` to give back, the last-taken lots first."""
        takes: list[tuple[str, int]] = []
        for lot_id, n in reversed(self.left()):
            k = min(n, points)
            if k > 0:
                takes.append((lot_id, k))
                points -= k
        return tuple(takes)

    def with_restored(self, takes: LotTakes) -> Redemption:
        restored = dict(self.restored)
        for lot_id, n in takes:
            restored[lot_id] = restored.get(lot_id, 0) + n
        return replace(self, restored=tuple(restored.items()))


@dataclass(frozen=True)
class Settled:
    """What ``settle`` did: holds released by their timeout, lots and points expired."""

    holds: int = 0
    lots: int = 0
    points: int = 0


@dataclass(frozen=True)
class Reversal:
    """What a reversal of ``points`` earned by one lot did: taken from that lot, taken from the
    account's other available lots, left as debt (``negative`` policy), written off as
    shortfall (``clamp`` policy). The four always add up to the points reversed."""

    taken_from_lot: int
    taken_elsewhere: int
    debt: int
    shortfall: int


def returning(spent: Lot, arriving: Lot) -> bool:
    """``arriving`` is (part of) what ``spent`` sent away, coming back: same dates, no more
    points than it transferred out."""
    return (spent.earned_at, spent.active_at, spent.expires_at) == (
        arriving.earned_at,
        arriving.active_at,
        arriving.expires_at,
    ) and arriving.remaining <= spent.transferred


def burn_key(lot: Lot, burn_order: str) -> tuple[Any, ...]:
    if burn_order == "oldest_first":
        return (lot.earned_at, lot.lot_id)
    expires = lot.expires_at
    return (expires is None, expires or lot.earned_at, lot.earned_at, lot.lot_id)


def takes(pairs: Iterable[tuple[str, int]]) -> LotTakes:
    return tuple((lot_id, n) for lot_id, n in pairs if n > 0)


def plan(
    lots: Iterable[Lot], points: int, at: datetime, burn_order: str, exclude: str | None = None
) -> LotTakes:
    """Up to ``points`` from the active, unexpired lots with free points, in burn order."""
    usable = sorted(
        (
            lot
            for lot in lots
            if lot.remaining > 0
            and lot.active(at)
            and not lot.expired_by(at)
            and lot.lot_id != exclude
        ),
        key=lambda lot: burn_key(lot, burn_order),
    )
    taken: list[tuple[str, int]] = []
    left = points
    for lot in usable:
        if left <= 0:
            break
        n = min(left, lot.remaining)
        taken.append((lot.lot_id, n))
        left -= n
    return tuple(taken)


def due(lots: Iterable[Lot], as_of: datetime) -> LotTakes:
    """What expiring everything due by ``as_of`` would take from each lot."""
    expiring = [lot for lot in lots if lot.expired_by(as_of) and lot.remaining > 0]
    expiring.sort(key=lambda lot: burn_key(lot, "soonest_expiry"))
    return takes((lot.lot_id, lot.remaining) for lot in expiring)


def free(lots: Iterable[Lot], timed_out: Iterable[Hold]) -> list[tuple[Lot, int]]:
    """Each lot with its free points: ``remaining`` plus what the ``timed_out`` holds give back
    (so reads are right before anything settled them)."""
    returned: dict[str, int] = {}
    for hold in timed_out:
        for lot_id, n in hold.lots:
            returned[lot_id] = returned.get(lot_id, 0) + n
    return [(lot, lot.remaining + returned.get(lot.lot_id, 0)) for lot in lots]
