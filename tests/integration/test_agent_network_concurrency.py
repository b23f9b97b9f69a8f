"""Concurrent re-parentings serialise on the tenant's agent network: together they never close a
cycle in the downline tree (real PostgreSQL, threads released together)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from application.agent_network import agent_chain
from application.kernel import Caller, execute
from application.relationships import SetParentAgent
from domain.agent_network import AGENT_NETWORK_ID, AgentNetwork
from domain.errors import AgentCycle
from infrastructure.tenancy import Tenant
from tests.integration.support import register, run_at_once

ROUNDS = 12


def agents(tenant: Tenant, label: str, n: int) -> list[UUID]:
    return [
        register(tenant, ("pos_member_no", f"{label}-{i}"), roles=["agent"]).customer_id
        for i in range(n)
    ]


def has_cycle(tenant: Tenant, start: UUID) -> bool:
    chain = agent_chain(tenant.app, start)
    return len(chain) != len(set(chain)) or len(chain) > 64


def attempt(tenant: Tenant, child: UUID, parent: UUID, n: int) -> Any:
    try:
        return execute(tenant.app, SetParentAgent(child, parent), Caller(f"t{n}"))
    except AgentCycle as e:
        return e


def test_two_agents_placed_under_each_other_at_once_never_make_a_cycle_and_one_wins(
    tenant: Tenant,
) -> None:
    for r in range(ROUNDS):
        a, b = agents(tenant, f"r{r}", 2)
        pairs = [(a, b), (b, a)]

        outcomes = run_at_once(2, lambda n, p=pairs: attempt(tenant, *p[n], n))

        refused = [o for o in outcomes if isinstance(o, AgentCycle)]
        assert len(refused) == 1, (r, outcomes)
        assert not has_cycle(tenant, a)
        assert not has_cycle(tenant, b)
        parents = {tenant.app.repository.get(c).parent_agent_id for c in (a, b)}
        assert parents in ({b, None}, {a, None})
    network = tenant.app.repository.get(AGENT_NETWORK_ID)
    assert isinstance(network, AgentNetwork)
    assert network.reparentings == ROUNDS  # one re-parenting recorded per round


@pytest.mark.parametrize("size", [3])
def test_a_ring_of_concurrent_re_parentings_never_closes(tenant: Tenant, size: int) -> None:
    for r in range(ROUNDS // 2):
        ring = agents(tenant, f"ring{r}", size)
        moves = [(ring[i], ring[(i + 1) % size]) for i in range(size)]

        outcomes = run_at_once(size, lambda n, m=moves: attempt(tenant, *m[n], n))

        refused = [o for o in outcomes if isinstance(o, AgentCycle)]
        assert len(refused) >= 1, (r, outcomes)
        assert not any(has_cycle(tenant, c) for c in ring)


def test_a_re_parenting_that_closes_a_cycle_through_a_longer_chain_is_refused(
    tenant: Tenant,
) -> None:
    a, b, c = agents(tenant, "chain", 3)
    execute(tenant.app, SetParentAgent(b, a), Caller("t"))
    execute(tenant.app, SetParentAgent(c, b), Caller("t"))

    with pytest.raises(AgentCycle):
        execute(tenant.app, SetParentAgent(a, c), Caller("t"))
