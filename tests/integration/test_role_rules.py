"""Roles decide what an order earns and which ladders it moves (多身份), on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.context import CommandContext
from application.kernel import Caller, execute
from application.levels import current_levels
from application.orders import PlaceOrder
from application.program import define_program
from application.relationships import AddRole, EndRole
from infrastructure.tenancy import Tenant
from tests.integration.orders_support import place
from tests.integration.support import register

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "points", "earn": [{"per_amount": 100, "points": 1}]},
        {"code": "leader_credit", "earn": [{"per_amount": 100, "points": 2}]},
    ],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "spend",
            "levels": [{"code": "normal", "threshold": 0}, {"code": "gold", "threshold": 5000}],
        },
        {
            "code": "leader",
            "role": "agent",
            "basis": "spend",
            "levels": [{"code": "rookie", "threshold": 0}, {"code": "star", "threshold": 5000}],
        },
    ],
    "roles": [
        {"code": "agent", "point_types": ["leader_credit"], "level_groups": ["consumer"]},
    ],
}
CTX = CommandContext("t")


@pytest.fixture
def roles(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, CTX.actor)
    return tenant


def buyer(tenant: Tenant, *roles: str) -> UUID:
    return register(tenant, ("wechat_unionid", f"u-{uuid4()}"), roles=list(roles)).customer_id


def buy(tenant: Tenant, customer_id: UUID, amount: int = 6000) -> dict[str, Any]:
    cmd = PlaceOrder(
        order_id=f"o-{uuid4().hex[:12]}",
        channel="mini_program",
        placed_at=datetime.now(UTC) - timedelta(minutes=1),
        amount=amount,
        customer_id=customer_id,
    )
    return place(tenant.app, cmd).body


def ladders(tenant: Tenant, customer_id: UUID) -> dict[str, str]:
    return current_levels(tenant.app, customer_id, datetime.now(UTC))


def test_a_consumer_earns_the_unbound_type_but_not_the_agent_bound_one(roles: Tenant) -> None:
    cid = buyer(roles, "consumer")
    body = buy(roles, cid)
    assert body["points"] == [{"point_type": "points", "earned": 60}]
    assert ladders(roles, cid) == {"consumer": "gold"}


def test_an_agent_earns_its_bound_type_and_sits_on_a_ladder_its_role_lists(roles: Tenant) -> None:
    cid = buyer(roles, "agent")
    body = buy(roles, cid)
    assert body["points"] == [
        {"point_type": "points", "earned": 60},
        {"point_type": "leader_credit", "earned": 120},
    ]
    # `leader` by the group's own role, `consumer` because the agent role lists it.
    assert ladders(roles, cid) == {"consumer": "gold", "leader": "star"}


def test_a_role_added_later_earns_from_then_on_and_ending_it_stops_earning(roles: Tenant) -> None:
    cid = buyer(roles, "consumer")
    assert [p["point_type"] for p in buy(roles, cid)["points"]] == ["points"]
    execute(roles.app, AddRole(cid, "agent"), Caller(CTX.actor))
    assert [p["point_type"] for p in buy(roles, cid)["points"]] == ["points", "leader_credit"]
    execute(roles.app, EndRole(cid, "agent", None), Caller(CTX.actor))
    assert [p["point_type"] for p in buy(roles, cid)["points"]] == ["points"]
