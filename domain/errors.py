"""Typed domain errors. Each rule has its own class with the fields a caller needs.

They are translated to HTTP only in ``api/errors.py``; the stable ``code`` lives here so the CLI and
importers report the same codes as the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID


class DomainError(Exception):
    """A command was rejected by a business rule. Nothing was written."""

    code: ClassVar[str] = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem_fields(self) -> dict[str, Any]:
        """Typed fields a client may act on, added to the problem body (ids, amounts)."""
        return {}


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one input field: where (a JSON-pointer-like path) and why."""

    field: str
    reason: str


class InvalidInput(DomainError):
    """Input values that are well-typed but break a rule (bad identity, empty value, ...)."""

    code = "invalid_input"

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in self.problems))

    def problem_fields(self) -> dict[str, Any]:
        return {"errors": [{"field": p.field, "reason": p.reason} for p in self.problems]}


class ClientIdReused(DomainError):
    """A client's id for a command (``redemption_id``, ``hold_id``, ...) was used before for a
    different request; the same request again is a replay, never this."""

    code = "idempotency_key_reused"

    def __init__(self, field: str, client_id: str) -> None:
        self.field, self.client_id = field, client_id
        super().__init__(f"{field} {client_id!r} was already used for a different request")

    def problem_fields(self) -> dict[str, Any]:
        return {"field": self.field}


class IdentityConflict(DomainError):
    """The identities of one request already belong to more than one customer."""

    code = "identity_conflict"

    def __init__(self, customer_ids: Sequence[UUID]) -> None:
        self.customer_ids = tuple(sorted(customer_ids))
        super().__init__(
            "the identities given belong to different customers: "
            + ", ".join(str(c) for c in self.customer_ids)
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"customer_ids": [str(c) for c in self.customer_ids]}


class CustomerNotFound(DomainError):
    code = "customer_not_found"

    def __init__(self, customer_id: UUID | str) -> None:
        self.customer_id = str(customer_id)
        super().__init__(f"customer {customer_id} does not exist")


class UnknownReferrer(DomainError):
    code = "unknown_referrer"

    def __init__(self, referrer_id: UUID | str) -> None:
        self.referrer_id = str(referrer_id)
        super().__init__(f"referrer {referrer_id} is not a customer of this tenant")


class CustomerMerged(DomainError):
    """The customer was merged into another: commands go to the survivor."""

    code = "customer_merged"

    def __init__(self, customer_id: UUID, merged_into: UUID) -> None:
        self.customer_id = str(customer_id)
        self.merged_into = str(merged_into)
        super().__init__(f"customer {customer_id} was merged into {merged_into}")

    def problem_fields(self) -> dict[str, Any]:
        return {"merged_into": self.merged_into}


class CustomerErased(DomainError):
    """The customer's personal data was erased; it accepts no further changes."""

    code = "customer_erased"

    def __init__(self, customer_id: UUID) -> None:
        self.customer_id = str(customer_id)
        super().__init__(f"customer {customer_id} was erased")


class IdentityHeldByOther(DomainError):
    """An identity to link already belongs to another customer (merge them instead)."""

    code = "identity_conflict"

    def __init__(self, identity_type: str, holder: UUID) -> None:
        self.identity_type = identity_type
        self.customer_ids = (holder,)
        super().__init__(
            f"the {identity_type} identity belongs to customer {holder}; merge the two instead"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"customer_ids": [str(c) for c in self.customer_ids]}


class IdentityLimitReached(DomainError):
    """The program lets only ``limit`` customers share one value of this identity type."""

    code = "identity_limit_reached"

    def __init__(self, identity_type: str, limit: int) -> None:
        self.identity_type = identity_type
        self.limit = limit
        super().__init__(
            f"{limit} customers already share this {identity_type} value, the program's limit"
        )


class IdentityNotHeld(DomainError):
    code = "identity_not_held"

    def __init__(self, identity_type: str) -> None:
        self.identity_type = identity_type
        super().__init__(f"the customer holds no such {identity_type} identity")


class LastIdentity(DomainError):
    """A customer keeps at least one identity, or no channel could ever reach them again."""

    code = "last_identity"

    def __init__(self) -> None:
        super().__init__("the customer's last identity cannot be unlinked")


class CannotMerge(DomainError):
    """The pair cannot be merged (the same customer, or one of them merged away or erased)."""

    code = "merge_not_allowed"


class MergeNotFound(DomainError):
    code = "merge_not_found"

    def __init__(self, merge_id: UUID | str) -> None:
        self.merge_id = str(merge_id)
        super().__init__(f"merge {merge_id} does not exist")


class MergeNotUndoable(DomainError):
    """Undone already, or its survivor was merged on (undo that later merge first)."""

    code = "merge_not_undoable"


class AgentCycle(DomainError):
    """Setting this parent agent would make the downline tree a cycle."""

    code = "agent_cycle"

    def __init__(self, customer_id: UUID, parent_id: UUID) -> None:
        self.customer_id = str(customer_id)
        self.parent_id = str(parent_id)
        super().__init__(f"{parent_id} is in the downline of {customer_id}: that would be a cycle")


class RoleNotHeld(DomainError):
    code = "role_not_held"

    def __init__(self, role: str) -> None:
        self.role = role
        super().__init__(f"the customer does not hold the role {role!r}")


class TagLimitReached(DomainError):
    """A customer carries at most ``limit`` static tags."""

    code = "tag_limit_reached"

    def __init__(self, limit: int, held: int, adding: int) -> None:
        self.limit, self.held, self.adding = limit, held, adding
        super().__init__(
            f"the customer carries {held} tags; adding {adding} would pass the limit of {limit}"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"limit": self.limit, "held": self.held, "adding": self.adding}


class ProgramNotFound(DomainError):
    code = "program_not_found"

    def __init__(self) -> None:
        super().__init__("this tenant has no program yet: PUT /v1/program first")


# -- loyalty: orders, points, levels, benefits ----------------------------------------------------


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


class LevelGroupNotFound(DomainError):
    code = "level_group_not_found"

    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"the program has no level group {group!r}")


class BenefitNotFound(DomainError):
    code = "benefit_not_found"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the program has no benefit {benefit!r}")


class GrantNotFound(DomainError):
    """No direct grant with this id was made to the customer."""

    code = "benefit_grant_not_found"

    def __init__(self, grant_id: str) -> None:
        self.grant_id = grant_id
        super().__init__(f"the customer has no benefit grant {grant_id!r}")


class BenefitNotHeld(DomainError):
    code = "benefit_not_held"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the customer does not hold the benefit {benefit!r} now")


class BenefitDisabled(DomainError):
    code = "benefit_disabled"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the benefit {benefit!r} is switched off")


class BenefitQuotaExhausted(DomainError):
    code = "benefit_quota_exhausted"

    def __init__(self, benefit: str, quota: int, period: str) -> None:
        self.benefit, self.quota, self.period = benefit, quota, period
        super().__init__(f"the benefit {benefit!r} was used {quota} times this {period}")

    def problem_fields(self) -> dict[str, Any]:
        return {"quota": self.quota, "period": self.period}


class LevelNotFound(DomainError):
    """A level code the level group does not have (an override naming it is a bad request)."""

    code = "level_not_found"

    def __init__(self, group: str, level: str) -> None:
        self.group, self.level = group, level
        super().__init__(f"the level group {group!r} has no level {level!r}")

    def problem_fields(self) -> dict[str, Any]:
        return {"group": self.group, "level": self.level}


class OverrideNotFound(DomainError):
    code = "level_override_not_found"

    def __init__(self, group: str, override_id: str) -> None:
        self.group, self.override_id = group, override_id
        super().__init__(f"no override {override_id!r} on the level group {group!r}")
