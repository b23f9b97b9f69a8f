"""Service endpoints: the OpenAPI document and /health."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from projections.registry import PROJECTIONS
from tests.api.support import identity, project

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]


async def test_openapi_document_lists_every_operation_by_id(client: Client) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    operations = {
        op["operationId"]: (method.upper(), path)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    c = "/v1/customers/{customer_id}"
    assert operations == {
        "RegisterCustomer": ("POST", "/v1/customers"),
        "GetCustomer": ("GET", c),
        "FindCustomers": ("GET", "/v1/customers"),
        "ReadEventFeed": ("GET", "/v1/events"),
        "Health": ("GET", "/health"),
        # customers (issue 3)
        "ChangeProfile": ("PATCH", c),
        "EraseCustomer": ("DELETE", c),
        "LinkIdentities": ("POST", f"{c}/identities"),
        "UnlinkIdentity": ("DELETE", f"{c}/identities"),
        "MergeCustomers": ("POST", f"{c}/merge"),
        "UndoMerge": ("POST", "/v1/merges/{merge_id}/undo"),
        "ListMergeCandidates": ("GET", "/v1/merge-candidates"),
        "AddRole": ("POST", f"{c}/roles"),
        "EndRole": ("DELETE", f"{c}/roles/{{role}}"),
        "AddTags": ("POST", f"{c}/tags"),
        "RemoveTag": ("DELETE", f"{c}/tags/{{tag}}"),
        "SetParentAgent": ("POST", f"{c}/parent-agent"),
        "AssignOwner": ("POST", f"{c}/owner"),
        "EndOwner": ("POST", f"{c}/owner/end"),
        "HandOverCustomers": ("POST", "/v1/staff/{staff_id}/handover"),
        "RecordConsent": ("POST", f"{c}/consents"),
        "ExportCustomer": ("GET", f"{c}/export"),
        "CustomerHistory": ("GET", f"{c}/history"),
        "DefineProgram": ("PUT", "/v1/program"),
        "GetProgram": ("GET", "/v1/program"),
        # behaviours and bulk import
        "RecordBehaviors": ("POST", "/v1/behaviors"),
        "ListCustomerBehaviors": ("GET", f"{c}/behaviors"),
        "SummarizeCustomerBehaviors": ("GET", f"{c}/behaviors/summary"),
        "ImportCustomers": ("POST", "/v1/imports/customers"),
        # loyalty (issue 4)
        "PlaceOrder": ("POST", "/v1/orders"),
        "PlaceOrders": ("POST", "/v1/orders/batch"),
        "RefundOrder": ("POST", "/v1/orders/{channel}/{order_id}/refunds"),
        "PointsBalances": ("GET", f"{c}/points"),
        "PointsEntries": ("GET", f"{c}/points/{{point_type}}/entries"),
        "RedeemPoints": ("POST", f"{c}/points/{{point_type}}/redemptions"),
        "ReverseRedemption": (
            "POST",
            f"{c}/points/{{point_type}}/redemptions/{{redemption_id}}/reversals",
        ),
        "AdjustPoints": ("POST", f"{c}/points/{{point_type}}/adjustments"),
        "HoldPoints": ("POST", f"{c}/points/{{point_type}}/holds"),
        "CaptureHold": ("POST", f"{c}/points/{{point_type}}/holds/{{hold_id}}/capture"),
        "ReleaseHold": ("POST", f"{c}/points/{{point_type}}/holds/{{hold_id}}/release"),
        "ExpirePoints": ("POST", "/v1/jobs/expire-points"),
        "ListLevels": ("GET", f"{c}/levels"),
        "SetLevelOverride": ("POST", f"{c}/levels/{{group}}/overrides"),
        "EndLevelOverride": ("POST", f"{c}/levels/{{group}}/overrides/{{override_id}}/end"),
        "AssessLevels": ("POST", "/v1/jobs/assess-levels"),
        "ListBenefits": ("GET", f"{c}/benefits"),
        "ListBenefitRedemptions": ("GET", f"{c}/benefits/redemptions"),
        "RedeemBenefit": ("POST", f"{c}/benefits/{{code}}/redemptions"),
        "GrantBenefit": ("POST", f"{c}/benefits/grants"),
        "RevokeBenefitGrant": ("POST", f"{c}/benefits/grants/{{grant_id}}/revoke"),
    }


async def test_openapi_documents_the_idempotency_key_header(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    parameters = document["paths"]["/v1/customers"]["post"].get("parameters", [])
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= next(
        p for p in parameters if p["name"] == "Idempotency-Key"
    ).items()


async def test_health_answers_without_a_key_with_status_and_projection_lag(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["projections"]) == {p.name for p in PROJECTIONS}
    lag = body["projections"]["customer_profile"]["lag"]
    assert isinstance(lag, int)
    assert lag >= 0


async def test_health_lag_counts_events_the_projection_has_not_applied(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    async def lag() -> int:
        body = (await client.get("/health")).json()
        value: int = body["projections"]["customer_profile"]["lag"]
        return value

    before = await lag()
    created = await client.post(
        "/v1/customers", json={"identities": [identity("member_no", "lag-1")]}, headers=admin
    )
    assert await lag() == before + created.json()["position"]
    project(tenant)
    assert await lag() == before


async def test_every_response_carries_a_request_id(client: Client) -> None:
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) >= 16
    given = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"


async def test_health_reports_redis_ok_when_redis_is_configured(client: Client) -> None:
    # The session settings always name a Redis: REDIS_URL, or an in-process server.
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["redis"] == "ok"


async def test_health_answers_503_degraded_when_the_configured_redis_does_not_answer(
    settings: Settings, runtime: Runtime
) -> None:
    with socket.socket() as closed:  # a port nothing listens on once this socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    broken = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    async with AsyncTestClient(create_app(broken, runtime=runtime)) as c:
        response = await c.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["redis"] == "unavailable"


async def test_health_omits_redis_when_none_is_configured(
    settings: Settings, runtime: Runtime
) -> None:
    without = dataclasses.replace(settings, redis_url=None)
    async with AsyncTestClient(create_app(without, runtime=runtime)) as c:
        body = (await c.get("/health")).json()
    assert body["status"] == "ok"
    assert "redis" not in body


async def test_openapi_declares_bearer_auth_and_problem_responses(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    responses = document["paths"]["/v1/customers"]["post"]["responses"]
    assert {"400", "401", "403", "409", "422"} <= set(responses)
    assert "application/problem+json" in responses["409"]["content"]
