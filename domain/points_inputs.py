"""Input checks shared by the points account's commands (a rejected command records nothing)."""

from __future__ import annotations

from domain.errors import FieldProblem, InvalidInput
from domain.loyalty import BURN_ORDERS


def positive(points: int, field: str) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise InvalidInput([FieldProblem(field, "must be a positive integer")])


def known_burn_order(burn_order: str) -> None:
    if burn_order not in BURN_ORDERS:
        raise InvalidInput([FieldProblem("burn_order", f"must be one of {BURN_ORDERS}")])
