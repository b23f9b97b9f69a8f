"""Who is this? The pure decision behind registering a customer from a set of identities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from domain.program import ProgramRules
from domain.values import Identity


@dataclass(frozen=True)
class Suggestion:
    """Another customer shares a value of a suggesting type: a merge candidate, not a match."""

    other_id: UUID
    identity_type: str


@dataclass(frozen=True)
class NewCustomer:
    """Nobody identified by the identities: register a new customer holding all of them."""

    identities: tuple[Identity, ...]
    suggestions: tuple[Suggestion, ...] = ()


@dataclass(frozen=True)
class Matched:
    """The identifying identities all belong to ``customer_id``; link the rest to it."""

    customer_id: UUID
    new_identities: tuple[Identity, ...]
    suggestions: tuple[Suggestion, ...] = ()


@dataclass(frozen=True)
class SamePerson:
    """Identifying identities of several customers: they are one person, to be merged first.

    ``reasons`` gives, per customer to merge, the identity type that identified it.
    """

    customer_ids: tuple[UUID, ...]
    reasons: dict[UUID, str] = field(default_factory=dict)


Decision = NewCustomer | Matched | SamePerson


def decide_registration(
    requested: Sequence[Identity],
    holders: Mapping[Identity, Sequence[UUID]],
    rules: ProgramRules,
) -> Decision:
    """Decide from the current holders of each requested identity (absent = nobody).

    ``identify`` types match their holder; ``suggest`` types never match but name merge
    candidates; ``none`` types are only held. Limits on shared values are the claim's to enforce.
    """
    unique = tuple(dict.fromkeys(requested))
    matched: dict[UUID, str] = {}
    for identity in unique:
        if rules.identity_rule(identity.type).match == "identify":
            for holder in holders.get(identity, ()):
                matched.setdefault(holder, identity.type)
    suggestions = tuple(
        dict.fromkeys(
            Suggestion(h, i.type)
            for i in unique
            if rules.identity_rule(i.type).match == "suggest"
            for h in holders.get(i, ())
            if h not in matched
        )
    )
    if len(matched) > 1:
        return SamePerson(tuple(matched), matched)
    if not matched:
        return NewCustomer(unique, suggestions)
    (holder,) = matched
    return Matched(
        holder,
        tuple(i for i in unique if holder not in holders.get(i, ())),
        tuple(s for s in suggestions if s.other_id != holder),
    )
