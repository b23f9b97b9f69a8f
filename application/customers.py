"""Customer commands: register (identity matching by the program's rules), identities, profile,
static tags.

Roles, ownership, consent and erasure are in their own modules; merges in ``merges``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.app import Membercore, both
from application.context import CommandContext
from application.identities import (
    holders_of,
    load_claims,
    normalise_email,
    normalise_phone,
    parse_identities,
)
from application.merges import load_customer, merge_customers
from application.program import program_rules
from domain.customer import Customer, IdentityClaim, parse_tag
from domain.errors import CannotMerge, CustomerNotFound, FieldProblem, InvalidInput, UnknownReferrer
from domain.program import ProgramRules, missing_required, validate_attributes
from domain.registration import (
    Matched,
    NewCustomer,
    SamePerson,
    Suggestion,
    decide_registration,
)
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
    channel: str | None = None
    store_id: str | None = None


@dataclass(frozen=True)
class Registration:
    customer_id: UUID
    matched: bool
    position: int
    # True when the response was stored for idempotent replay together with the events.
    completed: bool
    merged: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        return 200 if self.matched else 201

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"customer_id": str(self.customer_id), "matched": self.matched}
        if self.merged:
            body["merged"] = list(self.merged)
        return body


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


def register_customer(app: Membercore, cmd: RegisterCustomer, ctx: CommandContext) -> Registration:
    """Register a customer, or match the one identified by any of the identities.

    The first attempt assumes the identities are new: creating their claims at version 1 fails in
    the event store if anyone holds one, and only then are the holders looked up. So the common
    case reads nothing, and two racing registrations of one identity yield one customer.
    Identities of several customers that the program says identify a person are merged first
    (into the customer registered first), through the same merge path as a manual merge.
    """
    rules = program_rules(app)
    reg = parse_registration(cmd, rules)
    if reg.referrer_id is not None:
        try:
            load_customer(app, reg.referrer_id)
        except CustomerNotFound:
            raise UnknownReferrer(reg.referrer_id) from None
    customer_id = ctx.new_id()
    merged: list[str] = []

    def attempt(first: bool) -> Registration:
        claims = {} if first else load_claims(app, reg.identities)
        decision = decide_registration(reg.identities, holders_of(claims), rules)
        at = app.clock()
        if isinstance(decision, SamePerson):
            _merge_same_person(app, decision, ctx, merged)
            raise _Again
        changed: list[Aggregate] = []
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
            matched = False
            new = decision.identities
        else:
            assert isinstance(decision, Matched)
            customer = load_customer(app, decision.customer_id)
            customer.link_identities(decision.new_identities, actor=ctx.actor, at=at)
            matched = True
            new = decision.new_identities
        for identity in new:
            changed.extend(_hold(app, identity, customer.id, claims.get(identity), rules, at))
        _record_suggestions(customer, decision.suggestions, actor=ctx.actor, at=at)
        result = Registration(customer.id, matched, 0, False, tuple(merged))
        if matched and not customer.pending_events and not changed:
            return Registration(
                customer.id, True, app.last_position_of(customer.id), False, tuple(merged)
            )
        return _save(app, ctx, result, customer, *changed)

    while True:
        try:
            return app.retrying(attempt)
        except _Again:
            continue


class _Again(Exception):
    """Customers were merged: decide the registration again on the merged state."""


def _merge_same_person(
    app: Membercore, decision: SamePerson, ctx: CommandContext, merged: list[str]
) -> None:
    """Merge the customers the identities name into the oldest, one merge per source.

    Under an Idempotency-Key (``ctx.idempotent``: ``ctx.new_id`` is derived from the key) each
    merge id is ``uuid5(ctx.new_id(), "auto-merge:<source id>:<n>")``, ``n`` the first whose
    merge stream does not exist yet (an earlier merge of the pair may have been undone): a
    retried registration records the same merges, and two racing retries the same merge stream,
    of which the event store lets one be written. Without a key, merge ids are random.
    """
    # Local imports: only this function of the module is ours to change.
    from functools import partial
    from uuid import uuid5

    def _same(merge_id: UUID) -> UUID:
        return merge_id

    customers = sorted(
        (load_customer(app, c) for c in decision.customer_ids), key=lambda c: c.created_on
    )
    survivor, *sources = customers
    for source in sources:
        reason = f"identity:{decision.reasons[source.id]}"
        merge_ctx = CommandContext(actor=ctx.actor)
        if ctx.idempotent:
            base, n = ctx.new_id(), 0
            while (merge_id := uuid5(base, f"auto-merge:{source.id}:{n}")) in app.repository:
                n += 1
            merge_ctx = CommandContext(actor=ctx.actor, new_id=partial(_same, merge_id))
        try:
            result = merge_customers(app, survivor.id, source.id, merge_ctx, reason=reason)
        except CannotMerge:
            # A racing registration merged them first: decide again on the merged state.
            if (
                load_customer(app, source.id).merged_into
                or load_customer(app, survivor.id).merged_into
            ):
                continue
            raise
        merged.append(str(result.merge_id))


def _record_suggestions(
    customer: Customer, suggestions: Sequence[Suggestion], *, actor: str, at: Any
) -> None:
    """One ``MatchSuggested`` per other customer sharing a suggesting identity (a merge
    candidate listed by GET /v1/merge-candidates)."""
    for s in suggestions:
        if s.other_id != customer.id:
            customer.suggest_match(s.other_id, s.identity_type, actor=actor, at=at)


def _suggest_on_link(
    customer: Customer,
    identities: Sequence[Identity],
    claims: Mapping[Identity, IdentityClaim],
    rules: ProgramRules,
    *,
    actor: str,
    at: Any,
) -> None:
    """Linking (or PATCHing to) a value of a ``suggest`` type that others hold suggests them,
    exactly as registering with it does: the same decision over the claims' holders (this
    customer, already added as one, is no candidate of itself). ``identify`` types are left
    out: one held by another customer is refused (409) when its claim is taken, never merged
    silently."""
    suggesting = [i for i in identities if rules.identity_rule(i.type).match == "suggest"]
    if not suggesting:
        return
    decision = decide_registration(suggesting, holders_of(dict(claims)), rules)
    # Without identifying identities nobody is matched: the decision is a NewCustomer.
    assert isinstance(decision, NewCustomer)
    _record_suggestions(customer, decision.suggestions, actor=actor, at=at)


def _hold(
    app: Membercore,
    identity: Identity,
    customer_id: UUID,
    claim: IdentityClaim | None,
    rules: ProgramRules,
    at: Any,
) -> list[Aggregate]:
    """The claim making ``customer_id`` a holder of ``identity`` (new, or one more holder)."""
    if claim is None:
        return [IdentityClaim.claim(identity, customer_id, claim_id=app.claim_id(identity), at=at)]
    limit = rules.identity_rule(identity.type).max_customers
    return [claim] if claim.add_holder(customer_id, limit=limit, at=at) else []


def _save(
    app: Membercore, ctx: CommandContext, result: Registration, *aggregates: Any
) -> Registration:
    side_effect = ctx.complete(result.status, result.body())
    recordings = app.save(*aggregates, side_effect=side_effect)
    position = recordings[-1].notification.id if recordings else 0
    return Registration(
        result.customer_id, result.matched, position, side_effect is not None, result.merged
    )


# -- identities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Changed:
    """The outcome of a customer command: the position of its last event (or of the stream's
    last, when nothing needed recording) and a body."""

    customer_id: UUID
    position: int
    detail: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return {"customer_id": str(self.customer_id), **self.detail}


def save_changes(
    app: Membercore,
    ctx: CommandContext,
    customer: Customer,
    *others: Aggregate,
    detail: dict[str, Any] | None = None,
    status: int = 200,
    side_effect: Any = None,
) -> Changed:
    """Save what changed (nothing: answer the stream's last position), completing ``ctx``."""
    result = Changed(customer.id, 0, detail or {}, status)
    if not customer.pending_events and not any(o.pending_events for o in others):
        return Changed(customer.id, app.last_position_of(customer.id), detail or {}, status)
    effect = both(side_effect, ctx.complete(status, result.body()))
    recordings = app.save(customer, *others, side_effect=effect)
    position = recordings[-1].notification.id
    return Changed(customer.id, position, detail or {}, status, ctx.idempotent)


def link_identities(
    app: Membercore,
    customer_id: UUID,
    raw: Sequence[tuple[str, str]],
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    """Link identities explicitly. One of an ``identify`` type held by another customer is
    refused (409 naming the holder): merging two people is its own command, never a side effect
    of linking. One of a ``suggest`` type others hold is linked (up to the type's
    ``max_customers``) and records a merge candidate per holder, as a registration does."""
    rules = program_rules(app)
    identities = parse_identities(raw, rules)
    if not identities:
        raise InvalidInput([FieldProblem("identities", "at least one identity is required")])
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        at = app.clock()
        customer = load_customer(app, customer_id)
        customer.require_active()
        claims = load_claims(app, identities)
        changed: list[Aggregate] = []
        new = tuple(i for i in identities if i not in customer.identities)
        for identity in new:
            changed.extend(_hold(app, identity, customer.id, claims.get(identity), rules, at))
        customer.link_identities(new, actor=ctx.actor, at=at, channel=via)
        _suggest_on_link(customer, new, claims, rules, actor=ctx.actor, at=at)
        # Types only: the response is stored for idempotent replay, outside erasure's reach.
        linked = [i.type for i in new]
        return save_changes(app, ctx, customer, *changed, detail={"linked": linked})

    return app.retrying(attempt)


def unlink_identity(
    app: Membercore,
    customer_id: UUID,
    raw: tuple[str, str],
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    rules = program_rules(app)
    (identity,) = parse_identities([raw], rules, field="identity")
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        at = app.clock()
        customer = load_customer(app, customer_id)
        customer.unlink_identities([identity], actor=ctx.actor, at=at, channel=via)
        claims = load_claims(app, [identity])
        changed: list[Aggregate] = []
        if identity in claims:
            claims[identity].remove_holder(customer.id, at=at)
            changed.append(claims[identity])
        detail = {"unlinked": [identity.type]}
        return save_changes(app, ctx, customer, *changed, detail=detail)

    return app.retrying(attempt)


# -- profile ----------------------------------------------------------------------------------

EDITABLE = ("name", "phone", "email", "birthday", "channel", "store_id")


def change_profile(
    app: Membercore,
    customer_id: UUID,
    changes: Mapping[str, Any],
    attributes: Mapping[str, Any],
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    """PATCH: the given fields (None clears one); a changed phone or email moves its identity."""
    rules = program_rules(app)
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    for name, value in changes.items():
        try:
            if value is None or name == "birthday":
                values[name] = value
            elif name == "phone":
                text = optional_text(value, field="phone")
                values[name] = (
                    normalise_phone(text, rules.default_country, field="phone") if (text) else None
                )
            elif name == "email":
                text = optional_text(value, field="email")
                values[name] = normalise_email(text, field="email") if text else None
            else:
                values[name] = optional_text(value, field=name)
        except InvalidInput as e:
            problems.extend(e.problems)
    try:
        checked = validate_attributes(attributes, rules.attributes, declared=rules.declared)
    except InvalidInput as e:
        problems.extend(e.problems)
        checked = {}
    for code, spec in rules.attributes.items():
        if spec.required and code in checked and checked[code] is None:
            problems.append(FieldProblem(f"attributes.{code}", "is required and cannot be cleared"))
    if problems:
        raise InvalidInput(problems)
    wanted = {**values, **{f"attributes.{k}": v for k, v in checked.items()}}

    def attempt(first: bool) -> Changed:
        at = app.clock()
        customer = load_customer(app, customer_id)
        before = customer.fields()
        effective = customer.change_profile(wanted, channel=channel, actor=ctx.actor, at=at)
        changed: list[Aggregate] = []
        for kind in ("phone", "email"):
            if kind not in effective:
                continue
            old, new = before.get(kind), effective[kind]
            if new is not None:
                identity = Identity(kind, new)
                claims = load_claims(app, [identity])
                changed.extend(_hold(app, identity, customer.id, claims.get(identity), rules, at))
                customer.link_identities([identity], actor=ctx.actor, at=at, channel=channel)
                _suggest_on_link(customer, [identity], claims, rules, actor=ctx.actor, at=at)
            if old is not None and Identity(kind, old) in customer.identities:
                identity = Identity(kind, old)
                claims = load_claims(app, [identity])
                if identity in claims:
                    claims[identity].remove_holder(customer.id, at=at)
                    changed.append(claims[identity])
                customer.unlink_identities([identity], actor=ctx.actor, at=at, channel=channel)
        return save_changes(app, ctx, customer, *changed, detail={"changed": sorted(effective)})

    return app.retrying(attempt)


# -- static tags --------------------------------------------------------------------------------

MAX_TAGS_PER_REQUEST = 50


def add_tags(
    app: Membercore,
    customer_id: UUID,
    raw: Sequence[str],
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    """Put static tags on the customer; tags it carries already record nothing (adding only
    those is the idempotent answer to a repeat). Answers every tag it carries, sorted."""
    problems: list[FieldProblem] = []
    tags: list[str] = []
    for n, value in enumerate(raw):
        try:
            tags.append(parse_tag(value, field=f"tags[{n}]"))
        except InvalidInput as e:
            problems.extend(e.problems)
    if not raw:
        problems.append(FieldProblem("tags", "at least one tag is required"))
    if len(raw) > MAX_TAGS_PER_REQUEST:
        problems.append(FieldProblem("tags", f"at most {MAX_TAGS_PER_REQUEST} tags per request"))
    if problems:
        raise InvalidInput(problems)
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        added = customer.add_tags(tags, actor=ctx.actor, at=app.clock(), channel=via)
        detail = {"added": list(added), "tags": sorted(customer.tags)}
        return save_changes(app, ctx, customer, detail=detail)

    return app.retrying(attempt)


def remove_tag(
    app: Membercore,
    customer_id: UUID,
    raw: str,
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    """Take one static tag off; one the customer does not carry records nothing (200)."""
    tag = parse_tag(raw, field="tag")
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        removed = customer.remove_tag(tag, actor=ctx.actor, at=app.clock(), channel=via)
        detail = {"removed": [tag] if removed else [], "tags": sorted(customer.tags)}
        return save_changes(app, ctx, customer, detail=detail)

    return app.retrying(attempt)
