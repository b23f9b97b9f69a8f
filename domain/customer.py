"""The customer: one natural person, however many channel identities they have."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.values import Identity


class Customer(Aggregate):
    """Identities, personal data, attributes and roles of one person (assets live elsewhere)."""

    TOPIC = "membercore.Customer"

    class Created(Aggregate.Created):
        TOPIC = "membercore.Customer.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.Customer.Event"

    class Registered(Created):
        """A customer became known, holding ``identities``. Version 1."""

        TOPIC = "membercore.Customer.Registered"
        identities: tuple[Identity, ...]
        name: str | None
        phone: str | None
        email: str | None
        birthday: date | None
        attributes: dict[str, Any]
        roles: tuple[str, ...]
        owner: str | None
        referrer_id: UUID | None
        actor: str

    class IdentitiesLinked(Event):
        """More identities were found to be this customer's (a later registration matched). v1."""

        TOPIC = "membercore.Customer.IdentitiesLinked"
        identities: tuple[Identity, ...]
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate.identities = (*aggregate.identities, *self.identities)

    def __init__(
        self,
        identities: tuple[Identity, ...],
        name: str | None,
        phone: str | None,
        email: str | None,
        birthday: date | None,
        attributes: dict[str, Any],
        roles: tuple[str, ...],
        owner: str | None,
        referrer_id: UUID | None,
        actor: str,
    ) -> None:
        self.identities = tuple(identities)
        self.name = name
        self.phone = phone
        self.email = email
        self.birthday = birthday
        self.attributes = dict(attributes)
        self.roles = tuple(roles)
        self.owner = owner
        self.referrer_id = referrer_id

    @classmethod
    def register(
        cls,
        *,
        customer_id: UUID,
        identities: Iterable[Identity],
        name: str | None,
        phone: str | None,
        email: str | None,
        birthday: date | None,
        attributes: Mapping[str, Any],
        roles: Iterable[str],
        owner: str | None,
        referrer_id: UUID | None,
        actor: str,
        at: datetime,
    ) -> Customer:
        return cls._create(
            cls.Registered,
            id=customer_id,
            timestamp=at,
            identities=tuple(identities),
            name=name,
            phone=phone,
            email=email,
            birthday=birthday,
            attributes=dict(attributes),
            roles=tuple(dict.fromkeys(roles)),
            owner=owner,
            referrer_id=referrer_id,
            actor=actor,
        )

    def link_identities(self, identities: Iterable[Identity], *, actor: str, at: datetime) -> None:
        """Link identities not held yet; linking what is already held records nothing."""
        held = set(self.identities)
        new = tuple(i for i in dict.fromkeys(identities) if i not in held)
        if new:
            self.trigger_event(self.IdentitiesLinked, identities=new, actor=actor, timestamp=at)


class IdentityClaim(Aggregate):
    """Makes one identity unique per tenant: its id is derived from the identity.

    Two registrations racing for one identity both try to create version 1 of the same claim; the
    event store lets exactly one win. The claim stores the identity type and holder, never the
    value.
    """

    TOPIC = "membercore.IdentityClaim"

    class Created(Aggregate.Created):
        TOPIC = "membercore.IdentityClaim.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.IdentityClaim.Event"

    class Claimed(Created):
        TOPIC = "membercore.IdentityClaim.Claimed"
        identity_type: str
        customer_id: UUID

    def __init__(self, identity_type: str, customer_id: UUID) -> None:
        self.identity_type = identity_type
        self.customer_id = customer_id

    @classmethod
    def claim(cls, identity: Identity, customer_id: UUID, *, at: datetime) -> IdentityClaim:
        return cls._create(
            cls.Claimed,
            id=identity.claim_id,
            timestamp=at,
            identity_type=identity.type,
            customer_id=customer_id,
        )
