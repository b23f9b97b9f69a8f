"""The order commands: ``PlaceOrder``, ``PlaceOrders`` (one round of a batch), ``RefundOrder``.

An order is its own receipt: its aggregate id derives from ``(channel, order_id)``, so these
commands take no idempotency key. The same order again answers its stored outcome (``DONE``);
another request under the same order id is ``idempotency_key_reused``. A refund is kept on its
order by ``refund_id`` in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.kernel import Command
from domain.earning import Line
from domain.errors import FieldProblem, InvalidInput

# An order line as the channel sends it.
OrderLineInput = Line


@dataclass(frozen=True)
class PlaceOrder(Command):
    """An order from a channel: its buyer by ``customer_id`` or by ``identity`` (``(type,
    value)``: an unknown identity registers its buyer). It earns points and moves levels with
    the program version in force at ``placed_at``."""

    operation = "PlaceOrder"
    order_id: str
    channel: str
    placed_at: datetime
    amount: int
    customer_id: UUID | None = None
    identity: tuple[str, str] | None = None
    lines: Sequence[OrderLineInput] | None = None
    store_id: str | None = None
    staff_id: str | None = None
    agent_id: str | None = None

    def __post_init__(self) -> None:
        problems = _line_problems(self.lines or (), self.amount)
        if (self.customer_id is None) == (self.identity is None):
            problems.append(
                FieldProblem("customer_id", "give exactly one of customer_id, identity")
            )
        if self.placed_at.tzinfo is None:
            problems.append(FieldProblem("placed_at", "must carry a UTC offset"))
        if problems:
            raise InvalidInput(problems)


def _line_problems(lines: Sequence[OrderLineInput], amount: int) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for n, line in enumerate(lines):
        if line.line_id in seen:
            problems.append(FieldProblem(f"lines[{n}].line_id", "duplicate line_id"))
        if line.line_id.startswith("_"):
            problems.append(FieldProblem(f"lines[{n}].line_id", "must not start with _"))
        seen.add(line.line_id)
    if sum(line.amount for line in lines) > amount:
        problems.append(FieldProblem("lines", "the lines add up to more than the order amount"))
    return problems


@dataclass(frozen=True)
class PlaceOrders(Command):
    """One round of a batch: orders sharing no order, customer id or identity, decided on one
    bulk read and saved in one transaction. Each succeeds or fails on its own."""

    operation = "PlaceOrders"
    # A round that keeps meeting concurrent writers is split in halves rather than decided
    # whole again and again.
    attempts = 3
    orders: tuple[PlaceOrder, ...]


@dataclass(frozen=True)
class RefundOrder(Command):
    """Refund part of an order by ``amount`` or by ``lines`` (line id → amount)."""

    operation = "RefundOrder"
    scope = ("channel", "order_id")
    channel: str
    order_id: str
    refund_id: str
    amount: int | None = None
    lines: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if (self.amount is None) == (self.lines is None):
            raise InvalidInput([FieldProblem("amount", "give exactly one of amount, lines")])
        if self.lines is not None and not self.lines:
            raise InvalidInput([FieldProblem("lines", "name at least one line")])
