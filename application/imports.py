"""Bulk import of customers: rows decoded and checked, then registered a chunk at a time.

``register_customer`` costs a round trip or more per row. An import instead decides a whole chunk
in memory and writes it in one transaction:

1. each row is decoded (an NDJSON object with the POST /v1/customers fields, or a CSV record) and
   checked by ``parse_registration``, exactly as a request is; a bad row becomes a
   :class:`Rejection` with its row number and every problem found;
2. the identity claims of the whole chunk (and the row's customer id) are read in one query;
3. each row is decided with ``decide_registration`` in row order, against the stored holders and
   the customers registered by earlier rows of the same chunk (a later row sharing an identity
   with an earlier one matches it);
4. the chunk's events (``Customer.Registered``, ``IdentityClaim.Claimed``...) are saved at once,
   after the new customers' data keys are made in one round trip.

Rows whose decision involves stored customers beyond a plain match (linking a new identity to a
stored customer, merging several, sharing a stored claim, a referrer to check) are *deferred*:
they go through ``register_customer`` one by one after the chunk's save, in row order, and so
does every later row of the chunk sharing an identity with them. If the chunk's save collides
with a concurrent writer (a claim taken meanwhile), the whole chunk is registered row by row.

Customer ids are derived from (tenant, source fingerprint, row number), so importing the same
rows again produces the same events, and a row already imported is ``matched`` (by its
identities' claims, or by its customer id) without writing anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid5

import msgspec
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from application.app import Membercore
from application.errors import ConcurrencyConflict
from application.kernel import Caller, execute
from application.registration import (
    ParsedRegistration,
    RegisterCustomer,
    parse_registration,
)
from domain.customer import Customer
from domain.errors import DomainError, InvalidInput
from domain.identity_claim import IdentityClaim
from domain.program import ProgramRules
from domain.registration import Matched, NewCustomer, SamePerson, decide_registration
from domain.values import Identity

# Fixed forever: customer ids of imported rows are uuid5(IMPORT_NAMESPACE, tenant:source:row).
IMPORT_NAMESPACE = UUID("5b0b6f36-5d0e-4f4a-9a55-2f1c3f0e7a41")
K = TypeVar("K")
CUSTOMER_TOPIC = get_topic(Customer)
CLAIM_TOPIC = get_topic(IdentityClaim)

# -- row formats ----------------------------------------------------------------------------


class IdentityIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    value: str


class CustomerRow(msgspec.Struct, forbid_unknown_fields=True):
    """One NDJSON line: the POST /v1/customers body (``identities`` may be left out when a
    ``phone`` or ``email`` is given: they are identities too)."""

    identities: list[IdentityIn] = msgspec.field(default_factory=list)
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    roles: list[str] | None = None
    owner: str | None = None
    referrer_id: UUID | None = None
    channel: str | None = None
    store_id: str | None = None


# The same bounds as the HTTP body (api/schemas.py RegisterCustomerBody).
LIMITS: dict[str, int] = {
    "name": 256,
    "phone": 64,
    "email": 254,
    "owner": 128,
    "channel": 64,
    "store_id": 128,
}
MAX_IDENTITIES = 50
MAX_ATTRIBUTES = 200
MAX_ROLES = 20

_ndjson = msgspec.json.Decoder(CustomerRow)
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.S)


@dataclass(frozen=True)
class RowProblem:
    """One problem of one row: the field (None: the row as a whole) and why."""

    field: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Rejection:
    """A row that was not imported, with every problem found (``code`` as the API's)."""

    row: int
    code: str
    errors: tuple[RowProblem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "errors": [e.to_dict() for e in self.errors]}

    @classmethod
    def of(cls, row: int, error: DomainError | ConcurrencyConflict) -> Rejection:
        if isinstance(error, InvalidInput):
            problems = tuple(RowProblem(p.field, p.reason) for p in error.problems)
        else:
            problems = (RowProblem(None, error.detail),)
        return cls(row, error.code, problems)


class BadRow(Exception):
    """A row that cannot be read as given (malformed JSON, wrong types, a bad CSV cell).

    ``command`` is the rest of the row when it can still be checked, so that every problem of
    the row is reported at once.
    """

    def __init__(
        self, problems: Sequence[RowProblem], command: RegisterCustomer | None = None
    ) -> None:
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = tuple(problems)
        self.command = command


def _bounds(row: CustomerRow) -> list[RowProblem]:
    problems = [
        RowProblem(name, f"must be at most {limit} characters")
        for name, limit in LIMITS.items()
        if (value := getattr(row, name)) is not None and len(value) > limit
    ]
    if len(row.identities) > MAX_IDENTITIES:
        problems.append(RowProblem("identities", f"at most {MAX_IDENTITIES} identities"))
    if len(row.attributes) > MAX_ATTRIBUTES:
        problems.append(RowProblem("attributes", f"at most {MAX_ATTRIBUTES} attributes"))
    if row.roles is not None and len(row.roles) > MAX_ROLES:
        problems.append(RowProblem("roles", f"at most {MAX_ROLES} roles"))
    return problems


def _command(row: CustomerRow, problems: Sequence[RowProblem] = ()) -> RegisterCustomer:
    problems = [*problems, *_bounds(row)]
    command = RegisterCustomer(
        identities=[(i.type, i.value) for i in row.identities],
        name=row.name,
        phone=row.phone,
        email=row.email,
        birthday=row.birthday,
        attributes=row.attributes,
        roles=row.roles,
        owner=row.owner,
        referrer_id=row.referrer_id,
        channel=row.channel,
        store_id=row.store_id,
    )
    if problems:
        raise BadRow(problems, command)
    return command


def decode_ndjson(line: bytes) -> RegisterCustomer:
    """One NDJSON line as a registration command; :class:`BadRow` when it cannot be read."""
    try:
        row = _ndjson.decode(line)
    except msgspec.ValidationError as e:
        match = _AT.match(str(e))
        path = match["path"] if match and match["path"] else None
        reason = match["reason"] if match else str(e)
        unknown = _UNKNOWN.search(reason)
        if unknown:
            path = f"{path}.{unknown[1]}" if path else unknown[1]
        raise BadRow([RowProblem(path, reason)]) from None
    except msgspec.DecodeError as e:
        raise BadRow([RowProblem(None, f"not a JSON object: {e}")]) from None
    except UnicodeDecodeError:  # msgspec's answer to invalid UTF-8 inside a string
        raise BadRow([RowProblem(None, "not valid UTF-8")]) from None
    return _command(row)


CSV_FIELDS = ("name", "phone", "email", "birthday", "channel", "store_id", "owner")
CSV_OTHER = ("identity_type", "identity_value", "identities", "roles", "referrer_id")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class CsvHeaderError(ValueError):
    """The header names a column the import does not know (nothing is imported)."""


@dataclass(frozen=True)
class CsvLayout:
    """Which column holds what, from the header row.

    Columns: ``name``, ``phone``, ``email``, ``birthday`` (YYYY-MM-DD), ``channel``,
    ``store_id``, ``owner``, ``roles`` (``a|b``), ``referrer_id``; identities as
    ``identity_type`` + ``identity_value``, ``identities`` (``type:value|type:value``) and/or one
    ``identity.<type>`` column per type; custom attributes as ``attr.<code>``. Empty cells are
    absent values.
    """

    header: tuple[str, ...]

    @classmethod
    def of(cls, header: Sequence[str]) -> CsvLayout:
        names = tuple(h.strip().lstrip("\ufeff").strip() for h in header)
        unknown = [
            n
            for n in names
            if n not in CSV_FIELDS
            and n not in CSV_OTHER
            and not (n.startswith("attr.") and len(n) > 5)
            and not (n.startswith("identity.") and len(n) > 9)
        ]
        if unknown:
            raise CsvHeaderError(f"unknown CSV columns: {', '.join(unknown)}")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise CsvHeaderError(f"duplicated CSV columns: {', '.join(duplicated)}")
        if "identity_type" in names and "identity_value" not in names:
            raise CsvHeaderError("identity_type needs an identity_value column")
        if "identity_value" in names and "identity_type" not in names:
            raise CsvHeaderError("identity_value needs an identity_type column")
        return cls(names)

    def decode(self, record: Sequence[str], rules: ProgramRules) -> RegisterCustomer:
        if len(record) != len(self.header):
            raise BadRow(
                [RowProblem(None, f"has {len(record)} cells, the header {len(self.header)}")]
            )
        cells = {k: v.strip() for k, v in zip(self.header, record, strict=True) if v.strip()}
        problems = [RowProblem(k, "is not valid UTF-8") for k, v in cells.items() if "\ufffd" in v]
        identities: list[tuple[str, str]] = []
        if "identity_type" in cells or "identity_value" in cells:
            identities.append((cells.get("identity_type", ""), cells.get("identity_value", "")))
        for part in cells.get("identities", "").split("|"):
            if part.strip():
                type_, sep, value = part.partition(":")
                if not sep:
                    problems.append(RowProblem("identities", f"{part!r} is not type:value"))
                identities.append((type_.strip(), value.strip()))
        attributes: dict[str, Any] = {}
        for name, value in cells.items():
            if name.startswith("identity."):
                identities.append((name.removeprefix("identity."), value))
            elif name.startswith("attr."):
                code = name.removeprefix("attr.")
                typed = _attribute(value, code, rules, problems)
                if typed is not None:
                    attributes[code] = typed
        birthday: date | None = None
        if "birthday" in cells:
            try:
                birthday = date.fromisoformat(cells["birthday"])
            except ValueError:
                problems.append(RowProblem("birthday", "must be a date YYYY-MM-DD"))
        referrer: UUID | None = None
        if "referrer_id" in cells:
            try:
                referrer = UUID(cells["referrer_id"])
            except ValueError:
                problems.append(RowProblem("referrer_id", "must be a UUID"))
        roles = [r for r in cells.get("roles", "").split("|") if r.strip()] or None
        row = CustomerRow(
            identities=[IdentityIn(t, v) for t, v in identities],
            name=cells.get("name"),
            phone=cells.get("phone"),
            email=cells.get("email"),
            birthday=birthday,
            attributes=attributes,
            roles=roles,
            owner=cells.get("owner"),
            referrer_id=referrer,
            channel=cells.get("channel"),
            store_id=cells.get("store_id"),
        )
        return _command(row, problems)


def _attribute(value: str, code: str, rules: ProgramRules, problems: list[RowProblem]) -> Any:
    """A CSV cell as the type the program declares for the attribute (text otherwise)."""
    spec = rules.attributes.get(code) if rules.declared else None
    kind = spec.type if spec is not None else "string"
    if kind == "number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                problems.append(RowProblem(f"attributes.{code}", "must be a finite number"))
                return None
    if kind == "boolean":
        folded = value.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        problems.append(RowProblem(f"attributes.{code}", "must be true or false"))
        return None
    return value


# -- parsing (pure: may run in worker processes) ---------------------------------------------


@dataclass(frozen=True)
class ParsedRow:
    """A row checked like a request, with the claim id of each of its identities."""

    row: int
    reg: ParsedRegistration
    claim_ids: tuple[bytes, ...]  # UUID bytes: rows cross processes, ids key sets (cheaper)


Parsed = ParsedRow | Rejection
RawRow = tuple[int, Any]
"""(row number, the raw row: an NDJSON line as bytes, a CSV record as a list of cells, or the
:class:`RowProblem` that kept the reader from reading it)."""


def parse_rows(
    raws: Iterable[RawRow],
    rules: ProgramRules,
    claim_id: Callable[[Identity], UUID],
    layout: CsvLayout | None = None,
) -> list[Parsed]:
    """Decode and check ``raws`` (NDJSON lines, or CSV records when ``layout`` is given)."""
    out: list[Parsed] = []
    for row, raw in raws:
        if isinstance(raw, RowProblem):
            out.append(Rejection(row, InvalidInput.code, (raw,)))
            continue
        problems: list[RowProblem] = []
        try:
            cmd = decode_ndjson(raw) if layout is None else layout.decode(raw, rules)
        except BadRow as e:
            problems += e.problems
            if e.command is None:
                out.append(Rejection(row, InvalidInput.code, tuple(problems)))
                continue
            cmd = e.command
        try:
            reg = parse_registration(cmd, rules)
        except InvalidInput as e:
            problems += (RowProblem(p.field, p.reason) for p in e.problems)
        if problems:
            out.append(Rejection(row, InvalidInput.code, tuple(problems)))
            continue
        out.append(ParsedRow(row, reg, tuple(claim_id(i).bytes for i in reg.identities)))
    return out


def command_of(reg: ParsedRegistration) -> RegisterCustomer:
    """The registration command of a checked row (normalised values re-check to themselves)."""
    return RegisterCustomer(
        identities=[(i.type, i.value) for i in reg.identities],
        name=reg.name,
        phone=reg.phone,
        email=reg.email,
        birthday=reg.birthday,
        attributes=reg.attributes,
        roles=reg.roles,
        owner=reg.owner,
        referrer_id=reg.referrer_id,
        channel=reg.channel,
        store_id=reg.store_id,
    )


def customer_id_for(tenant: str, source: str, row: int) -> UUID:
    """The id an imported row's customer gets: the same for the same row of the same source."""
    return uuid5(IMPORT_NAMESPACE, f"{tenant}:{source}:{row}")


def registered_event(
    customer_id: UUID, reg: ParsedRegistration, *, actor: str, at: datetime
) -> Customer.Registered:
    """``Customer.register``'s event, built without the aggregate (tens of µs less per row).

    Must stay equal to what ``Customer.register`` records (a unit test compares them).
    """
    event: Customer.Registered = Customer.Registered(  # type: ignore[call-arg]
        originator_id=customer_id,
        originator_version=1,
        timestamp=at,
        originator_topic=CUSTOMER_TOPIC,
        identities=tuple(reg.identities),
        name=reg.name,
        phone=reg.phone,
        email=reg.email,
        birthday=reg.birthday,
        attributes={k: v for k, v in reg.attributes.items() if v is not None},
        roles=tuple(dict.fromkeys(reg.roles)),
        owner=reg.owner,
        referrer_id=reg.referrer_id,
        actor=actor,
        channel=reg.channel,
        store_id=reg.store_id,
    )
    return event


def claimed_event(
    identity: Identity, customer_id: UUID, *, claim_id: UUID, at: datetime
) -> IdentityClaim.Claimed:
    """``IdentityClaim.claim``'s event, built without the aggregate (a unit test compares)."""
    event: IdentityClaim.Claimed = IdentityClaim.Claimed(  # type: ignore[call-arg]
        originator_id=claim_id,
        originator_version=1,
        timestamp=at,
        originator_topic=CLAIM_TOPIC,
        identity_type=identity.type,
        customer_id=customer_id,
    )
    return event


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
        command = replace(command_of(row.reg), customer_id=self.customer_id(row.row))
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
    completed: bool = False

    @property
    def rate(self) -> float:
        return round(self.rows / self.seconds, 1) if self.seconds > 0 else 0.0

    @property
    def status(self) -> int:
        return 200

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
