"""A batch of ``PointsAccount`` events gathered in memory before one round of SQL: per lot, its
changes event by event (replayed on the rows as they stood before the batch, so the rows do not
depend on where batch boundaries fall); per account, net debt and held points; per hold with a
timeout, whether the batch closes it and what it leaves open."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.lots import LotTakes
from domain.points_account import PointsAccount

A = PointsAccount


@dataclass(frozen=True)
class LotRow:
    """One ``points_lots`` row (its key aside)."""

    earned: int
    remaining: int
    held: int
    earned_at: datetime
    active_at: datetime
    expires_at: datetime | None


def _dates(lot: dict[str, Any]) -> tuple[datetime, datetime, datetime | None]:
    expires = lot["expires_at"]
    return (
        datetime.fromisoformat(lot["earned_at"]),
        datetime.fromisoformat(lot["active_at"]),
        datetime.fromisoformat(expires) if expires else None,
    )


# What an event does to one lot row (``LotOp.run``): a lot earned (kept if the row exists),
# arrived by a transfer (added to the row if it exists), restored by a redemption reversal
# (recreated empty if it had left), or a change of its free and held points (none if absent).
NEW, ARRIVE, RESTORE, DELTA = "new", "arrive", "restore", "delta"


@dataclass(frozen=True)
class LotOp:
    kind: str
    lot: LotRow | None = None
    remaining: int = 0
    held: int = 0

    def run(self, row: LotRow | None) -> LotRow | None:
        if self.kind == DELTA:
            if row is None:
                return None
            return replace(row, remaining=row.remaining + self.remaining, held=row.held + self.held)
        assert self.lot is not None
        if row is None:
            return replace(self.lot, remaining=0, held=0) if self.kind == RESTORE else self.lot
        if self.kind == ARRIVE:
            return replace(row, remaining=row.remaining + self.lot.remaining)
        return row


class Batch:
    """A batch of events, gathered in memory before one round of SQL.

    Lot rows are not folded into net deltas: whether a row exists when an event reaches it
    decides what the event does (a lot emptied by one event leaves the table, and a transfer
    bringing it back later starts a new row with its own ``earned`` and dates). So each lot's
    changes are kept per event, in log order, and replayed on the rows as they stood before
    the batch (``lot_rows``): the result is the one-event-per-batch result, wherever the batch
    boundaries fall. Account counters and holds are simple enough to net.
    """

    def __init__(self) -> None:
        self.opened: dict[UUID, tuple[UUID, str]] = {}
        self.account_deltas: dict[UUID, list[int]] = {}
        # Per lot, its changes grouped by event, in log order.
        self.lot_ops: dict[tuple[UUID, str], list[list[LotOp]]] = {}
        self._event = 0
        self._last_event: dict[tuple[UUID, str], int] = {}
        # Per hold with a timeout: whether the batch closes it (first), and the hold it leaves
        # open (points, expires_at) after its last close.
        self.holds_closed: set[tuple[UUID, str]] = set()
        self.holds_opened: dict[tuple[UUID, str], tuple[int, datetime]] = {}

    def op(self, account: UUID, lot_id: str, op: LotOp) -> None:
        key = (account, lot_id)
        groups = self.lot_ops.setdefault(key, [])
        if self._last_event.get(key) != self._event:
            self._last_event[key] = self._event
            groups.append([])
        groups[-1].append(op)

    def lot(self, account: UUID, lot_id: str, remaining: int, held: int = 0) -> None:
        self.op(account, lot_id, LotOp(DELTA, remaining=remaining, held=held))

    def takes(self, account: UUID, takes: LotTakes, *, to_held: bool = False) -> None:
        for lot_id, n in takes:
            self.lot(account, lot_id, -n, n if to_held else 0)

    def account(self, account: UUID, debt: int = 0, held: int = 0) -> None:
        delta = self.account_deltas.setdefault(account, [0, 0])
        delta[0] += debt
        delta[1] += held

    def add_lot(self, account: UUID, e: Any, points: int, repaid: int, at: datetime) -> None:
        lot = LotRow(points, points - repaid, 0, at, e.active_at or at, e.expires_at)
        self.op(account, e.lot_id, LotOp(NEW, lot))
        self.account(account, debt=-repaid)

    def open_hold(self, account: UUID, hold_id: str, points: int, expires_at: datetime) -> None:
        # Like an insert that keeps an existing row: the first open after the last close.
        self.holds_opened.setdefault((account, hold_id), (points, expires_at))

    def close_hold(self, account: UUID, hold_id: str) -> None:
        key = (account, hold_id)
        self.holds_opened.pop(key, None)
        self.holds_closed.add(key)

    def restore(self, account: UUID, e: Any) -> None:
        for lot in e.restored_lots:
            back = LotRow(lot["earned"], 0, 0, *_dates(lot))
            self.op(account, lot["lot_id"], LotOp(RESTORE, back))
        for lot_id, n in e.lots:
            self.lot(account, lot_id, n)
        # What settled a clamp refund's write-off or repaid debt does not stay free on the lot.
        self.takes(account, (*e.reclaimed, *e.repaid))
        self.account(account, debt=-sum(n for _, n in e.repaid))

    def apply(self, e: Any) -> None:
        self._event += 1
        acc: UUID = e.originator_id
        if isinstance(e, A.Opened):
            self.opened[acc] = (e.customer_id, e.point_type)
        elif isinstance(e, A.Earned):
            self.add_lot(acc, e, e.points, e.repaid, e.earned_at)
        elif isinstance(e, A.Redeemed | A.Expired):
            self.takes(acc, e.lots)
        elif isinstance(e, A.Held):
            self.takes(acc, e.lots, to_held=True)
            self.account(acc, held=e.points)
            if e.expires_at is not None:
                self.open_hold(acc, e.hold_id, e.points, e.expires_at)
        elif isinstance(e, A.HoldCaptured):
            for lot_id, n in e.lots:
                self.lot(acc, lot_id, 0, -n)
            self.account(acc, held=-e.points)
            self.close_hold(acc, e.hold_id)
        elif isinstance(e, A.HoldReleased | A.HoldExpired):
            for lot_id, n in e.lots:
                self.lot(acc, lot_id, n, -n)
            self.account(acc, held=-e.points)
            self.close_hold(acc, e.hold_id)
        elif isinstance(e, A.RedemptionReversed):
            self.restore(acc, e)
        elif isinstance(e, A.Reversed):
            self.takes(acc, ((e.lot_id, e.taken_from_lot), *e.lots))
            self.account(acc, debt=e.debt)
        elif isinstance(e, A.Adjusted):
            if e.amount > 0:
                self.add_lot(acc, e, e.amount, e.repaid, e.timestamp)
            else:
                self.takes(acc, e.lots)
        elif isinstance(e, A.TransferredOut):
            self.takes(acc, e.lots)
            self.account(acc, debt=-e.debt)
        elif isinstance(e, A.TransferredIn):
            for lot in e.lots:
                arrived = LotRow(lot["points"], lot["points"], 0, *_dates(lot))
                self.op(acc, lot["lot_id"], LotOp(ARRIVE, arrived))
            self.account(acc, debt=e.debt)

    def lots_after(
        self, before: dict[tuple[UUID, str], LotRow]
    ) -> dict[tuple[UUID, str], LotRow | None]:
        """Each touched lot's row after the batch (None: no row), from its row ``before``.
        After each event, a lot with nothing free or held left leaves the table."""
        after: dict[tuple[UUID, str], LotRow | None] = {}
        for key, groups in self.lot_ops.items():
            row = before.get(key)
            for ops in groups:
                for op in ops:
                    row = op.run(row)
                if row is not None and row.remaining == 0 and row.held == 0:
                    row = None
            after[key] = row
        return after
