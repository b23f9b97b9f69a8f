"""Customer commands: RegisterCustomer (with identity matching)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.app import Membercore
from application.context import CommandContext
from domain.customer import Customer, IdentityClaim
from domain.errors import FieldProblem, InvalidInput, UnknownReferrer
from domain.registration import Matched, NewCustomer, decide_registration
from domain.values import Identity, optional_text, parse_role

DEFAULT_ROLES = ("consumer",)


@dataclass(frozen=True)
class RegisterCustomer:
    identities: Sequence[tuple[str, str]]
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    roles: Sequence[str] | None = None
    owner: str | None = None
    referrer_id: UUID | None = None


@dataclass(frozen=True)
class Registration:
    customer_id: UUID
    matched: bool
    position: int
    # True when the response was stored for idempotent replay together with the events.
    completed: bool

    @property
    def status(self) -> int:
        return 200 if self.matched else 201

    def body(self) -> dict[str, Any]:
        return {"customer_id": str(self.customer_id), "matched": self.matched}


def _parse_identities(raw: Sequence[tuple[str, str]]) -> tuple[Identity, ...]:
    if not raw:
        raise InvalidInput([FieldProblem("identities", "at least one identity is required")])
    problems: list[FieldProblem] = []
    parsed: list[Identity] = []
    for n, (type_, value) in enumerate(raw):
        try:
            parsed.append(Identity.parse(type_, value, field=f"identities[{n}]"))
        except InvalidInput as e:
            problems.extend(e.problems)
    if problems:
        raise InvalidInput(problems)
    return tuple(dict.fromkeys(parsed))


def _current_owners(app: Membercore, identities: Sequence[Identity]) -> dict[Identity, UUID]:
    owners: dict[Identity, UUID] = {}
    for identity in identities:
        try:
            claim: IdentityClaim = app.repository.get(identity.claim_id)
        except AggregateNotFoundError:
            continue
        owners[identity] = claim.customer_id
    return owners


def register_customer(app: Membercore, cmd: RegisterCustomer, ctx: CommandContext) -> Registration:
    """Register a customer, or match the one already holding any of the identities.

    The first attempt assumes the identities are new: creating their claims at version 1 fails in
    the event store if anyone holds one, and only then are the owners looked up. So the common
    case reads nothing, and two racing registrations of one identity yield one customer.
    """
    identities = _parse_identities(cmd.identities)
    roles = tuple(
        parse_role(r, field=f"roles[{n}]") for n, r in enumerate(cmd.roles or DEFAULT_ROLES)
    )
    email = optional_text(cmd.email, field="email")
    name = optional_text(cmd.name, field="name")
    phone = optional_text(cmd.phone, field="phone")
    owner = optional_text(cmd.owner, field="owner")
    if cmd.referrer_id is not None and not isinstance(_get_or_none(app, cmd.referrer_id), Customer):
        raise UnknownReferrer(cmd.referrer_id)
    customer_id = ctx.new_id()

    def attempt(first: bool) -> Registration:
        owners = {} if first else _current_owners(app, identities)
        decision = decide_registration(identities, owners)
        at = app.clock()
        if isinstance(decision, NewCustomer):
            customer = Customer.register(
                customer_id=customer_id,
                identities=decision.identities,
                name=name,
                phone=phone,
                email=email.lower() if email else None,
                birthday=cmd.birthday,
                attributes=cmd.attributes,
                roles=roles,
                owner=owner,
                referrer_id=cmd.referrer_id,
                actor=ctx.actor,
                at=at,
            )
            claims = [IdentityClaim.claim(i, customer.id, at=at) for i in decision.identities]
            return _save(app, ctx, Registration(customer.id, False, 0, False), customer, *claims)
        assert isinstance(decision, Matched)
        if not decision.new_identities:
            position = app.last_position_of(decision.customer_id)
            return Registration(decision.customer_id, True, position, False)
        customer = app.repository.get(decision.customer_id)
        customer.link_identities(decision.new_identities, actor=ctx.actor, at=at)
        claims = [IdentityClaim.claim(i, customer.id, at=at) for i in decision.new_identities]
        return _save(app, ctx, Registration(customer.id, True, 0, False), customer, *claims)

    return app.retrying(attempt)


def _save(
    app: Membercore, ctx: CommandContext, result: Registration, *aggregates: Any
) -> Registration:
    side_effect = ctx.complete(result.status, result.body())
    recordings = app.save(*aggregates, side_effect=side_effect)
    position = recordings[-1].notification.id if recordings else 0
    return Registration(result.customer_id, result.matched, position, side_effect is not None)


def _get_or_none(app: Membercore, aggregate_id: UUID) -> Any:
    try:
        return app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        return None
