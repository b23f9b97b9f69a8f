"""Transfers between points accounts (a merge and its undo): what the lots still have free, and
the debt, move to another account, arriving there as lots with the same dates.

A mixin of :class:`~domain.points_account.PointsAccount`, whose events and state it uses."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.lots import Hold, Lot, Settled, burn_key
from domain.lots import returning as _returning
from domain.lots import takes as _takes


class PointsTransfers:
    """``transfer_out`` (the receiving account records its ``TransferredIn`` in the same call)."""

    # What the methods use of PointsAccount (declared for the type checker only).
    if TYPE_CHECKING:
        id: UUID
        debt: int
        lots: dict[str, Lot]
        holds: dict[str, Hold]
        spent_lots: dict[str, Lot]
        arrived: dict[str, tuple[str, ...]]
        TransferredOut: type[Any]
        TransferredIn: type[Any]

        def settle(self, as_of: datetime, *, at: datetime) -> Settled: ...
        def _trigger(self, event_class: type[Any], **kwargs: Any) -> None: ...
        def release(self, hold_id: str, *, at: datetime, actor: str = "") -> Hold: ...

    def transfer_out(
        self,
        transfer_id: str,
        to: PointsTransfers,
        *,
        at: datetime,
        lot_ids: Iterable[str] | None = None,
        debt: int | None = None,
        closes: bool = False,
        reopens: bool = False,
    ) -> int:
        """Move the free points of ``lot_ids`` (default: every lot) and ``debt`` (default: all
        of it) to ``to``, which receives them as lots with the same dates. Expired lots are
        expired first; held points stay (a hold is resolved where it was made), except that a
        closing transfer first releases every open hold: a closed account takes no capture or
        release, so what it held would be stranded there. ``closes`` (a merge) closes this
        account, ``reopens`` (its undo) reopens ``to``: both are recorded even with nothing to
        move. Returns the points moved."""
        self.settle(at, at=at)
        if closes:
            for hold_id in list(self.holds):
                self.release(hold_id, at=at, actor=f"transfer:{transfer_id}")
        wanted = set(self.lots) if lot_ids is None else set(lot_ids) & set(self.lots)
        moving = sorted(
            (self.lots[i] for i in wanted if self.lots[i].remaining > 0),
            key=lambda lot: burn_key(lot, "soonest_expiry"),
        )
        owed = self.debt if debt is None else min(debt, self.debt)
        if not moving and not owed and not (closes or reopens):
            return 0
        taken = set(to.lots) | {lot_id for ids in to.arrived.values() for lot_id in ids}
        arriving = []
        for lot in moving:
            spent = to.spent_lots.get(lot.lot_id)
            # A consumed lot kept for reversals is the same lot only if this is it coming back.
            foreign = spent is not None and not _returning(spent, lot)
            clash = lot.lot_id in taken or foreign
            lot_id = lot.lot_id if not clash else f"{lot.lot_id}@{transfer_id}"
            arriving.append(
                {
                    "lot_id": lot_id,
                    "source_lot_id": lot.lot_id,
                    "points": lot.remaining,
                    "earned_at": lot.earned_at.isoformat(),
                    "active_at": lot.active_at.isoformat(),
                    "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
                }
            )
        self._trigger(
            self.TransferredOut,
            timestamp=at,
            transfer_id=transfer_id,
            to_account=to.id,
            lots=_takes((lot.lot_id, lot.remaining) for lot in moving),
            debt=owed,
            closes=closes,
        )
        to._trigger(
            to.TransferredIn,
            timestamp=at,
            transfer_id=transfer_id,
            from_account=self.id,
            lots=arriving,
            debt=owed,
            reopens=reopens,
        )
        return sum(lot.remaining for lot in moving)
