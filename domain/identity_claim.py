"""The identity claim: one identity value made unique per tenant (or shared up to a limit).

An aggregate of its own (its events are stored under ``membercore.IdentityClaim.*``); a
customer's identities are recorded on ``domain.customer.Customer``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.copying import ContainerCopies
from domain.errors import IdentityHeldByOther, IdentityLimitReached
from domain.values import Identity


class IdentityClaim(ContainerCopies, Aggregate):
    """Makes one identity value unique per tenant (or shared by at most the program's limit).

    Its id is a keyed hash of the normalised identity (computed by the application), so two
    registrations racing for one identity both try to create version 1 of the same claim, and
    the event store lets exactly one win. The claim stores the type and holders, never the value.
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

    class HolderAdded(Event):
        """Another customer shares the value (allowed by the program's ``max_customers``)."""

        TOPIC = "membercore.IdentityClaim.HolderAdded"
        customer_id: UUID

        def apply(self, aggregate: IdentityClaim) -> None:
            aggregate.holders = (*aggregate.holders, self.customer_id)

    class HolderRemoved(Event):
        TOPIC = "membercore.IdentityClaim.HolderRemoved"
        customer_id: UUID

        def apply(self, aggregate: IdentityClaim) -> None:
            aggregate.holders = tuple(h for h in aggregate.holders if h != self.customer_id)

    class Transferred(Event):
        """A merge (or its undo) moved the value from one customer to another."""

        TOPIC = "membercore.IdentityClaim.Transferred"
        from_id: UUID
        to_id: UUID
        merge_id: UUID

        def apply(self, aggregate: IdentityClaim) -> None:
            rest = tuple(h for h in aggregate.holders if h not in (self.from_id, self.to_id))
            aggregate.holders = (*rest, self.to_id)

    def __init__(self, identity_type: str, customer_id: UUID) -> None:
        self.identity_type = identity_type
        self.holders: tuple[UUID, ...] = (customer_id,)

    @property
    def customer_id(self) -> UUID | None:
        """The first holder (the only one for identifying types)."""
        return self.holders[0] if self.holders else None

    @classmethod
    def claim(
        cls, identity: Identity, customer_id: UUID, *, claim_id: UUID, at: datetime
    ) -> IdentityClaim:
        return cls._create(
            cls.Claimed,
            id=claim_id,
            timestamp=at,
            identity_type=identity.type,
            customer_id=customer_id,
        )

    def add_holder(self, customer_id: UUID, *, limit: int, at: datetime) -> bool:
        if customer_id in self.holders:
            return False
        if len(self.holders) >= limit:
            if limit == 1 and self.holders:
                raise IdentityHeldByOther(self.identity_type, self.holders[0])
            raise IdentityLimitReached(self.identity_type, limit)
        self.trigger_event(self.HolderAdded, customer_id=customer_id, timestamp=at)
        return True

    def remove_holder(self, customer_id: UUID, *, at: datetime) -> None:
        if customer_id in self.holders:
            self.trigger_event(self.HolderRemoved, customer_id=customer_id, timestamp=at)

    def transfer(self, from_id: UUID, to_id: UUID, *, merge_id: UUID, at: datetime) -> bool:
        if from_id not in self.holders:
            return False
        self.trigger_event(
            self.Transferred, from_id=from_id, to_id=to_id, merge_id=merge_id, timestamp=at
        )
        return True
