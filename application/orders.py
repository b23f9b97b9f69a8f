"""PlaceOrder and RefundOrder: an order from any channel earns points and moves levels; a refund
unwinds exactly what its part earned. One order's effects commit in one transaction.

Idempotency is the order itself: its id derives from ``(channel, order_id)``, a replay finds it
and answers the stored outcome (a different body under the same id: 422). Orders are evaluated
with the program version in force when they were placed; expiry and levels use ``placed_at``,
and every event also records when it was written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

import msgspec
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.errors import IdempotencyKeyReused
from application.identities import parse_identity
from application.levels import qualify
from application.loaders import load_customer
from application.program import ProgramView, loyalty_rules, program_view
from domain.customer import Customer
from domain.earning import Line, OrderFacts, portions_of
from domain.earning import earn as earn_points
from domain.errors import (
    CustomerErased,
    CustomerNotFound,
    DomainError,
    FieldProblem,
    IdentityConflict,
    InvalidInput,
    OrderNotFound,
)
from domain.expiry import active_at, expires_at
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules
from domain.order import Order
from domain.points_account import PointsAccount
from domain.values import Identity

DEFAULT_ROLES = ("consumer",)
# Channel clocks drift; an order placed further ahead than this is refused as a typo.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_MERGE_HOPS = 16


@dataclass(frozen=True)
class OrderLineInput:
    line_id: str
    sku: str
    quantity: int
    amount: int
    category: str | None = None


@dataclass(frozen=True)
class PlaceOrder:
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


@dataclass(frozen=True)
class OrderResult:
    """``status`` 201 (placed now) or 200 (a replay); ``body`` without the position."""

    status: int
    body: dict[str, Any]
    position: int
    completed: bool = True


@dataclass
class _Decision:
    """An order decided but not saved: its aggregates and its answer."""

    aggregates: list[Aggregate] = field(default_factory=list)
    new_customers: list[UUID] = field(default_factory=list)
    result: OrderResult | None = None


# -- parsing ----------------------------------------------------------------------------------


def _check_lines(cmd: PlaceOrder) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for n, line in enumerate(cmd.lines or ()):
        if line.line_id in seen:
            problems.append(FieldProblem(f"lines[{n}].line_id", "duplicate line_id"))
        if line.line_id.startswith("_"):
            problems.append(FieldProblem(f"lines[{n}].line_id", "must not start with _"))
        seen.add(line.line_id)
    if sum(line.amount for line in cmd.lines or ()) > cmd.amount:
        problems.append(FieldProblem("lines", "the lines add up to more than the order amount"))
    return problems


def _check(cmd: PlaceOrder, now: datetime) -> None:
    problems = _check_lines(cmd)
    if (cmd.customer_id is None) == (cmd.identity is None):
        problems.append(FieldProblem("customer_id", "give exactly one of customer_id, identity"))
    if cmd.placed_at.tzinfo is None:
        problems.append(FieldProblem("placed_at", "must carry a UTC offset"))
    elif cmd.placed_at > now + FUTURE_TOLERANCE:
        problems.append(FieldProblem("placed_at", "is in the future"))
    if problems:
        raise InvalidInput(problems)


def fingerprint(request: Mapping[str, Any]) -> str:
    canonical = msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def _request_of(cmd: PlaceOrder, identity_key: str | None) -> dict[str, Any]:
    """The request as fingerprinted: an identity only as its keyed hash (no personal data is
    stored in order events)."""
    return {
        "order_id": cmd.order_id,
        "channel": cmd.channel,
        "customer_id": str(cmd.customer_id) if cmd.customer_id else None,
        "identity": identity_key,
        "placed_at": cmd.placed_at.isoformat(),
        "amount": cmd.amount,
        "lines": [asdict(ln) for ln in cmd.lines or ()],
        "store_id": cmd.store_id,
        "staff_id": cmd.staff_id,
        "agent_id": cmd.agent_id,
    }


# -- the customer the order belongs to ---------------------------------------------------------


def _follow_merges(app: Membercore, customer: Customer, *, erased_ok: bool = False) -> Customer:
    """Orders for a merged-away id go to the customer it was merged into. An erased customer
    places no orders, but its past orders can still be refunded (money facts stay)."""
    for _ in range(MAX_MERGE_HOPS):
        if customer.erased and not erased_ok:
            raise CustomerErased(customer.id)
        if customer.merged_into is None:
            return customer
        customer = load_customer(app, customer.merged_into)
    raise CustomerNotFound(customer.id)


class _Reads:
    """What one attempt (a single order, or a round of a batch) has read: aggregates by id,
    and ids known not to exist. Read in bulk up front (``_prefetch``: three queries for a
    whole round), so deciding an order looks nothing up one by one; aggregates the orders
    share are the same objects, and are saved once."""

    def __init__(self, app: Membercore) -> None:
        self.app = app
        self.found: dict[UUID, Any] = {}
        self.absent: set[UUID] = set()

    def fetch(self, ids: Iterable[UUID]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i not in self.found and i not in self.absent]
        if not wanted:
            return
        got = self.app.get_many(wanted)
        self.found.update(got)
        self.absent.update(i for i in wanted if i not in got)

    def get(self, aggregate_id: UUID) -> Any | None:
        self.fetch([aggregate_id])
        return self.found.get(aggregate_id)

    def customer(self, customer_id: UUID) -> Customer:
        customer = self.get(customer_id)
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        return customer


def _prefetch(reads: _Reads, cmds: Sequence[PlaceOrder], view: ProgramView) -> None:
    """Read what the orders will touch in three rounds: the orders and identity claims, then
    the buyers, then the buyers' points accounts and level memberships."""
    identities: dict[int, Identity] = {}
    for n, cmd in enumerate(cmds):
        try:
            identity = _identity_of(cmd, view)
        except InvalidInput:
            continue  # refused when the order is decided
        if identity is not None:
            identities[n] = identity
    app = reads.app
    claim_ids = {n: app.claim_id(i) for n, i in identities.items()}
    reads.fetch([*(Order.id_for(c.channel, c.order_id) for c in cmds), *claim_ids.values()])
    buyers: set[UUID] = {c.customer_id for c in cmds if c.customer_id is not None}
    for claim_id in claim_ids.values():
        claim = reads.found.get(claim_id)
        if isinstance(claim, IdentityClaim) and len(claim.holders) == 1:
            buyers.add(claim.holders[0])
    reads.fetch(buyers)
    rules = [view.loyalty_at(c.placed_at) for c in cmds]
    point_types = {code for r in rules for code in r.point_types}
    groups = {code for r in rules for code in r.level_groups}
    known = [b for b in buyers if isinstance(reads.found.get(b), Customer)]
    reads.fetch(
        [
            *(PointsAccount.id_for(b, code) for b in known for code in point_types),
            *(LevelMembership.id_for(b, code) for b in known for code in groups),
        ]
    )


@dataclass(frozen=True)
class _Buyer:
    customer: Customer
    new: list[Aggregate]


def _buyer(
    app: Membercore,
    cmd: PlaceOrder,
    identity: Identity | None,
    order_uuid: UUID,
    at: datetime,
    reads: _Reads,
) -> _Buyer:
    if identity is None:
        assert cmd.customer_id is not None
        return _Buyer(_follow_merges(app, reads.customer(cmd.customer_id)), [])
    claim_id = app.claim_id(identity)
    claim = reads.get(claim_id)
    holders = claim.holders if isinstance(claim, IdentityClaim) else ()
    if len(holders) > 1:
        raise IdentityConflict(holders)
    if holders:
        return _Buyer(_follow_merges(app, reads.customer(holders[0])), [])
    # Nobody holds the identity yet: the order registers its buyer. The id derives from the
    # order, so a retried order registers the same customer with byte-identical events.
    customer = Customer.register(
        customer_id=uuid5(order_uuid, "customer"),
        identities=(identity,),
        name=None,
        phone=identity.value if identity.type == "phone" else None,
        email=identity.value if identity.type == "email" else None,
        birthday=None,
        attributes={},
        roles=DEFAULT_ROLES,
        owner=cmd.staff_id,
        referrer_id=None,
        actor="order",
        at=at,
        channel=cmd.channel,
        store_id=cmd.store_id,
    )
    new_claim = IdentityClaim.claim(identity, customer.id, claim_id=claim_id, at=at)
    return _Buyer(customer, [customer, new_claim])


# -- placing ----------------------------------------------------------------------------------


def _existing(app: Membercore, order_uuid: UUID) -> Order | None:
    try:
        order: Order = app.repository.get(order_uuid)
    except AggregateNotFoundError:
        return None
    return order


def _replay(app: Membercore, order: Order, print_: str) -> OrderResult:
    if order.fingerprint != print_:
        raise IdempotencyKeyReused(f"order {order.order_id!r} of {order.channel!r}")
    return OrderResult(200, dict(order.outcome), app.last_position_of(order.id))


def _account_in(reads: _Reads, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
    account_id = PointsAccount.id_for(customer_id, point_type)
    account = reads.get(account_id)
    if not isinstance(account, PointsAccount):
        account = PointsAccount.open(customer_id, point_type, at=at)
        reads.found[account_id] = account  # another order of the attempt earns on it too
    return account


def _account(app: Membercore, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
    try:
        account: PointsAccount = app.repository.get(PointsAccount.id_for(customer_id, point_type))
    except AggregateNotFoundError:
        return PointsAccount.open(customer_id, point_type, at=at)
    return account


def _identity_of(cmd: PlaceOrder, view: ProgramView) -> Identity | None:
    if cmd.identity is None:
        return None
    return parse_identity(*cmd.identity, view.rules, field="identity")


def _decide(
    app: Membercore, cmd: PlaceOrder, at: datetime, view: ProgramView, reads: _Reads
) -> _Decision:
    """Decide one order without saving it (a replay decides nothing new)."""
    _check(cmd, at)
    identity = _identity_of(cmd, view)
    identity_key = app.claim_id(identity).hex if identity is not None else None
    print_ = fingerprint(_request_of(cmd, identity_key))
    order_uuid = Order.id_for(cmd.channel, cmd.order_id)
    placed = reads.get(order_uuid)
    if isinstance(placed, Order):
        return _Decision(result=_replay(app, placed, print_))

    buyer = _buyer(app, cmd, identity, order_uuid, at, reads)
    customer = buyer.customer
    rules = view.loyalty_at(cmd.placed_at)
    if buyer.new:  # a customer registered by this order holds nothing yet
        reads.absent |= {PointsAccount.id_for(customer.id, code) for code in rules.point_types}
        reads.absent |= {LevelMembership.id_for(customer.id, code) for code in rules.level_groups}
    tz = ZoneInfo(rules.timezone)
    lines = [
        Line(ln.line_id, ln.sku, ln.quantity, ln.amount, ln.category) for ln in cmd.lines or ()
    ]
    portions = portions_of(cmd.amount, lines)
    facts = OrderFacts(
        channel=cmd.channel,
        store_id=cmd.store_id,
        amount=cmd.amount,
        portions=portions,
        local_date=cmd.placed_at.astimezone(tz).date(),
        birthday=customer.birthday,
        levels=_levels_at(app, customer.id, cmd.placed_at, rules),
    )
    earned_by_type = {
        code: earn_points(pt, facts)
        for code, pt in rules.point_types.items()
        if rules.earns(code, customer.roles)
    }
    lot_id = f"order:{cmd.channel}:{cmd.order_id}"
    accounts: list[Aggregate] = []
    earned: dict[str, int] = {}
    earning = {
        code: _account_in(reads, customer.id, code, at)
        for code, parts in earned_by_type.items()
        if sum(parts) > 0
    }
    # Every check before the first change: the accounts may be shared with the other orders
    # of a batch round, so a decision that stops half-way must have changed nothing.
    for account in earning.values():
        if account.has_lot(lot_id):
            # The same order committed by a racing request after this one looked for it: the
            # retry finds the order and answers its replay.
            raise IntegrityError(f"order {cmd.order_id!r} placed concurrently")
        if account.closed:
            # The buyer was merged away after this attempt loaded them: the retry follows.
            raise IntegrityError(f"customer {customer.id} merged concurrently")
    for code, account in earning.items():
        total = sum(earned_by_type[code])
        pt = rules.point_types[code]
        account.earn(
            lot_id,
            total,
            earned_at=cmd.placed_at,
            at=at,
            expires_at=expires_at(pt.expiry, cmd.placed_at, tz),
            active_at=active_at(pt.pending_days, cmd.placed_at),
            source={"kind": "order", "channel": cmd.channel, "order_id": cmd.order_id},
            program_version=rules.version,
        )
        accounts.append(account)
        earned[code] = total
    levels = qualify(
        app,
        customer.id,
        tuple(customer.roles),
        rules,
        {"spend": cmd.amount, **earned},
        entry_id=lot_id,
        effective_at=cmd.placed_at,
        at=at,
        load=reads.get,
    )
    outcome = {
        "order_id": cmd.order_id,
        "customer_id": str(customer.id),
        "points": [{"point_type": code, "earned": n} for code, n in earned.items()],
        "levels": levels.changes,
        "commissions": [],
    }
    order = Order.place(
        channel=cmd.channel,
        order_id=cmd.order_id,
        customer_id=customer.id,
        placed_at=cmd.placed_at,
        placed_on=facts.local_date,
        amount=cmd.amount,
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
        store_id=cmd.store_id,
        staff_id=cmd.staff_id,
        agent_id=cmd.agent_id,
        program_version=rules.version,
        fingerprint=print_,
        outcome=outcome,
        at=at,
        identity_claim_id=app.claim_id(identity) if identity is not None else None,
    )
    return _Decision(
        # The order last: its event then carries the save's last position, which a replay
        # (answered from the order) reports again.
        aggregates=[*buyer.new, *accounts, *levels.aggregates, order],
        new_customers=[customer.id] if buyer.new else [],
        result=OrderResult(201, outcome, 0),
    )


def _levels_at(
    app: Membercore, customer_id: UUID, at: datetime, rules: LoyaltyRules
) -> dict[str, str]:
    if not any(r.level_group for pt in rules.point_types.values() for r in pt.earn):
        return {}  # no level multipliers: spare the reads
    from application.levels import current_levels

    return current_levels(app, customer_id, at)


def place_order(app: Membercore, cmd: PlaceOrder) -> OrderResult:
    """Place one order (or answer its replay), retrying on concurrent writers."""

    def attempt(first: bool) -> OrderResult:
        view = program_view(app)
        reads = _Reads(app)
        _prefetch(reads, [cmd], view)
        decision = _decide(app, cmd, app.clock(), view, reads)
        assert decision.result is not None
        if not decision.aggregates:
            return decision.result
        app.ensure_keys(decision.new_customers)
        recordings = app.save(*decision.aggregates)
        return OrderResult(201, decision.result.body, recordings[-1].notification.id)

    return app.retrying(attempt)


# -- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem:
    """One order's answer in a batch: its status and body, or the error that rejected it."""

    order_id: str
    status: int
    body: dict[str, Any] | None = None
    error: DomainError | Exception | None = None


def _keys(cmd: PlaceOrder) -> list[str]:
    keys = [f"order:{cmd.channel}\n{cmd.order_id}"]
    if cmd.customer_id is not None:
        keys.append(f"customer:{cmd.customer_id}")
    if cmd.identity is not None:
        keys.append(f"identity:{cmd.identity[0]}\n{cmd.identity[1]}")
    return keys


def rounds_of(cmds: Sequence[PlaceOrder]) -> list[list[int]]:
    """Item indexes in rounds: items sharing an order, customer id or identity go to later
    rounds, in request order, so one round never writes one aggregate twice."""
    last: dict[str, int] = {}
    rounds: list[list[int]] = []
    for n, cmd in enumerate(cmds):
        keys = _keys(cmd)
        r = 1 + max((last.get(k, -1) for k in keys), default=-1)
        for k in keys:
            last[k] = r
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(n)
    return rounds


def place_orders(
    app: Membercore, cmds: Sequence[PlaceOrder], status_of: Callable[[Exception], int]
) -> tuple[list[BatchItem], int]:
    """Place a batch: each round of independent orders commits in one transaction. Items
    succeed or fail individually. Returns the items and the last position written (0: none)."""
    items: list[BatchItem | None] = [None] * len(cmds)
    position = 0
    for round_ in rounds_of(cmds):
        with app.batch_rounds:
            position = max(position, _place_round(app, cmds, round_, items, status_of))
    return [i for i in items if i is not None], position


def _place_round(
    app: Membercore,
    cmds: Sequence[PlaceOrder],
    round_: Sequence[int],
    items: list[BatchItem | None],
    status_of: Callable[[Exception], int],
) -> int:
    """Decide the round's orders on one bulk read and save them in one transaction. When a
    concurrent writer got to one of its streams first (other batches share buyers), the
    round is split in halves, each decided again on fresh reads, down to single orders with
    their own retries: a conflict costs a few small rounds, not the whole round one by one."""
    if len(round_) == 1:
        return _one_by_one(app, cmds, round_, items, status_of)
    at = app.clock()
    view = program_view(app)
    reads = _Reads(app)
    _prefetch(reads, [cmds[n] for n in round_], view)
    decided: list[tuple[int, _Decision]] = []
    raced: list[int] = []
    for n in round_:
        try:
            decided.append((n, _decide(app, cmds[n], at, view, reads)))
        except (DomainError, IdempotencyKeyReused) as e:
            items[n] = BatchItem(cmds[n].order_id, status_of(e), error=e)
        except IntegrityError:
            raced.append(n)  # a concurrent writer got there: placed alone, with retries
    to_save = [(n, d) for n, d in decided if d.aggregates]
    position = 0
    try:
        if to_save:
            app.ensure_keys([c for _, d in to_save for c in d.new_customers])
            recordings = app.save(*(a for _, d in to_save for a in d.aggregates))
            position = recordings[-1].notification.id
    except IntegrityError:
        again = [n for n, _ in to_save]
        half = len(again) // 2 or 1
        for part in (again[:half], again[half:]):
            if part:
                position = max(position, _place_round(app, cmds, part, items, status_of))
    for n, d in decided:
        if items[n] is None:
            assert d.result is not None
            items[n] = BatchItem(cmds[n].order_id, d.result.status, d.result.body)
            position = max(position, d.result.position)
    if raced:
        position = max(position, _one_by_one(app, cmds, raced, items, status_of))
    return position


def _one_by_one(
    app: Membercore,
    cmds: Sequence[PlaceOrder],
    indexes: Sequence[int],
    items: list[BatchItem | None],
    status_of: Callable[[Exception], int],
) -> int:
    position = 0
    for n in indexes:
        try:
            result = place_order(app, cmds[n])
        except (DomainError, IdempotencyKeyReused) as e:
            items[n] = BatchItem(cmds[n].order_id, status_of(e), error=e)
            continue
        items[n] = BatchItem(cmds[n].order_id, result.status, result.body)
        position = max(position, result.position)
    return position


# -- refunds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundOrder:
    refund_id: str
    amount: int | None = None
    lines: Mapping[str, int] | None = None


def _refund_request(cmd: RefundOrder) -> dict[str, Any]:
    return {
        "refund_id": cmd.refund_id,
        "amount": cmd.amount,
        "lines": dict(sorted(cmd.lines.items())) if cmd.lines is not None else None,
    }


def refund_order(app: Membercore, channel: str, order_id: str, cmd: RefundOrder) -> OrderResult:
    """Refund part of an order by amount or by lines: reverse exactly the points that part
    earned (from the order's own lots first; what was already spent follows the point type's
    refund policy), take the spend back from level qualification, and reassess levels.

    Partial refunds accumulate; the total never exceeds the order (409 refund_exceeds_order).
    The same refund again is a replay; the same refund id with another body is refused.
    """
    if (cmd.amount is None) == (cmd.lines is None):
        raise InvalidInput([FieldProblem("amount", "give exactly one of amount, lines")])
    if cmd.lines is not None and not cmd.lines:
        raise InvalidInput([FieldProblem("lines", "name at least one line")])
    print_ = fingerprint(_refund_request(cmd))

    def attempt(first: bool) -> OrderResult:
        at = app.clock()
        order = _existing(app, Order.id_for(channel, order_id))
        if order is None:
            raise OrderNotFound(channel, order_id)
        if cmd.refund_id in order.refunds:
            stored_print, outcome = order.refunds[cmd.refund_id]
            if stored_print != print_:
                raise IdempotencyKeyReused(f"refund {cmd.refund_id!r}")
            return OrderResult(200, dict(outcome), app.last_position_of(order.id))
        plan = order.plan_refund(cmd.refund_id, amount=cmd.amount, lines=cmd.lines)
        rules = loyalty_rules(app, order.placed_at)
        # The buyer may since have been merged into another customer: their lots moved there.
        customer = _follow_merges(app, load_customer(app, order.customer_id), erased_ok=True)
        lot_id = f"order:{channel}:{order_id}"
        accounts: list[Aggregate] = []
        reversals: list[dict[str, Any]] = []
        for code, points in plan.reversed.items():
            account = _account(app, customer.id, code, at)
            if account.closed:
                # The buyer was merged away after this attempt loaded them: the retry follows.
                raise IntegrityError(f"customer {customer.id} merged concurrently")
            pt = rules.point_types.get(code)
            reversal = account.reverse(
                lot_id,
                points,
                reversal_id=f"refund:{cmd.refund_id}",
                policy=pt.refund_policy if pt else "negative",
                burn_order=pt.burn_order if pt else "soonest_expiry",
                at=at,
            )
            accounts.append(account)
            reversals.append(
                {
                    "point_type": code,
                    "reversed": points,
                    "debt": reversal.debt,
                    "shortfall": reversal.shortfall,
                }
            )
        levels = qualify(
            app,
            customer.id,
            tuple(customer.roles),
            rules,
            {"spend": -plan.amount, **{c: -n for c, n in plan.reversed.items()}},
            entry_id=f"refund:{channel}:{order_id}:{cmd.refund_id}",
            effective_at=order.placed_at,
            at=at,
        )
        outcome = {
            "refund_id": cmd.refund_id,
            "order_id": order_id,
            "channel": channel,
            "customer_id": str(order.customer_id),
            "amount": plan.amount,
            "lines": [{"line_id": k, "amount": v} for k, v in plan.by_portion.items()],
            "refunded_total": order.refunded_total + plan.amount,
            "points": reversals,
            "levels": levels.changes,
            "commissions": [],
        }
        order.refund(
            plan, fingerprint=print_, outcome=outcome, program_version=rules.version, at=at
        )
        recordings = app.save(*accounts, *levels.aggregates, order)
        return OrderResult(201, outcome, recordings[-1].notification.id)

    return app.retrying(attempt)
