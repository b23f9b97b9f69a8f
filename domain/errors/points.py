"""Errors of orders and points: refunds, point types, holds, redemptions and their reversals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.errors.base import DomainError


class OrderNotFound(DomainError):
    code = "order_not_found"

    def __init__(self, channel: str, order_id: str) -> None:
        self.channel, self.order_id = channel, order_id
        super().__init__(f"no order {order_id!r} from channel {channel!r}")


class RefundExceedsOrder(DomainError):
    """More would be refunded (of the order, or of one line) than remains refundable."""

    code = "refund_exceeds_order"

    def __init__(self, requested: int, refundable: int, line_id: str | None = None) -> None:
        self.requested, self.refundable, self.line_id = requested, refundable, line_id
        where = f"line {line_id!r}" if line_id else "the order"
        super().__init__(
            f"refund of {requested} exceeds the {refundable} still refundable on {where}"
        )

    def problem_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"requested": self.requested, "refundable": self.refundable}
        if self.line_id is not None:
            fields["line_id"] = self.line_id
        return fields


class PointTypeNotFound(DomainError):
    code = "point_type_not_found"

    def __init__(self, point_type: str) -> None:
        self.point_type = point_type
        super().__init__(f"the program has no point type {point_type!r}")


class PointsNotRedeemable(DomainError):
    code = "points_not_redeemable"

    def __init__(self, point_type: str) -> None:
        self.point_type = point_type
        super().__init__(f"points of type {point_type!r} cannot be redeemed")


class InsufficientPoints(DomainError):
    code = "insufficient_points"

    def __init__(self, point_type: str, available: int, requested: int) -> None:
        self.point_type, self.available, self.requested = point_type, available, requested
        super().__init__(f"{requested} {point_type} requested, {available} available")

    def problem_fields(self) -> dict[str, Any]:
        return {"available": self.available, "requested": self.requested}


class HoldNotFound(DomainError):
    code = "hold_not_found"

    def __init__(self, hold_id: str) -> None:
        self.hold_id = hold_id
        super().__init__(f"no hold {hold_id!r}")


class HoldAlreadyResolved(DomainError):
    """A hold is captured or released once; the other resolution is refused."""

    code = "hold_already_resolved"

    def __init__(self, hold_id: str, resolution: str) -> None:
        self.hold_id, self.resolution = hold_id, resolution
        super().__init__(f"hold {hold_id!r} was already {resolution}")

    def problem_fields(self) -> dict[str, Any]:
        return {"resolution": self.resolution}


class HoldExpired(DomainError):
    """A hold past its timeout can be neither captured nor released: the timeout released it
    (or will, at the next expiry run or command on the account)."""

    code = "hold_expired"

    def __init__(self, hold_id: str, expires_at: datetime | None) -> None:
        self.hold_id, self.expires_at = hold_id, expires_at
        when = f" at {expires_at.isoformat()}" if expires_at else ""
        super().__init__(f"hold {hold_id!r} timed out{when}")

    def problem_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"hold_id": self.hold_id}
        if self.expires_at is not None:
            fields["expires_at"] = self.expires_at.isoformat()
        return fields


class RedemptionNotFound(DomainError):
    code = "redemption_not_found"

    def __init__(self, redemption_id: str) -> None:
        self.redemption_id = redemption_id
        super().__init__(f"no redemption {redemption_id!r}")


class ReversalWindowClosed(DomainError):
    """A redemption reversal after the point type's reversal window (``until``) closed."""

    code = "reversal_window_closed"

    def __init__(self, redemption_id: str, until: datetime) -> None:
        self.redemption_id, self.until = redemption_id, until
        super().__init__(
            f"redemption {redemption_id!r} could be reversed until {until.isoformat()}"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"redemption_id": self.redemption_id, "until": self.until.isoformat()}


class ReversalExceedsRedemption(DomainError):
    """A redemption reversal for more than is left unreversed (``requested`` None: the rest,
    and nothing is left)."""

    code = "reversal_exceeds_redemption"

    def __init__(self, redemption_id: str, requested: int | None, reversible: int) -> None:
        self.redemption_id, self.requested, self.reversible = redemption_id, requested, reversible
        super().__init__(
            f"reversal of {requested if requested is not None else 'the rest'} exceeds the"
            f" {reversible} still reversible on redemption {redemption_id!r}"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {
            "redemption_id": self.redemption_id,
            "requested": self.requested,
            "reversible": self.reversible,
        }
