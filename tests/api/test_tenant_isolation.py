"""Another tenant's key gets 404 on every route that names a resource, writes included.

The routes are enumerated from the app's own OpenAPI document, not listed by hand: a route added
with a path parameter and no entry in ``CALLS`` fails ``test_every_route_naming_a_resource_has_a
_call``, and one that answers anything but 404 to another tenant (or writes in the owner's
tenant) fails the sweep. Tenant B defines the same program as tenant A, so the point type, level
group and benefit code in a path exist in both: only the named resource (a customer, a merge, an
order, a hold, ...) belongs to A alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, bearer, head, identity
from tests.conftest import new_slug

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
METHODS = ("get", "post", "put", "patch", "delete")
# A member number of A's customer that no answer to B may contain.
SECRET = "alice-secret-1"

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "level_groups": [
        {
            "code": "consumer",
            "basis": "spend",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "calendar", "period": "year"},
            "levels": [{"code": "normal", "threshold": 0}, {"code": "gold", "threshold": 10_000}],
        }
    ],
    "benefits": [
        {"code": "free_shipping", "name": "包邮", "quota": {"count": 2, "period": "month"}}
    ],
}


@dataclass(frozen=True)
class Call:
    """How to call one operation as tenant B: the body and query it needs to be valid, and
    what B must be told (404 with a ``*_not_found`` code unless ``status`` says otherwise)."""

    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    status: int = 404
    why: str = ""


# One entry per operation whose path names something. Bodies are valid, so a 404 can only come
# from the named resource being absent from B's view.
CALLS: dict[str, Call] = {
    "GetCustomer": Call(),
    "ChangeProfile": Call(body={"name": "Mallory"}),
    "EraseCustomer": Call(query={"reason": "request"}),
    "AddRole": Call(body={"role": "guide"}),
    "EndRole": Call(),
    "AddTags": Call(body={"tags": ["stolen"]}),
    "RemoveTag": Call(),
    "AssignOwner": Call(body={"owner": "s-9"}),
    "EndOwner": Call(body={"by": "s-1"}),
    "RecordConsent": Call(
        body={"purpose": "marketing", "channel": "sms", "granted": True, "policy_version": "v1"}
    ),
    "LinkIdentities": Call(body={"identities": [identity("jd_pin", "jd-mallory")]}),
    "UnlinkIdentity": Call(query={"identity": f"member_no:{SECRET}"}),
    "MergeCustomers": Call(body={"source_customer_id": "{source_id}"}),
    "SetParentAgent": Call(body={"parent_id": "{source_id}"}),
    "ExportCustomer": Call(),
    "CustomerHistory": Call(),
    "UndoMerge": Call(),
    "ListLevels": Call(),
    "SetLevelOverride": Call(
        body={"override_id": "ov2", "level": "gold", "until": "2099-01-01", "reason": "x"}
    ),
    "EndLevelOverride": Call(body={"reason": "x"}),
    "RefundOrder": Call(body={"refund_id": "rf1", "amount": 100}),
    "PointsBalances": Call(),
    "PointsEntries": Call(),
    "RedeemPoints": Call(body={"redemption_id": "r2", "amount": 1}),
    "ReverseRedemption": Call(body={"reversal_id": "v1", "amount": 1}),
    "AdjustPoints": Call(body={"adjustment_id": "a1", "amount": 5, "reason": "x"}),
    "HoldPoints": Call(body={"hold_id": "h2", "amount": 1}),
    "CaptureHold": Call(),
    "ReleaseHold": Call(),
    "ListCustomerBehaviors": Call(),
    "SummarizeCustomerBehaviors": Call(),
    "ListBenefits": Call(),
    "ListBenefitRedemptions": Call(),
    "GrantBenefit": Call(body={"grant_id": "g2", "code": "free_shipping", "reason": "x"}),
    "RedeemBenefit": Call(body={"redemption_id": "b1"}),
    "RevokeBenefitGrant": Call(body={"reason": "x"}),
    "HandOverCustomers": Call(
        body={"to_staff_id": "s-9"},
        status=200,
        why="a staff id is the brand's own label, not a stored resource: B's handover of s-1"
        " finds none of B's customers and must move none of A's",
    ),
}


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    path_params: tuple[str, ...]


def operations_naming_a_resource(document: dict[str, Any]) -> list[Operation]:
    """Every operation of the OpenAPI document with a path parameter."""
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            names = tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "path")
            if names or re.search(r"\{[^}]+\}", path):
                found.append(Operation(op["operationId"], method, path, names))
    return found


async def openapi(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def owned_by_a(client: Client, a: dict[str, str]) -> dict[str, str]:
    """Tenant A with one of every resource a path can name; the path values naming them."""
    await ok(await client.put("/v1/program", json=PROGRAM, headers=a))

    async def register(member_no: str) -> str:
        body = {"identities": [identity("member_no", member_no)]}
        return (await ok(await client.post("/v1/customers", json=body, headers=a), 201))[
            "customer_id"
        ]

    cid, source, absorbed = (
        await register(SECRET),
        await register("alice-2"),
        await register("alice-3"),
    )
    base = f"/v1/customers/{cid}"
    await ok(await client.post(f"{base}/roles", json={"role": "agent"}, headers=a))
    await ok(await client.post(f"{base}/tags", json={"tags": ["vip"]}, headers=a))
    await ok(await client.post(f"{base}/owner", json={"owner": "s-1"}, headers=a))
    merged = await ok(
        await client.post(f"{base}/merge", json={"source_customer_id": absorbed}, headers=a), 201
    )
    order = {"order_id": "o1", "channel": "pos", "placed_at": "2025-06-01T10:00:00+08:00"}
    order |= {"amount": 100_000, "customer_id": cid}
    await ok(await client.post("/v1/orders", json=order, headers=a), 201)
    points = f"{base}/points/points"
    hold = {"hold_id": "h1", "amount": 10}
    await ok(await client.post(f"{points}/holds", json=hold, headers=a), 201)
    redemption = {"redemption_id": "r1", "amount": 10}
    await ok(await client.post(f"{points}/redemptions", json=redemption, headers=a), 201)
    override = {"override_id": "ov1", "level": "gold", "until": "2099-01-01", "reason": "vip"}
    await ok(await client.post(f"{base}/levels/consumer/overrides", json=override, headers=a), 201)
    grant = {"grant_id": "g1", "code": "free_shipping", "reason": "vip"}
    await ok(await client.post(f"{base}/benefits/grants", json=grant, headers=a), 201)
    return {
        "customer_id": cid,
        "source_id": source,
        "merge_id": merged["merge_id"],
        "role": "agent",
        "tag": "vip",
        "channel": "pos",
        "order_id": "o1",
        "point_type": "points",
        "hold_id": "h1",
        "redemption_id": "r1",
        "group": "consumer",
        "override_id": "ov1",
        "code": "free_shipping",
        "grant_id": "g1",
        "staff_id": "s-1",
    }


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def _as_expected(response: Any, call: Call, customer_id: str) -> bool:
    """B was told what ``call`` says, and nothing of A: a 404 is a problem with a resource's own
    code (a route that did not match answers the generic ``not_found``), so the route was
    reached and found nothing of B's."""
    if SECRET in response.text:
        return False
    if call.status != 404:
        return bool(response.status_code == call.status and customer_id not in response.text)
    if response.status_code != 404:
        return False
    assert_problem(response, 404)
    code: str = response.json()["code"]
    return code.endswith("_not_found") and code != "not_found"


async def test_every_route_naming_a_resource_has_a_call(client: Client) -> None:
    named = {op.operation_id for op in operations_naming_a_resource(await openapi(client))}
    assert named, "the OpenAPI document lists no route with a path parameter"
    assert sorted(named - CALLS.keys()) == [], "routes with no entry in CALLS"
    assert sorted(CALLS.keys() - named) == [], "entries in CALLS for routes that are gone"


async def test_another_tenants_admin_key_gets_404_on_every_route_naming_a_resource(
    client: Client, runtime: Runtime, tenant: Tenant, admin: dict[str, str]
) -> None:
    names = await owned_by_a(client, admin)
    other = runtime.tenants.create(new_slug("b"))
    b = bearer(runtime.keys.create(other.slug, Role.ADMIN))
    await ok(await client.put("/v1/program", json=PROGRAM, headers=b))
    a_head = head(tenant)

    answered: dict[str, int] = {}
    wrong: list[tuple[str, int, str]] = []
    for op in operations_naming_a_resource(await openapi(client)):
        call = CALLS[op.operation_id]
        path = op.path.format(**{p: names[p] for p in op.path_params})
        kwargs: dict[str, Any] = {"headers": b, "params": call.query}
        if call.body is not None:
            kwargs["json"] = _fill(call.body, names)
        response = await client.request(op.method.upper(), path, **kwargs)
        answered[op.operation_id] = response.status_code
        if not _as_expected(response, call, names["customer_id"]):
            wrong.append((op.operation_id, response.status_code, response.text[:300]))
        assert head(tenant) == a_head, f"{op.operation_id} as tenant B wrote in tenant A"

    assert wrong == []
    assert set(answered) == set(CALLS)
    # And A's key still reaches what B could not: the same paths were valid.
    for path in (
        f"/v1/customers/{names['customer_id']}/history",
        f"/v1/customers/{names['customer_id']}/points",
        f"/v1/customers/{names['customer_id']}/levels",
    ):
        assert (await client.get(path, headers=admin)).status_code == 200, path


async def test_history_of_a_customer_of_another_tenant_is_404(
    client: Client, runtime: Runtime, admin: dict[str, str]
) -> None:
    body = {"identities": [identity("member_no", uuid4().hex)]}
    cid = (await ok(await client.post("/v1/customers", json=body, headers=admin), 201))[
        "customer_id"
    ]
    other = runtime.tenants.create(new_slug("b"))
    b = bearer(runtime.keys.create(other.slug, Role.ADMIN))

    response = await client.get(f"/v1/customers/{cid}/history", headers=b)

    assert_problem(response, 404, "customer_not_found")
