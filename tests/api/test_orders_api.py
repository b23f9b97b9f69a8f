"""Orders over HTTP: POST /v1/orders, /v1/orders/batch, refunds; status codes and problems."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, identity

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "yearly_clearing", "month": 12, "day": 31},
        }
    ],
}


def placed_at() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def an_order(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": f"o-{uuid4().hex[:10]}",
        "channel": "tmall",
        "identity": identity("tmall_ouid", f"ou-{uuid4().hex}"),
        "placed_at": placed_at(),
        "amount": 2933,
    }
    body.update(kw)
    return body


@pytest.fixture
async def live(anyio_backend: str, settings: Settings, runtime: Runtime) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(settings, runtime=runtime, projections=True)) as c:
        yield c


@pytest.fixture
async def program(client: Client, admin: dict[str, str]) -> None:
    response = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200, response.text


async def test_an_order_answers_201_with_points_and_a_replay_200_with_the_same_body(
    client: Client, admin: dict[str, str], program: None
) -> None:
    body = an_order()
    first = await client.post("/v1/orders", json=body, headers=admin)
    assert first.status_code == 201, first.text
    assert first.json()["points"] == [{"point_type": "points", "earned": 29}]
    assert set(first.json()) == {
        "order_id",
        "customer_id",
        "points",
        "levels",
        "commissions",
        "position",
    }
    again = await client.post("/v1/orders", json=body, headers=admin)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


async def test_the_same_order_id_with_another_body_is_422(
    client: Client, admin: dict[str, str], program: None
) -> None:
    body = an_order()
    await client.post("/v1/orders", json=body, headers=admin)
    response = await client.post("/v1/orders", json={**body, "amount": 1}, headers=admin)
    assert_problem(response, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": -1}, "invalid_value"),
        ({"amount": 1.5}, "invalid_type"),
        ({"amount": 10**16}, "invalid_value"),
        ({"order_id": "bad id"}, "invalid_value"),
        ({"surprise": 1}, "unknown_field"),
    ],
)
async def test_bad_orders_are_400_with_a_stable_code(
    client: Client, admin: dict[str, str], program: None, change: dict[str, Any], code: str
) -> None:
    response = await client.post("/v1/orders", json=an_order(**change), headers=admin)
    assert_problem(response, 400, code)


async def test_an_order_naming_both_or_neither_buyer_is_400(
    client: Client, admin: dict[str, str], program: None
) -> None:
    both = an_order(customer_id=str(uuid4()))
    neither = an_order()
    del neither["identity"]
    for body in (both, neither):
        response = await client.post("/v1/orders", json=body, headers=admin)
        assert_problem(response, 400, "invalid_input")


async def test_an_order_for_an_unknown_customer_is_404(
    client: Client, admin: dict[str, str], program: None
) -> None:
    body = an_order(customer_id=str(uuid4()))
    del body["identity"]
    response = await client.post("/v1/orders", json=body, headers=admin)
    assert_problem(response, 404, "customer_not_found")


async def test_a_role_without_the_orders_permission_is_403(
    client: Client, tenant: Tenant, key_for: KeyFor, program: None
) -> None:
    response = await client.post("/v1/orders", json=an_order(), headers=key_for(tenant, Role.SALES))
    assert_problem(response, 403, "forbidden")


async def test_a_batch_answers_each_order_on_its_own(
    client: Client, admin: dict[str, str], program: None
) -> None:
    good = an_order()
    broken = an_order(amount=-5)
    unknown = an_order(customer_id=str(uuid4()))
    del unknown["identity"]
    response = await client.post(
        "/v1/orders/batch", json={"orders": [good, broken, unknown, good]}, headers=admin
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 404, 200]
    assert results[1]["error"]["code"] == "invalid_value"
    assert results[2]["error"]["code"] == "customer_not_found"
    assert results[0]["customer_id"] == results[3]["customer_id"]
    assert response.json()["position"] > 0


async def test_a_batch_of_more_than_1000_orders_is_400(
    client: Client, admin: dict[str, str], program: None
) -> None:
    response = await client.post(
        "/v1/orders/batch", json={"orders": [an_order()] * 1001}, headers=admin
    )
    assert_problem(response, 400)


async def test_refunds_accumulate_and_more_than_remains_is_409(
    client: Client, admin: dict[str, str], program: None
) -> None:
    body = an_order(amount=10_000)
    await client.post("/v1/orders", json=body, headers=admin)
    url = f"/v1/orders/tmall/{body['order_id']}/refunds"
    first = await client.post(url, json={"refund_id": "r1", "amount": 4000}, headers=admin)
    assert first.status_code == 201, first.text
    assert first.json()["points"][0]["reversed"] == 40
    replay = await client.post(url, json={"refund_id": "r1", "amount": 4000}, headers=admin)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    too_much = await client.post(url, json={"refund_id": "r2", "amount": 6001}, headers=admin)
    problem = assert_problem(too_much, 409, "refund_exceeds_order")
    assert problem["refundable"] == 6000


async def test_a_refund_of_an_unknown_order_is_404(
    client: Client, admin: dict[str, str], program: None
) -> None:
    response = await client.post(
        "/v1/orders/tmall/nope/refunds", json={"refund_id": "r1", "amount": 1}, headers=admin
    )
    assert_problem(response, 404, "order_not_found")


async def test_a_refund_by_lines_naming_an_unknown_line_is_400(
    client: Client, admin: dict[str, str], program: None
) -> None:
    lines = [{"line_id": "a", "sku": "s", "quantity": 1, "amount": 1000}]
    body = an_order(amount=1000, lines=lines)
    await client.post("/v1/orders", json=body, headers=admin)
    response = await client.post(
        f"/v1/orders/tmall/{body['order_id']}/refunds",
        json={"refund_id": "r1", "lines": [{"line_id": "zz", "amount": 1}]},
        headers=admin,
    )
    assert_problem(response, 400, "invalid_input")


async def test_the_profile_shows_order_stats_and_points(
    live: Client, admin: dict[str, str]
) -> None:
    response = await live.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200
    body = an_order(amount=5000)
    placed = (await live.post("/v1/orders", json=body, headers=admin)).json()
    refund = await live.post(
        f"/v1/orders/tmall/{body['order_id']}/refunds",
        json={"refund_id": "r1", "amount": 1000},
        headers=admin,
    )
    position = refund.json()["position"]
    profile = await live.get(
        f"/v1/customers/{placed['customer_id']}?min_position={position}", headers=admin
    )
    assert profile.status_code == 200, profile.text
    stats = profile.json()["stats"]
    assert stats["order_count"] == 1
    assert stats["total_spend"] == 4000
    assert stats["refund_count"] == 1
    assert stats["avg_order_value"] == 4000
    assert profile.json()["points"] == {"points": 40}
