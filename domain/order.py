"""An order from any channel, and its refunds.

The order is also the receipt of ``POST /v1/orders``: its id is derived from ``(channel,
order_id)``, so a second placement of the same order conflicts at version 1 in the event store
and is answered from the stored outcome. It records what each portion earned per point type,
so refunds reverse exactly that (see ``domain.earning``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.copying import ContainerCopies
from domain.earning import reversed_so_far, spread_refund
from domain.errors import FieldProblem, InvalidInput, RefundExceedsOrder

ORDER_NAMESPACE = UUID("6f1c9a52-3a8e-5b0b-9d61-0f1f3b7c2e40")


@dataclass(frozen=True)
class RefundPlan:
    """What one refund takes: amount per portion, and points to reverse per point type."""

    refund_id: str
    amount: int
    by_portion: Mapping[str, int]
    reversed: Mapping[str, int]


class Order(ContainerCopies, Aggregate):
    TOPIC: ClassVar[str] = "membercore.Order"

    class Created(Aggregate.Created):
        TOPIC = "membercore.Order.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.Order.Event"

    class Placed(Created):
        """An order was placed. ``placed_at``: when, per the channel (``placed_on``: its date
        in the tenant's time zone); the event's timestamp: when it was recorded. ``portions``:
        [{key, amount, sku?, category?, earned: {type: points}}]. ``outcome``: the response
        body, for replays. v1."""

        TOPIC = "membercore.Order.Placed"
        channel: str
        order_id: str
        customer_id: UUID
        placed_at: datetime
        placed_on: date
        amount: int
        portions: list[dict[str, Any]]
        store_id: str | None
        staff_id: str | None
        agent_id: str | None
        program_version: int
        fingerprint: str
        outcome: dict[str, Any]
        # The keyed hash id of the identity that named the buyer (None: named by customer id).
        identity_claim_id: UUID | None = None

    class Refunded(Event):
        """Part of the order was refunded: ``by_portion`` amounts, ``reversed`` points per
        point type; ``outcome`` is the response body, for replays; ``program_version`` the
        version whose refund policies applied (None in refunds recorded before it was kept). v1."""

        TOPIC = "membercore.Order.Refunded"
        customer_id: UUID
        refund_id: str
        amount: int
        by_portion: dict[str, int]
        reversed: dict[str, int]
        fingerprint: str
        outcome: dict[str, Any]
        program_version: int | None = None

        def apply(self, aggregate: Order) -> None:
            for key, amount in self.by_portion.items():
                aggregate.refunded[key] = aggregate.refunded.get(key, 0) + amount
            for pt, points in self.reversed.items():
                aggregate.points_reversed[pt] = aggregate.points_reversed.get(pt, 0) + points
            aggregate.refunds[self.refund_id] = (self.fingerprint, self.outcome)

    class Reassigned(Event):
        """The order now belongs to ``customer_id`` (was ``previous_customer_id``): a merge
        undo gives back the identity that routed it to the survivor (``reason``
        ``undo:<merge_id>``), so its later refunds reverse on the customer holding its points
        and qualification. ``channel`` and ``order_id`` name the order for the feed. v1."""

        TOPIC = "membercore.Order.Reassigned"
        channel: str
        order_id: str
        customer_id: UUID
        previous_customer_id: UUID
        reason: str

        def apply(self, aggregate: Order) -> None:
            aggregate.customer_id = self.customer_id

    def __init__(
        self,
        channel: str,
        order_id: str,
        customer_id: UUID,
        placed_at: datetime,
        placed_on: date,
        amount: int,
        portions: list[dict[str, Any]],
        store_id: str | None,
        staff_id: str | None,
        agent_id: str | None,
        program_version: int,
        fingerprint: str,
        outcome: dict[str, Any],
        identity_claim_id: UUID | None = None,
    ) -> None:
        self.channel = channel
        self.identity_claim_id = identity_claim_id
        self.order_id = order_id
        self.customer_id = customer_id
        self.placed_at = placed_at
        self.placed_on = placed_on
        self.amount = amount
        self.portions = portions
        self.store_id = store_id
        self.staff_id = staff_id
        self.agent_id = agent_id
        self.program_version = program_version
        self.fingerprint = fingerprint
        self.outcome = outcome
        self.refunded: dict[str, int] = {}
        self.points_reversed: dict[str, int] = {}
        self.refunds: dict[str, tuple[str, dict[str, Any]]] = {}

    @staticmethod
    def id_for(channel: str, order_id: str) -> UUID:
        return uuid5(ORDER_NAMESPACE, f"{channel}\n{order_id}")

    @classmethod
    def place(
        cls,
        *,
        channel: str,
        order_id: str,
        customer_id: UUID,
        placed_at: datetime,
        placed_on: date,
        amount: int,
        portions: Sequence[Mapping[str, Any]],
        store_id: str | None,
        staff_id: str | None,
        agent_id: str | None,
        program_version: int,
        fingerprint: str,
        outcome: Mapping[str, Any],
        at: datetime,
        identity_claim_id: UUID | None = None,
    ) -> Order:
        return cls._create(
            cls.Placed,
            id=cls.id_for(channel, order_id),
            timestamp=at,
            channel=channel,
            order_id=order_id,
            customer_id=customer_id,
            placed_at=placed_at,
            placed_on=placed_on,
            amount=amount,
            portions=[dict(p) for p in portions],
            store_id=store_id,
            staff_id=staff_id,
            agent_id=agent_id,
            program_version=program_version,
            fingerprint=fingerprint,
            outcome=dict(outcome),
            identity_claim_id=identity_claim_id,
        )

    # -- reading --------------------------------------------------------------------------------

    @property
    def refunded_total(self) -> int:
        return sum(self.refunded.values())

    @property
    def refundable(self) -> int:
        return self.amount - self.refunded_total

    def earned(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for p in self.portions:
            for pt, points in p["earned"].items():
                totals[pt] = totals.get(pt, 0) + points
        return totals

    def _portion(self, key: str) -> Mapping[str, Any] | None:
        return next((p for p in self.portions if p["key"] == key), None)

    # -- deciding -------------------------------------------------------------------------------

    def plan_refund(
        self, refund_id: str, *, amount: int | None, lines: Mapping[str, int] | None
    ) -> RefundPlan:
        """Which part of the order a refund takes, and what it reverses; raises
        :class:`RefundExceedsOrder` when more would be refunded than remains."""
        if lines is not None:
            by_portion = self._by_lines(lines)
        else:
            assert amount is not None
            if amount > self.refundable:
                raise RefundExceedsOrder(amount, self.refundable)
            left = [p["amount"] - self.refunded.get(p["key"], 0) for p in self.portions]
            parts = spread_refund(amount, left)
            by_portion = {
                p["key"]: part for p, part in zip(self.portions, parts, strict=True) if part
            }
        reversed_: dict[str, int] = {}
        for key, part in by_portion.items():
            portion = self._portion(key)
            assert portion is not None
            before = self.refunded.get(key, 0)
            for pt, earned in portion["earned"].items():
                taken = reversed_so_far(earned, portion["amount"], before + part) - (
                    reversed_so_far(earned, portion["amount"], before)
                )
                if taken:
                    reversed_[pt] = reversed_.get(pt, 0) + taken
        return RefundPlan(refund_id, sum(by_portion.values()), by_portion, reversed_)

    def _by_lines(self, lines: Mapping[str, int]) -> dict[str, int]:
        problems = [
            FieldProblem(f"lines.{key}", "not a line of this order")
            for key in lines
            if self._portion(key) is None or key.startswith("_")
        ]
        if problems:
            raise InvalidInput(problems)
        for key, part in lines.items():
            portion = self._portion(key)
            assert portion is not None
            left = portion["amount"] - self.refunded.get(key, 0)
            if part > left:
                raise RefundExceedsOrder(part, left, key)
        return {k: v for k, v in lines.items() if v}

    def reassign(self, customer_id: UUID, *, reason: str, at: datetime) -> None:
        """Hand the order to ``customer_id`` (nothing is recorded when it already is theirs)."""
        if customer_id == self.customer_id:
            return
        self.trigger_event(
            self.Reassigned,
            channel=self.channel,
            order_id=self.order_id,
            customer_id=customer_id,
            previous_customer_id=self.customer_id,
            reason=reason,
            timestamp=at,
        )

    def refund(
        self,
        plan: RefundPlan,
        *,
        fingerprint: str,
        outcome: Mapping[str, Any],
        program_version: int,
        at: datetime,
    ) -> None:
        self.trigger_event(
            self.Refunded,
            customer_id=self.customer_id,
            refund_id=plan.refund_id,
            amount=plan.amount,
            by_portion=dict(plan.by_portion),
            reversed=dict(plan.reversed),
            fingerprint=fingerprint,
            outcome=dict(outcome),
            program_version=program_version,
            timestamp=at,
        )
