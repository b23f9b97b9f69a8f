"""The agent downline tree: chain walks and the cycle check every re-parenting makes.

A re-parenting loads the tenant's ``AgentNetwork`` *first*, then reads the chain above the new
parent, and saves the network with the child's change. Any re-parenting that commits after the
network was loaded makes that save conflict, and the retry reads the chain again; any that
committed before is visible in the chain. So two concurrent re-parentings can never close a cycle.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from application.app import Membercore
from application.loaders import load_customer, optional
from domain.agent_network import AGENT_NETWORK_ID, AgentNetwork

MAX_AGENT_DEPTH = 64


def load_network(app: Membercore, at: datetime) -> AgentNetwork:
    """The tenant's agent network (started on first use; racing starts conflict on version 1)."""
    network = optional(app, AGENT_NETWORK_ID, AgentNetwork)
    return network or AgentNetwork.start(at=at)


def _parent_of(app: Membercore, customer_id: UUID) -> UUID | None:
    return load_customer(app, customer_id).parent_agent_id


def agent_chain(app: Membercore, start: UUID | None) -> list[UUID]:
    """``start`` and the agents above it, nearest first (bounded, so a bad chain cannot loop)."""
    chain: list[UUID] = []
    current = start
    while current is not None and len(chain) <= MAX_AGENT_DEPTH:
        chain.append(current)
        current = _parent_of(app, current)
    return chain


def closes_cycle(app: Membercore, customer_id: UUID, parent_id: UUID) -> bool:
    """Whether placing ``customer_id`` under ``parent_id`` would make a cycle (or a chain longer
    than ``MAX_AGENT_DEPTH``). Read after ``load_network`` so that the save serialises it."""
    chain = agent_chain(app, parent_id)
    return customer_id in chain or len(chain) > MAX_AGENT_DEPTH
