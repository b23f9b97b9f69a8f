"""Deciding a chunk of parsed rows in memory (``CustomerImport.plan``) and writing it in one
transaction (``CustomerImport.write``), with the rows that need more registered one by one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.errors import ConcurrencyConflict
from application.imports.events import claimed_event, registered_event
from application.imports.rows import Parsed, ParsedRow, Rejection
from application.kernel import Caller, execute
from application.registration import RegisterCustomer
from domain.customer import Customer
from domain.errors import DomainError
from domain.identity_claim import IdentityClaim
from domain.program import ProgramRules
from domain.registration import Matched, NewCustomer, SamePerson, decide_registration
from domain.values import Identity

K = TypeVar("K")

# -- deciding and writing a chunk ------------------------------------------------------------


class StoredStreams(Protocol):
    """Reads stored streams for a chunk, each in one query."""

    def claims(
        self, claim_ids: Sequence[bytes], customer_ids: Sequence[UUID]
    ) -> tuple[Mapping[bytes, Sequence[Any]], Set[UUID]]:
        """The events of the claims that exist (by id bytes), and which customers exist."""

    def customers(self, customer_ids: Sequence[UUID]) -> Mapping[UUID, Sequence[Any]]:
        """The events of the customers that exist."""


@dataclass
class _New:
    """A stream started in this chunk: its first event, and the aggregate once it is needed."""

    created: Any
    aggregate: Any = None

    def materialise(self) -> Any:
        if self.aggregate is None:
            self.aggregate = self.created.mutate(None)
        return self.aggregate

    @property
    def holders(self) -> tuple[UUID, ...]:
        if self.aggregate is None:
            return (self.created.customer_id,)
        holders: tuple[UUID, ...] = self.aggregate.holders
        return holders


def _aggregates(streams: Mapping[K, Sequence[Any]]) -> dict[K, Any]:
    """Each stream's aggregate, its events applied in order."""
    out: dict[K, Any] = {}
    for stream_id, events in streams.items():
        aggregate: Any = None
        for event in events:
            aggregate = event.mutate(aggregate)
        out[stream_id] = aggregate
    return out


def _active(customer: _New | Customer | None) -> bool:
    if isinstance(customer, _New):
        return True
    return customer is not None and not customer.erased and customer.merged_into is None


@dataclass
class ChunkPlan:
    """What deciding a chunk gave: the events to save at once and the rows left for later."""

    first_row: int
    last_row: int
    events: list[Any] = field(default_factory=list)
    new_customers: list[UUID] = field(default_factory=list)
    customers: list[UUID] = field(default_factory=list)  # stored ones read (keys cached)
    batch: list[ParsedRow] = field(default_factory=list)  # decided in memory, in row order
    deferred: list[ParsedRow] = field(default_factory=list)  # registered one by one after
    rejections: list[Rejection] = field(default_factory=list)
    registered: int = 0
    matched: int = 0
    touched: set[bytes] = field(default_factory=set)  # claim ids of every row of the chunk


@dataclass
class ChunkOutcome:
    first_row: int
    last_row: int
    rows: int
    registered: int
    matched: int
    rejections: list[Rejection]
    position: int  # of the chunk's last event (0: nothing written)
    customers: list[UUID]  # whose data keys the chunk made or read (caches may drop them)
    one_by_one: bool  # the batch collided with a concurrent writer: registered row by row


@dataclass
class Totals:
    rows: int = 0
    registered: int = 0
    matched: int = 0
    rejected: int = 0
    position: int = 0

    def add(self, outcome: ChunkOutcome) -> None:
        self.rows += outcome.rows
        self.registered += outcome.registered
        self.matched += outcome.matched
        self.rejected += len(outcome.rejections)
        self.position = max(self.position, outcome.position)


class CustomerImport:
    """Decides chunks of parsed rows (``plan``) and writes them (``write``).

    ``plan`` of chunk k+1 may run while ``write`` of chunk k is under way (another thread): rows
    of chunk k+1 touching an identity of chunk k (``busy``) are deferred, so they are decided
    only after chunk k is written.
    """

    def __init__(
        self,
        app: Membercore,
        stored: StoredStreams,
        rules: ProgramRules,
        *,
        customer_id: Callable[[int], UUID],
        actor: str,
    ) -> None:
        self.app = app
        self.stored = stored
        self.rules = rules
        self.customer_id = customer_id
        self.actor = actor

    # -- deciding ------------------------------------------------------------------------------

    def plan(self, rows: Sequence[Parsed], busy: Set[bytes] = frozenset()) -> ChunkPlan:
        plan = ChunkPlan(rows[0].row if rows else 0, rows[-1].row if rows else 0)
        parsed = [r for r in rows if isinstance(r, ParsedRow)]
        plan.rejections = [r for r in rows if isinstance(r, Rejection)]
        if not parsed:
            return plan
        ids = {r.row: self.customer_id(r.row) for r in parsed}
        wanted = list({k for r in parsed for k in r.claim_ids})
        plan.touched.update(wanted)
        stored_claims, existing = self.stored.claims(wanted, list(ids.values()))
        claims: dict[bytes, _New | IdentityClaim] = {
            k: c for k, c in _aggregates(stored_claims).items() if isinstance(c, IdentityClaim)
        }
        # Stored customers the rows will add identities (or suggestions) to, read at once.
        needed = self._stored_targets(parsed, ids, existing, claims)
        customers: dict[UUID, _New | Customer] = {}
        if needed:
            streams = self.stored.customers(sorted(needed))
            customers.update(
                (k, c) for k, c in _aggregates(streams).items() if isinstance(c, Customer)
            )
            plan.customers.extend(customers)
        deferred_claims: set[bytes] = set()
        at = self.app.clock()

        def defer(row: ParsedRow) -> None:
            plan.deferred.append(row)
            deferred_claims.update(row.claim_ids)

        for row in parsed:
            customer_id = ids[row.row]
            if customer_id in existing:  # imported before (its identities may have changed since)
                plan.matched += 1
                continue
            if row.reg.referrer_id is not None or any(
                k in busy or k in deferred_claims for k in row.claim_ids
            ):
                defer(row)
                continue
            claim_of = dict(zip(row.reg.identities, row.claim_ids, strict=True))
            holders = {
                i: claims[k].holders
                for i, k in claim_of.items()
                if k in claims and claims[k].holders
            }
            # Nobody holds any of the identities (a fresh import's every row): the decision is
            # decide_registration's for that case, without its per-identity rule lookups.
            decision = (
                decide_registration(row.reg.identities, holders, self.rules)
                if holders
                else NewCustomer(row.reg.identities)
            )
            if isinstance(decision, SamePerson):  # customers to merge first: the merge path's
                defer(row)
                continue
            if isinstance(decision, Matched):
                owner, new = decision.customer_id, decision.new_identities
                if not new and not decision.suggestions:
                    plan.matched += 1
                    continue
            else:
                owner, new = customer_id, decision.identities
            target = customers.get(owner)
            if (isinstance(decision, Matched) and not _active(target)) or not all(
                self._may_hold(claims.get(claim_of[i]), i, owner) for i in new
            ):
                defer(row)  # register_customer reports the refusal (or whatever changed)
                continue
            plan.batch.append(row)
            if isinstance(decision, NewCustomer):
                registered = registered_event(customer_id, row.reg, actor=self.actor, at=at)
                target = customers[customer_id] = _New(registered)
                plan.events.append(registered)
                plan.new_customers.append(customer_id)
                plan.registered += 1
            else:
                plan.matched += 1
            for identity in new:
                self._hold(plan, claims, identity, claim_of[identity], owner, at)
            if isinstance(decision, Matched) or decision.suggestions:
                customer = target.materialise() if isinstance(target, _New) else target
                assert customer is not None  # a new one, or an active stored one (checked)
                if isinstance(decision, Matched):
                    customer.link_identities(new, actor=self.actor, at=at)
                for s in decision.suggestions:
                    customer.suggest_match(s.other_id, s.identity_type, actor=self.actor, at=at)
                plan.events.extend(customer.collect_events())
        return plan

    def _stored_targets(
        self,
        parsed: Sequence[ParsedRow],
        ids: Mapping[int, UUID],
        existing: Set[UUID],
        claims: Mapping[bytes, _New | IdentityClaim],
    ) -> set[UUID]:
        """Stored customers some row may add identities or suggestions to (a superset)."""
        needed: set[UUID] = set()
        for row in parsed:
            if ids[row.row] in existing:
                continue
            holders = {
                i: claims[k].holders
                for i, k in zip(row.reg.identities, row.claim_ids, strict=True)
                if k in claims and claims[k].holders
            }
            if not holders:
                continue
            decision = decide_registration(row.reg.identities, holders, self.rules)
            if isinstance(decision, Matched) and (decision.new_identities or decision.suggestions):
                needed.add(decision.customer_id)
        return needed

    def _may_hold(
        self, claim: _New | IdentityClaim | None, identity: Identity, customer_id: UUID
    ) -> bool:
        if claim is None:
            return True
        holders = claim.holders
        limit = self.rules.identity_rule(identity.type).max_customers
        return customer_id in holders or len(holders) < limit

    def _hold(
        self,
        plan: ChunkPlan,
        claims: dict[bytes, _New | IdentityClaim],
        identity: Identity,
        claim_id: bytes,
        customer_id: UUID,
        at: datetime,
    ) -> None:
        """Make ``customer_id`` a holder of ``identity``: a new claim, or one more holder."""
        known = claims.get(claim_id)
        if known is None:
            event = claimed_event(identity, customer_id, claim_id=UUID(bytes=claim_id), at=at)
            claims[claim_id] = _New(event)
            plan.events.append(event)
            return
        claim = known.materialise() if isinstance(known, _New) else known
        limit = self.rules.identity_rule(identity.type).max_customers
        if claim.add_holder(customer_id, limit=limit, at=at):
            plan.events.extend(claim.collect_events())

    # -- writing -------------------------------------------------------------------------------

    def write(self, plan: ChunkPlan) -> ChunkOutcome:
        """Save the chunk's events in one transaction, then register the deferred rows."""
        outcome = ChunkOutcome(
            plan.first_row,
            plan.last_row,
            0,
            plan.registered,
            plan.matched,
            list(plan.rejections),
            0,
            [*plan.new_customers, *plan.customers],
            False,
        )
        if plan.events:
            try:
                self.app.ensure_keys(plan.new_customers)
                recordings = self.app.events.put(plan.events)
            except IntegrityError:
                return self._one_by_one(plan)
            outcome.position = recordings[-1].notification.id if recordings else 0
        for row in plan.deferred:
            self._register(row, outcome)
        return self._counted(outcome)

    def _one_by_one(self, plan: ChunkPlan) -> ChunkOutcome:
        """The batch collided with another writer: register its rows (and the deferred ones)
        one by one, in row order. Rows matched without writing anything stay matched."""
        matched_in_batch = len(plan.batch) - plan.registered
        outcome = ChunkOutcome(
            plan.first_row,
            plan.last_row,
            0,
            0,
            plan.matched - matched_in_batch,
            list(plan.rejections),
            0,
            [],
            True,
        )
        for row in sorted([*plan.batch, *plan.deferred], key=lambda r: r.row):
            self._register(row, outcome)
        return self._counted(outcome)

    @staticmethod
    def _counted(outcome: ChunkOutcome) -> ChunkOutcome:
        outcome.rejections.sort(key=lambda r: r.row)
        outcome.rows = outcome.registered + outcome.matched + len(outcome.rejections)
        return outcome

    def _register(self, row: ParsedRow, outcome: ChunkOutcome) -> None:
        command = replace(RegisterCustomer.of(row.reg), customer_id=self.customer_id(row.row))
        try:
            answer = execute(self.app, command, Caller(self.actor))
        except (DomainError, ConcurrencyConflict) as e:
            outcome.rejections.append(Rejection.of(row.row, e))
            return
        outcome.customers.append(UUID(answer.body["customer_id"]))
        if answer.body["matched"]:
            outcome.matched += 1
        else:
            outcome.registered += 1
        outcome.position = max(outcome.position, answer.position)


@dataclass(frozen=True)
class ImportSummary:
    """What an import answers (the API's 200 body; the CLI prints it)."""

    rows: int
    registered: int
    matched: int
    rejected: int
    seconds: float
    position: int
    rejections: tuple[Rejection, ...] = ()
    rejections_truncated: bool = False

    @property
    def rate(self) -> float:
        return round(self.rows / self.seconds, 1) if self.seconds > 0 else 0.0

    def body(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "registered": self.registered,
            "matched": self.matched,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "rate": self.rate,
            "rejections": [r.to_dict() for r in self.rejections],
            "rejections_truncated": self.rejections_truncated,
        }
