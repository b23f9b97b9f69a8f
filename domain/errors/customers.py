"""Errors of customers: identities, merges, agents, roles, tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from domain.errors.base import DomainError


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
