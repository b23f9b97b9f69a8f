"""Errors every area raises: the base class, bad input, a client id used for another request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


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
