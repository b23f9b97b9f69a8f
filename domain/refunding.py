"""Refunding part of an order: the pure decision.

A refund by amount or by lines reverses exactly the points that part earned (from the order's
own lot first; what was already spent follows the point type's refund policy), takes the spend
back from level qualification, and counts on the order. The buyer may since have been merged
into another customer: the points and the memberships moved there, so the reversal happens on
the customer the buyer is now (an erased one included: money facts stay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import ClientIdReused
from domain.loyalty import LoyaltyRules
from domain.order import Order
from domain.ordering import Known, Raced, Replayed, follow_merges, lot_id
from domain.points_account import PointsAccount
from domain.qualifying import qualify_entry


@dataclass(frozen=True)
class RefundRequest:
    """``amount`` or ``lines`` (line id → amount), checked by the caller to be exactly one;
    ``fingerprint``: the request's digest (the same refund id with another one is refused)."""

    refund_id: str
    amount: int | None
    lines: Mapping[str, int] | None
    fingerprint: str


@dataclass(frozen=True)
class Refunded:
    """The refund's changes, the order last."""

    changed: tuple[Aggregate, ...]
    outcome: dict[str, Any]


RefundDecision = Refunded | Replayed | Raced


def decide_refund(
    order: Order, request: RefundRequest, known: Known, rules: LoyaltyRules, at: datetime
) -> RefundDecision:
    """Decide a refund of ``order`` on what was read (the buyer following merges, their points
    accounts of the types the order earned and their memberships); ``rules``: the version in
    force when the order was placed. Partial refunds accumulate; the total never exceeds the
    order (``RefundExceedsOrder``)."""
    if request.refund_id in order.refunds:
        stored_print, outcome = order.refunds[request.refund_id]
        if stored_print != request.fingerprint:
            raise ClientIdReused("refund_id", request.refund_id)
        return Replayed(order, dict(outcome))
    plan = order.plan_refund(request.refund_id, amount=request.amount, lines=request.lines)
    customer = follow_merges(known, order.customer_id, erased_ok=True)
    accounts: list[PointsAccount] = []
    for code in plan.reversed:
        account = known.get(PointsAccount.id_for(customer.id, code), PointsAccount)
        if account is None:
            account = PointsAccount.open(customer.id, code, at=at)
        elif account.closed:
            return Raced(f"customer {customer.id} merged concurrently")
        accounts.append(account)
    reversals: list[dict[str, Any]] = []
    for account in accounts:
        points = plan.reversed[account.point_type]
        pt = rules.point_types.get(account.point_type)
        reversal = account.reverse(
            lot_id(order.channel, order.order_id),
            points,
            reversal_id=f"refund:{request.refund_id}",
            policy=pt.refund_policy if pt else "negative",
            burn_order=pt.burn_order if pt else "soonest_expiry",
            at=at,
        )
        reversals.append(
            {
                "point_type": account.point_type,
                "reversed": points,
                "debt": reversal.debt,
                "shortfall": reversal.shortfall,
            }
        )
    levels = qualify_entry(
        known.membership,
        customer.id,
        tuple(customer.roles),
        rules,
        {"spend": -plan.amount, **{c: -n for c, n in plan.reversed.items()}},
        entry_id=f"refund:{order.channel}:{order.order_id}:{request.refund_id}",
        effective_at=order.placed_at,
        at=at,
    )
    outcome = {
        "refund_id": request.refund_id,
        "order_id": order.order_id,
        "channel": order.channel,
        "customer_id": str(order.customer_id),
        "amount": plan.amount,
        "lines": [{"line_id": k, "amount": v} for k, v in plan.by_portion.items()],
        "refunded_total": order.refunded_total + plan.amount,
        "points": reversals,
        "levels": levels.changes,
        "commissions": [],
    }
    order.refund(
        plan,
        fingerprint=request.fingerprint,
        outcome=outcome,
        program_version=rules.version,
        at=at,
    )
    return Refunded((*accounts, *levels.changed, order), outcome)
