"""The agent network of a tenant: one stream every re-parenting writes to.

Whether a new parent closes a cycle depends on other agents' streams (the parent's ancestors),
which a re-parenting only reads. Two concurrent re-parentings (A under B, B under A) could each
read a chain without the other's change and both be saved. Every re-parenting (and every merge
that gives the survivor a parent agent) therefore also records ``Reparented`` here, in the same
transaction: the event store's optimistic concurrency lets one of two concurrent ones commit, and
the other retries, reading the chain again (docs/identity.md, roles and the agent tree).

The stream holds no tree (the customers' ``ParentAgentSet`` events are the truth); it is the
point of serialisation, with a count of re-parentings as its state.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

# Fixed forever: one network per tenant (each tenant has its own schema and event table).
AGENT_NETWORK_ID = UUID("5d7b1c0e-3f2a-5e8b-9c41-0a6f2d8e7b13")


class AgentNetwork(Aggregate):
    """Serialises re-parentings of one tenant's agents (the cycle check reads the chain)."""

    TOPIC = "membercore.AgentNetwork"

    class Created(Aggregate.Created):
        TOPIC = "membercore.AgentNetwork.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.AgentNetwork.Event"

    class Started(Created):
        TOPIC = "membercore.AgentNetwork.Started"

    class Reparented(Event):
        """``customer_id`` was placed under ``parent_id`` (checked: no cycle). v1."""

        TOPIC = "membercore.AgentNetwork.Reparented"
        customer_id: UUID
        parent_id: UUID

        def apply(self, aggregate: AgentNetwork) -> None:
            aggregate.reparentings += 1

    def __init__(self) -> None:
        self.reparentings = 0

    @classmethod
    def start(cls, *, at: datetime) -> AgentNetwork:
        return cls._create(cls.Started, id=AGENT_NETWORK_ID, timestamp=at)

    def reparent(self, customer_id: UUID, parent_id: UUID, *, at: datetime) -> None:
        """Record a re-parenting the caller checked against the chain it read after loading
        this network (so a concurrent one makes this save conflict)."""
        self.trigger_event(
            self.Reparented, customer_id=customer_id, parent_id=parent_id, timestamp=at
        )
