"""Customer commands on one customer: identities (link, unlink), the profile, static tags.

Registration is in ``registration``; roles, ownership and the agent downline in
``relationships``; consent and erasure in ``privacy``; merges in ``merges``. Each handler loads
the customer (and the identity claims it touches, in one read), lets the aggregate decide, and
returns what to save. Repeating a command changes nothing and answers the customer as it is
(a tag carried already, an identity held already: nothing recorded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.app import Membercore, SideEffect
from application.context import CommandContext
from application.identities import (
    hold,
    load_claims,
    normalise_email,
    normalise_phone,
    parse_identities,
    suggest_on_link,
)
from application.kernel import Command, Decision, Outcome, handles
from application.loaders import load_customer
from application.program import program_rules
from domain.customer import Customer
from domain.customer_tags import parse_tag
from domain.errors import FieldProblem, InvalidInput
from domain.program import ProgramRules, validate_attributes
from domain.values import Identity, optional_text

MAX_TAGS_PER_REQUEST = 50


@dataclass(frozen=True)
class CustomerCommand(Command):
    """A command on one customer (the route's ``{customer_id}``)."""

    scope: ClassVar[tuple[str, ...]] = ("customer_id",)
    customer_id: UUID


def changed(
    customer: Customer,
    *others: Aggregate,
    detail: dict[str, Any],
    outcome: Outcome = Outcome.DONE,
    side_effect: SideEffect | None = None,
    after_commit: Callable[[], None] | None = None,
) -> Decision:
    """Save what the customer (and ``others``) recorded; nothing recorded answers the stream's
    last position."""
    body = {"customer_id": str(customer.id), **detail}
    return Decision(
        outcome,
        body,
        save=(customer, *others),
        side_effect=side_effect,
        position_of=customer.id,
        after_commit=after_commit,
    )


# -- identities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkIdentities(CustomerCommand):
    """Link identities explicitly. One of an ``identify`` type held by another customer is
    refused (409 naming the holder): merging two people is its own command, never a side effect
    of linking. One of a ``suggest`` type others hold is linked (up to the type's
    ``max_customers``) and records a merge candidate per holder, as a registration does."""

    operation = "LinkIdentities"
    identities: Sequence[tuple[str, str]]
    channel: str | None = None

    def __post_init__(self) -> None:
        if not self.identities:
            raise InvalidInput([FieldProblem("identities", "at least one identity is required")])


@dataclass(frozen=True)
class UnlinkIdentity(CustomerCommand):
    """Unlink one identity the customer holds (404 ``identity_not_held``, 409
    ``last_identity``)."""

    operation = "UnlinkIdentity"
    identity: tuple[str, str]
    channel: str | None = None


@handles(LinkIdentities)
def link_identities(app: Membercore, cmd: LinkIdentities, ctx: CommandContext) -> Decision:
    rules = program_rules(app)
    identities = parse_identities(cmd.identities, rules)
    via = optional_text(cmd.channel, field="channel")
    at = app.clock()
    customer = load_customer(app, cmd.customer_id)
    customer.require_active()
    new = tuple(i for i in identities if i not in customer.identities)
    claims = load_claims(app, new)
    claimed: list[Aggregate] = []
    for identity in new:
        claimed.extend(hold(app, identity, customer.id, claims.get(identity), rules, at))
    customer.link_identities(new, actor=ctx.actor, at=at, channel=via)
    suggest_on_link(customer, new, claims, rules, actor=ctx.actor, at=at)
    # Types only: the answer is stored for idempotent replay, outside erasure's reach.
    return changed(customer, *claimed, detail={"linked": [i.type for i in new]})


@handles(UnlinkIdentity)
def unlink_identity(app: Membercore, cmd: UnlinkIdentity, ctx: CommandContext) -> Decision:
    rules = program_rules(app)
    (identity,) = parse_identities([cmd.identity], rules, field="identity")
    via = optional_text(cmd.channel, field="channel")
    at = app.clock()
    customer = load_customer(app, cmd.customer_id)
    customer.unlink_identities([identity], actor=ctx.actor, at=at, channel=via)
    claims = load_claims(app, [identity])
    released: list[Aggregate] = []
    if identity in claims:
        claims[identity].remove_holder(customer.id, at=at)
        released.append(claims[identity])
    return changed(customer, *released, detail={"unlinked": [identity.type]})


# -- profile ----------------------------------------------------------------------------------

EDITABLE = ("name", "phone", "email", "birthday", "channel", "store_id")


@dataclass(frozen=True)
class ChangeProfile(CustomerCommand):
    """PATCH: the given ``changes`` (profile fields; None clears one) and ``attributes``; a
    changed phone or email moves its identity. ``channel`` is the one the change came
    through (``changes`` may set the profile's own ``channel``)."""

    operation = "ChangeProfile"
    changes: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    channel: str | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.changes if name not in EDITABLE]
        if unknown:
            raise InvalidInput([FieldProblem(n, "is not an editable field") for n in unknown])


def _profile_changes(cmd: ChangeProfile, rules: ProgramRules) -> dict[str, Any]:
    """The wanted values by field path (``attributes.<code>`` for attributes), all checked;
    every problem reported at once."""
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    for name, value in cmd.changes.items():
        try:
            if value is None or name == "birthday":
                values[name] = value
            elif name == "phone":
                text = optional_text(value, field="phone")
                values[name] = (
                    normalise_phone(text, rules.default_country, field="phone") if text else None
                )
            elif name == "email":
                text = optional_text(value, field="email")
                values[name] = normalise_email(text, field="email") if text else None
            else:
                values[name] = optional_text(value, field=name)
        except InvalidInput as e:
            problems.extend(e.problems)
    try:
        checked = validate_attributes(cmd.attributes, rules.attributes, declared=rules.declared)
    except InvalidInput as e:
        problems.extend(e.problems)
        checked = {}
    for code, spec in rules.attributes.items():
        if spec.required and code in checked and checked[code] is None:
            problems.append(FieldProblem(f"attributes.{code}", "is required and cannot be cleared"))
    if problems:
        raise InvalidInput(problems)
    return {**values, **{f"attributes.{k}": v for k, v in checked.items()}}


@handles(ChangeProfile)
def change_profile(app: Membercore, cmd: ChangeProfile, ctx: CommandContext) -> Decision:
    rules = program_rules(app)
    wanted = _profile_changes(cmd, rules)
    at, via = app.clock(), cmd.channel
    customer = load_customer(app, cmd.customer_id)
    before = customer.fields()
    effective = customer.change_profile(wanted, channel=via, actor=ctx.actor, at=at)
    moved = [kind for kind in ("phone", "email") if kind in effective]
    linked = [Identity(k, effective[k]) for k in moved if effective[k] is not None]
    unlinked = [
        Identity(k, before[k])
        for k in moved
        if before.get(k) is not None and Identity(k, before[k]) in customer.identities
    ]
    claims = load_claims(app, [*linked, *unlinked])
    touched: list[Aggregate] = []
    for identity in linked:
        touched.extend(hold(app, identity, customer.id, claims.get(identity), rules, at))
        customer.link_identities([identity], actor=ctx.actor, at=at, channel=via)
        suggest_on_link(customer, [identity], claims, rules, actor=ctx.actor, at=at)
    for identity in unlinked:
        if identity in claims:
            claims[identity].remove_holder(customer.id, at=at)
            touched.append(claims[identity])
        customer.unlink_identities([identity], actor=ctx.actor, at=at, channel=via)
    return changed(customer, *touched, detail={"changed": sorted(effective)})


# -- static tags --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddTags(CustomerCommand):
    """Put static tags on the customer; tags it carries already record nothing (so a repeat
    records nothing). Answers the tags added and every tag it carries, sorted."""

    operation = "AddTags"
    tags: Sequence[str]
    channel: str | None = None

    def __post_init__(self) -> None:
        problems: list[FieldProblem] = []
        for n, value in enumerate(self.tags):
            try:
                parse_tag(value, field=f"tags[{n}]")
            except InvalidInput as e:
                problems.extend(e.problems)
        if not self.tags:
            problems.append(FieldProblem("tags", "at least one tag is required"))
        if len(self.tags) > MAX_TAGS_PER_REQUEST:
            problems.append(
                FieldProblem("tags", f"at most {MAX_TAGS_PER_REQUEST} tags per request")
            )
        if problems:
            raise InvalidInput(problems)


@dataclass(frozen=True)
class RemoveTag(CustomerCommand):
    """Take one static tag off; one the customer does not carry records nothing (200)."""

    operation = "RemoveTag"
    tag: str
    channel: str | None = None

    def __post_init__(self) -> None:
        parse_tag(self.tag, field="tag")


@handles(AddTags)
def add_tags(app: Membercore, cmd: AddTags, ctx: CommandContext) -> Decision:
    tags = [parse_tag(t) for t in cmd.tags]
    via = optional_text(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    added = customer.add_tags(tags, actor=ctx.actor, at=app.clock(), channel=via)
    return changed(customer, detail={"added": list(added), "tags": sorted(customer.tags)})


@handles(RemoveTag)
def remove_tag(app: Membercore, cmd: RemoveTag, ctx: CommandContext) -> Decision:
    tag = parse_tag(cmd.tag, field="tag")
    via = optional_text(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    removed = customer.remove_tag(tag, actor=ctx.actor, at=app.clock(), channel=via)
    detail = {"removed": [tag] if removed else [], "tags": sorted(customer.tags)}
    return changed(customer, detail=detail)
