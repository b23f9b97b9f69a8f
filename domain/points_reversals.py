"""Reversals on a points account: a refund reversing what a lot earned (``reverse``: from the lot,
then the other lots in burn order, the rest as debt or written off as the type's refund policy
says), and a redemption given back to the exact lots it took (``reverse_redemption``: the
last-taken first, with their original dates; what it brings back first settles a ``clamp``
refund's write-off of that lot, then outstanding debt).

A mixin of :class:`~domain.points_account.PointsAccount`, whose events and state it uses."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.errors import (
    ClientIdReused,
    FieldProblem,
    InvalidInput,
    RedemptionNotFound,
    ReversalExceedsRedemption,
    ReversalWindowClosed,
)
from domain.lots import Lot, LotTakes, Redemption, Reversal, Settled
from domain.lots import takes as _takes
from domain.loyalty import REFUND_POLICIES
from domain.points_inputs import known_burn_order, positive


class PointsReversals:
    """``reverse`` (a refund) and ``reverse_redemption``."""

    # What the methods use of PointsAccount (declared for the type checker only).
    if TYPE_CHECKING:
        debt: int
        lots: dict[str, Lot]
        spent_lots: dict[str, Lot]
        written_off: dict[str, int]
        redemptions: dict[str, Redemption]
        redemption_reversals: dict[str, str]
        reversal_takes: dict[str, LotTakes]
        Reversed: type[Any]
        RedemptionReversed: type[Any]

        modified_on: datetime

        def settle(self, as_of: datetime, *, at: datetime) -> Settled: ...
        def expire(self, as_of: datetime, *, at: datetime) -> int: ...
        def _plan(
            self, points: int, at: datetime, burn_order: str, exclude: str | None = None
        ) -> LotTakes: ...
        def _trigger(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def reverse(
        self,
        lot_id: str,
        points: int,
        *,
        reversal_id: str,
        policy: str,
        burn_order: str,
        at: datetime,
    ) -> Reversal:
        """Reverse ``points`` earned by lot ``lot_id`` (a refund).

        Taken from that lot first (what it still has free, pending included); the rest was
        spent already: taken from the other available lots in burn order, and whatever is still
        missing becomes debt (``negative``: available goes below zero, later earns repay it) or
        shortfall (``clamp``: written off, recorded).
        """
        positive(points, "points")
        known_burn_order(burn_order)
        if policy not in REFUND_POLICIES:
            raise InvalidInput([FieldProblem("policy", f"must be one of {REFUND_POLICIES}")])
        self.settle(at, at=at)
        lot = self.lots.get(lot_id)
        from_lot = min(points, lot.remaining) if lot is not None else 0
        elsewhere = self._plan(points - from_lot, at, burn_order, exclude=lot_id)
        taken_elsewhere = sum(n for _, n in elsewhere)
        missing = points - from_lot - taken_elsewhere
        reversal = Reversal(
            taken_from_lot=from_lot,
            taken_elsewhere=taken_elsewhere,
            debt=missing if policy == "negative" else 0,
            shortfall=missing if policy == "clamp" else 0,
        )
        self._trigger(
            self.Reversed,
            timestamp=at,
            reversal_id=reversal_id,
            lot_id=lot_id,
            points=points,
            policy=policy,
            taken_from_lot=from_lot,
            lots=elsewhere,
            debt=reversal.debt,
            shortfall=reversal.shortfall,
        )
        return reversal

    def reverse_redemption(
        self,
        redemption_id: str,
        points: int | None,
        *,
        reversal_id: str,
        at: datetime,
        reason: str | None = None,
        actor: str = "",
    ) -> LotTakes:
        """Give back ``points`` (default: all that is left) of a redemption to the exact lots
        it took, the last-taken first, with their original dates. Partial reversals add up to
        at most the redemption. A restored lot already past its expiry expires at once (its own
        ``Expired`` event). Returns what each lot got back."""
        if points is not None:
            positive(points, "amount")
        if not reversal_id:
            raise InvalidInput([FieldProblem("reversal_id", "must not be empty")])
        if reversal_id in self.redemption_reversals:
            took = self.reversal_takes.get(reversal_id, ())
            same = self.redemption_reversals[reversal_id] == redemption_id and (
                points is None or points == sum(n for _, n in took)
            )
            if not same:
                raise ClientIdReused("reversal_id", reversal_id)
            return took  # a repeat of this reversal
        redemption = self.redemptions.get(redemption_id)
        if redemption is None:
            raise RedemptionNotFound(redemption_id)
        until = redemption.reversible_until
        # Ledger time: a command stamped before the last event still finds the window closed.
        if until is not None and max(at, self.modified_on) > until:
            raise ReversalWindowClosed(redemption_id, until)
        left = redemption.points - redemption.reversed
        wanted = left if points is None else points
        if wanted > left or wanted == 0:
            raise ReversalExceedsRedemption(redemption_id, points, left)
        self.settle(at, at=at)
        takes = redemption.plan(wanted)
        reclaimed, repaid = self._settle_from_restored(takes, at)
        restored = []
        for lot_id, _ in takes:
            lot = self.lots.get(lot_id) or self.spent_lots[lot_id]
            restored.append(
                {
                    "lot_id": lot_id,
                    "earned": lot.earned,
                    "earned_at": lot.earned_at.isoformat(),
                    "active_at": lot.active_at.isoformat(),
                    "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
                }
            )
        self._trigger(
            self.RedemptionReversed,
            timestamp=at,
            reversal_id=reversal_id,
            redemption_id=redemption_id,
            points=wanted,
            reason=reason,
            actor=actor,
            lots=takes,
            restored_lots=restored,
            reclaimed=reclaimed,
            repaid=repaid,
        )
        self.expire(at, at=at)
        return takes

    def _settle_from_restored(self, takes: LotTakes, at: datetime) -> tuple[LotTakes, LotTakes]:
        """What of the points a reversal brings back to each lot settles first: the part a
        ``clamp`` refund of that lot wrote off, then outstanding debt (as a new lot repays it;
        not from a lot already past its expiry, whose points expire at once instead)."""
        reclaimed, repaid = [], []
        debt = self.debt
        for lot_id, n in takes:
            k = min(n, self.written_off.get(lot_id, 0))
            lot = self.lots.get(lot_id) or self.spent_lots[lot_id]
            j = 0 if lot.expired_by(at) else min(n - k, debt)
            debt -= j
            if k:
                reclaimed.append((lot_id, k))
            if j:
                repaid.append((lot_id, j))
        return _takes(reclaimed), _takes(repaid)
