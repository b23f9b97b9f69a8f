"""Typed domain errors. Each rule has its own class with the fields a caller needs.

They are translated to HTTP only in ``api/errors.py``; the stable ``code`` lives here so the CLI and
importers report the same codes as the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID


class DomainError(Exception):
    """A command was rejected by a business rule. Nothing was written."""

    code: ClassVar[str] = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


class IdentityConflict(DomainError):
    """The identities of one request already belong to more than one customer."""

    code = "identity_conflict"

    def __init__(self, customer_ids: Sequence[UUID]) -> None:
        self.customer_ids = tuple(sorted(customer_ids))
        super().__init__(
            "the identities given belong to different customers: "
            + ", ".join(str(c) for c in self.customer_ids)
        )


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
