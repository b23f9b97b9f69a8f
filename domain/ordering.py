"""Placing an order and refunding part of it: the pure decisions.

``decide_order`` takes an order as the channel sent it (parsed, with its identity's claim id and
its fingerprint computed once by the caller), what the caller read for it (``Known``), the
loyalty rules in force when it was placed and the time now. It answers:

- ``Replayed``: the order is already placed with the same request (another: 422);
- ``Placed``: the aggregates it changed (a buyer it registered, points accounts, level
  memberships, the order last) and the answer;
- ``Raced``: what was read is stale (the order placed, or the buyer merged away, by a writer
  that committed after the read): decide again on fresh reads.

``decide_refund`` does the same for a refund of an order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from domain.customer import Customer
from domain.earning import Line, OrderFacts, portions_of
from domain.earning import earn as earn_points
from domain.errors import (
    ClientIdReused,
    CustomerErased,
    CustomerNotFound,
    FieldProblem,
    IdentityConflict,
    InvalidInput,
)
from domain.expiry import active_at, expires_at
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules
from domain.order import Order
from domain.points_account import PointsAccount
from domain.qualifying import levels_at, qualify_entry
from domain.values import Identity

# Roles of a buyer an order registers.
DEFAULT_ROLES = ("consumer",)
# Channel clocks drift; an order placed further ahead than this is refused as a typo.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_MERGE_HOPS = 16

A = TypeVar("A")


class Known:
    """The aggregates one attempt read, by id, and the ids it found absent. The orders of one
    attempt (a round of a batch) decide on the same objects: what one opens or changes the next
    sees, and each is saved once. Asking for an id that was not read is the caller's bug."""

    def __init__(self, found: Mapping[UUID, Any] | None = None, absent: Iterable[UUID] = ()):
        self.found: dict[UUID, Any] = dict(found or {})
        self.absent: set[UUID] = set(absent)

    def read(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.found or aggregate_id in self.absent

    def get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id in self.found:
            aggregate = self.found[aggregate_id]
            return aggregate if isinstance(aggregate, kind) else None
        if aggregate_id in self.absent:
            return None
        raise LookupError(f"aggregate {aggregate_id} was not read")

    def add(self, aggregate: Aggregate) -> None:
        self.found[aggregate.id] = aggregate
        self.absent.discard(aggregate.id)

    def membership(self, membership_id: UUID) -> LevelMembership | None:
        return self.get(membership_id, LevelMembership)


@dataclass(frozen=True)
class OrderRequest:
    """An order as the channel sent it. Either ``customer_id`` or ``identity`` names the buyer;
    ``claim_id`` is the identity's claim; ``fingerprint`` the request's digest (a replay with
    another one is refused)."""

    order_id: str
    channel: str
    placed_at: datetime
    amount: int
    lines: tuple[Line, ...]
    customer_id: UUID | None
    identity: Identity | None
    claim_id: UUID | None
    fingerprint: str
    store_id: str | None = None
    staff_id: str | None = None
    agent_id: str | None = None

    @property
    def id(self) -> UUID:
        return Order.id_for(self.channel, self.order_id)

    @property
    def lot_id(self) -> str:
        return lot_id(self.channel, self.order_id)


def lot_id(channel: str, order_id: str) -> str:
    """The points lot an order earns (its refunds reverse it)."""
    return f"order:{channel}:{order_id}"


@dataclass(frozen=True)
class Replayed:
    """Already decided: answer ``outcome`` again; ``order`` holds it."""

    order: Order
    outcome: dict[str, Any]


@dataclass(frozen=True)
class Placed:
    """The order's changes, the order last (its event is the save's last position)."""

    changed: tuple[Aggregate, ...]
    outcome: dict[str, Any]
    new_customer: UUID | None = None


@dataclass(frozen=True)
class Raced:
    """A writer that committed after the read changed what the decision depends on."""

    reason: str


OrderDecision = Placed | Replayed | Raced


def follow_merges(known: Known, customer_id: UUID, *, erased_ok: bool = False) -> Customer:
    """The customer ``customer_id`` is now: a merged-away id leads to the one it was merged
    into. An erased customer places no orders, but its past orders can be refunded (money facts
    stay)."""
    for _ in range(MAX_MERGE_HOPS):
        customer = known.get(customer_id, Customer)
        if customer is None:
            raise CustomerNotFound(customer_id)
        if customer.erased and not erased_ok:
            raise CustomerErased(customer.id)
        if customer.merged_into is None:
            return customer
        customer_id = customer.merged_into
    raise CustomerNotFound(customer_id)


def _buyer(request: OrderRequest, known: Known, at: datetime) -> tuple[Customer, list[Aggregate]]:
    if request.identity is None or request.claim_id is None:
        assert request.customer_id is not None
        return follow_merges(known, request.customer_id), []
    claim = known.get(request.claim_id, IdentityClaim)
    holders = claim.holders if claim is not None else ()
    if len(holders) > 1:
        raise IdentityConflict(holders)
    if holders:
        return follow_merges(known, holders[0]), []
    # Nobody holds the identity yet: the order registers its buyer. The id derives from the
    # order, so deciding the order again registers the same customer with identical events.
    identity = request.identity
    customer = Customer.register(
        customer_id=uuid5(request.id, "customer"),
        identities=(identity,),
        name=None,
        phone=identity.value if identity.type == "phone" else None,
        email=identity.value if identity.type == "email" else None,
        birthday=None,
        attributes={},
        roles=DEFAULT_ROLES,
        owner=request.staff_id,
        referrer_id=None,
        actor="order",
        at=at,
        channel=request.channel,
        store_id=request.store_id,
    )
    new_claim = IdentityClaim.claim(identity, customer.id, claim_id=request.claim_id, at=at)
    return customer, [customer, new_claim]


def _account(known: Known, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
    account = known.get(PointsAccount.id_for(customer_id, point_type), PointsAccount)
    if account is None:
        account = PointsAccount.open(customer_id, point_type, at=at)
        known.add(account)  # another order of the attempt earns on it too
    return account


def _check_placed_at(placed_at: datetime, at: datetime) -> None:
    if placed_at > at + FUTURE_TOLERANCE:
        raise InvalidInput([FieldProblem("placed_at", "is in the future")])


def decide_order(
    request: OrderRequest, known: Known, rules: LoyaltyRules, at: datetime
) -> OrderDecision:
    """Decide one order on what was read, at ``at``; ``rules``: the version in force at
    ``placed_at``. Every check comes before the first change: the aggregates may be shared with
    the other orders of a round, so a decision that stops half-way has changed nothing shared."""
    _check_placed_at(request.placed_at, at)
    placed = known.get(request.id, Order)
    if placed is not None:
        if placed.fingerprint != request.fingerprint:
            raise ClientIdReused("order_id", request.order_id)
        return Replayed(placed, dict(placed.outcome))
    customer, new = _buyer(request, known, at)
    if new:  # a customer this order registers holds nothing yet
        known.add(customer)
        known.absent |= {PointsAccount.id_for(customer.id, c) for c in rules.point_types}
        known.absent |= {LevelMembership.id_for(customer.id, c) for c in rules.level_groups}
    tz = ZoneInfo(rules.timezone)
    portions = portions_of(request.amount, request.lines)
    multiplied = any(r.level_group for pt in rules.point_types.values() for r in pt.earn)
    facts = OrderFacts(
        channel=request.channel,
        store_id=request.store_id,
        amount=request.amount,
        portions=portions,
        local_date=request.placed_at.astimezone(tz).date(),
        birthday=customer.birthday,
        levels=levels_at(known.membership, customer.id, rules, request.placed_at)
        if multiplied
        else {},
    )
    earned_by_type = {
        code: earn_points(pt, facts)
        for code, pt in rules.point_types.items()
        if rules.earns(code, customer.roles)
    }
    earning = {
        code: _account(known, customer.id, code, at)
        for code, parts in earned_by_type.items()
        if sum(parts) > 0
    }
    for account in earning.values():
        if account.has_lot(request.lot_id):
            return Raced(f"order {request.order_id!r} placed concurrently")
        if account.closed:
            return Raced(f"customer {customer.id} merged concurrently")
    earned: dict[str, int] = {}
    for code, account in earning.items():
        pt = rules.point_types[code]
        earned[code] = sum(earned_by_type[code])
        account.earn(
            request.lot_id,
            earned[code],
            earned_at=request.placed_at,
            at=at,
            expires_at=expires_at(pt.expiry, request.placed_at, tz),
            active_at=active_at(pt.pending_days, request.placed_at),
            source={"kind": "order", "channel": request.channel, "order_id": request.order_id},
            program_version=rules.version,
        )
    levels = qualify_entry(
        known.membership,
        customer.id,
        tuple(customer.roles),
        rules,
        {"spend": request.amount, **earned},
        entry_id=request.lot_id,
        effective_at=request.placed_at,
        at=at,
    )
    for membership in levels.opened:
        known.add(membership)
    outcome = {
        "order_id": request.order_id,
        "customer_id": str(customer.id),
        "points": [{"point_type": code, "earned": n} for code, n in earned.items()],
        "levels": levels.changes,
        "commissions": [],
    }
    order = Order.place(
        channel=request.channel,
        order_id=request.order_id,
        customer_id=customer.id,
        placed_at=request.placed_at,
        placed_on=facts.local_date,
        amount=request.amount,
        portions=[
            {
                "key": p.key,
                "amount": p.amount,
                "earned": {c: parts[n] for c, parts in earned_by_type.items() if parts[n]},
                **({"sku": p.sku} if p.sku else {}),
                **({"category": p.category} if p.category else {}),
            }
            for n, p in enumerate(portions)
        ],
        store_id=request.store_id,
        staff_id=request.staff_id,
        agent_id=request.agent_id,
        program_version=rules.version,
        fingerprint=request.fingerprint,
        outcome=outcome,
        at=at,
        identity_claim_id=request.claim_id,
    )
    return Placed(
        (*new, *earning.values(), *levels.changed, order),
        outcome,
        customer.id if new else None,
    )
