"""RegisterCustomer: register a customer, or match the one identified by any of the identities.

The handler reads the claims of every requested identity in one read, lets the pure
``domain.registration.decide_registration`` decide who this is, and returns what to save: a new
customer with a claim per identity, or the matched customer with the identities it lacked.
Two racing registrations of one identity both create version 1 of its claim: the event store
lets one win, and the kernel decides the other again on what won (a match).

Identities of several customers that the program says identify one person are merged first
(into the customer registered first), through the same path as a manual merge, then the
registration is decided again on the merged state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any, Protocol
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.context import CommandContext
from application.identities import (
    hold,
    holders_of,
    load_claims,
    normalise_email,
    normalise_phone,
    parse_identities,
    record_suggestions,
)
from application.kernel import Command, Decision, Outcome, handles
from application.loaders import load_customer, optional
from application.merges import merge_now
from application.program import program_rules
from domain.customer import Customer
from domain.errors import CannotMerge, FieldProblem, InvalidInput, UnknownReferrer
from domain.program import ProgramRules, missing_required, validate_attributes
from domain.registration import Matched, NewCustomer, SamePerson, decide_registration
from domain.values import Identity, optional_text, parse_role

DEFAULT_ROLES = ("consumer",)
# Each round merges every customer the identities name: another SamePerson after it can only
# come from registrations racing with this one (then the kernel decides it all again).
MAX_MERGE_ROUNDS = 3


@dataclass(frozen=True)
class RegisterCustomer(Command):
    """Identities as ``(type, value)`` pairs; ``customer_id`` is the id a new customer gets (an
    import gives its row's); by default it is derived from the ``Idempotency-Key`` (random
    without one)."""

    operation = "RegisterCustomer"
    identities: Sequence[tuple[str, str]]
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    roles: Sequence[str] | None = None
    owner: str | None = None
    referrer_id: UUID | None = None
    channel: str | None = None
    store_id: str | None = None
    customer_id: UUID | None = None

    @classmethod
    def of(cls, source: Registration) -> RegisterCustomer:
        """The command of what a request body, an import row or a checked registration carries
        (checked values check to themselves again)."""
        return cls(
            identities=[(i.type, i.value) for i in source.identities],
            name=source.name,
            phone=source.phone,
            email=source.email,
            birthday=source.birthday,
            attributes=source.attributes,
            roles=source.roles,
            owner=source.owner,
            referrer_id=source.referrer_id,
            channel=source.channel,
            store_id=source.store_id,
        )


class _IdentityFields(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def value(self) -> str: ...


class Registration(Protocol):
    """The fields of a registration, whatever carries them."""

    @property
    def identities(self) -> Sequence[_IdentityFields]: ...
    @property
    def name(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def birthday(self) -> date | None: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def roles(self) -> Sequence[str] | None: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def referrer_id(self) -> UUID | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def store_id(self) -> str | None: ...


@dataclass(frozen=True)
class ParsedRegistration:
    identities: tuple[Identity, ...]
    name: str | None
    phone: str | None
    email: str | None
    birthday: date | None
    attributes: dict[str, Any]
    roles: tuple[str, ...]
    owner: str | None
    referrer_id: UUID | None
    channel: str | None
    store_id: str | None


def parse_registration(cmd: RegisterCustomer, rules: ProgramRules) -> ParsedRegistration:
    """Everything checked before anything is read; all problems reported together."""
    problems: list[FieldProblem] = []

    def check(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as e:
            problems.extend(e.problems)
            return None

    identities: tuple[Identity, ...] = check(parse_identities, cmd.identities, rules) or ()
    phone = optional_text(cmd.phone, field="phone")
    email = optional_text(cmd.email, field="email")
    phone = check(normalise_phone, phone, rules.default_country, field="phone") if phone else None
    email = check(normalise_email, email, field="email") if email else None
    # A phone or email given as a field is also an identity, matched as the program says.
    extra = [Identity("phone", phone)] if phone else []
    extra += [Identity("email", email)] if email else []
    identities = tuple(dict.fromkeys((*identities, *extra)))
    if not identities and not problems:
        problems.append(FieldProblem("identities", "at least one identity is required"))
    roles = tuple(
        check(parse_role, r, field=f"roles[{n}]") for n, r in enumerate(cmd.roles or DEFAULT_ROLES)
    )
    for n, role in enumerate(roles):
        if role is not None and role not in rules.roles:
            problems.append(FieldProblem(f"roles[{n}]", f"role {role!r} is not in the program"))
    attributes = (
        check(validate_attributes, cmd.attributes, rules.attributes, declared=rules.declared) or {}
    )
    if not problems:
        check(missing_required, attributes, rules.attributes)
    if problems:
        raise InvalidInput(problems)
    return ParsedRegistration(
        identities=identities,
        name=optional_text(cmd.name, field="name"),
        phone=phone,
        email=email,
        birthday=cmd.birthday,
        attributes=attributes,
        roles=roles,
        owner=optional_text(cmd.owner, field="owner"),
        referrer_id=cmd.referrer_id,
        channel=optional_text(cmd.channel, field="channel"),
        store_id=optional_text(cmd.store_id, field="store_id"),
    )


@handles(RegisterCustomer)
def register_customer(app: Membercore, cmd: RegisterCustomer, ctx: CommandContext) -> Decision:
    """Created (201, ``matched: false``) for a new customer; done (200, ``matched: true``) for
    a match, saving only the identities it lacked (nothing when it holds them all)."""
    rules = program_rules(app)
    reg = parse_registration(cmd, rules)
    if reg.referrer_id is not None and optional(app, reg.referrer_id, Customer) is None:
        raise UnknownReferrer(reg.referrer_id)
    customer_id = cmd.customer_id or ctx.new_id()
    merged: list[str] = []
    for _ in range(MAX_MERGE_ROUNDS):
        claims = load_claims(app, reg.identities)
        decision = decide_registration(reg.identities, holders_of(claims), rules)
        if not isinstance(decision, SamePerson):
            break
        merged.extend(_merge_same_person(app, decision, ctx, base=customer_id))
    else:
        raise IntegrityError("customers with these identities are being registered concurrently")
    at = app.clock()
    if isinstance(decision, NewCustomer):
        customer = Customer.register(
            customer_id=customer_id,
            identities=decision.identities,
            name=reg.name,
            phone=reg.phone,
            email=reg.email,
            birthday=reg.birthday,
            attributes=reg.attributes,
            roles=reg.roles,
            owner=reg.owner,
            referrer_id=reg.referrer_id,
            actor=ctx.actor,
            at=at,
            channel=reg.channel,
            store_id=reg.store_id,
        )
        new = decision.identities
    else:
        assert isinstance(decision, Matched)
        customer = load_customer(app, decision.customer_id)
        customer.link_identities(decision.new_identities, actor=ctx.actor, at=at)
        new = decision.new_identities
    changed: list[Aggregate] = []
    for identity in new:
        changed.extend(hold(app, identity, customer.id, claims.get(identity), rules, at))
    record_suggestions(customer, decision.suggestions, actor=ctx.actor, at=at)
    matched = isinstance(decision, Matched)
    body: dict[str, Any] = {"customer_id": str(customer.id), "matched": matched}
    if merged:
        body["merged"] = merged
    outcome = Outcome.DONE if matched else Outcome.CREATED
    return Decision(outcome, body, save=(customer, *changed), position_of=customer.id)


def _merge_same_person(
    app: Membercore, decision: SamePerson, ctx: CommandContext, *, base: UUID
) -> list[str]:
    """Merge the customers the identities name into the oldest, one merge per source; answers
    the merge ids.

    Each merge id is ``uuid5(base, "auto-merge:<source id>:<n>")``, ``n`` the first whose merge
    stream does not exist yet (an earlier merge of the pair may have been undone). ``base`` is
    derived from the Idempotency-Key (or is the import row's id): a retried registration records
    the same merges, and two racing retries the same merge stream, of which the event store
    lets one be written. Without a key ``base`` is random, and so are the merge ids.
    """
    customers = sorted(
        (load_customer(app, c) for c in decision.customer_ids), key=lambda c: c.created_on
    )
    survivor, *sources = customers
    merged: list[str] = []
    for source in sources:
        reason = f"identity:{decision.reasons[source.id]}"
        n = 0
        while (merge_id := uuid5(base, f"auto-merge:{source.id}:{n}")) in app.repository:
            n += 1
        merge_ctx = CommandContext(actor=ctx.actor, new_id=partial(_same, merge_id))
        try:
            merged_id = merge_now(app, survivor.id, source.id, merge_ctx, reason=reason)
        except CannotMerge:
            # A racing registration merged them first: decide again on the merged state.
            if (
                load_customer(app, source.id).merged_into
                or load_customer(app, survivor.id).merged_into
            ):
                continue
            raise
        merged.append(str(merged_id))
    return merged


def _same(merge_id: UUID) -> UUID:
    return merge_id
