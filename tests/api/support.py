"""Helpers shared by the API tests: auth headers, problem assertions, projection catch-up."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx

from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up
from projections.queries import PROFILE_PARTS
from projections.registry import BY_NAME

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def key_id(runtime: Runtime, headers: dict[str, str]) -> str:
    """The id of the key in ``headers``: what commands record as their actor."""
    principal = runtime.keys.authenticate(headers["Authorization"].removeprefix("Bearer "))
    assert principal is not None
    return principal.key_id


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` (and ``code``); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert isinstance(body["code"], str)
    assert body["code"] == body["code"].lower()
    assert " " not in body["code"]
    if code is not None:
        assert body["code"] == code, body
    return body


def project(tenant: Tenant) -> int:
    """Apply every committed event to the read models a profile is drawn from (the profile,
    stats, points, levels); returns the events the profile projection applied."""
    applied = catch_up(tenant, CustomerProfileProjection())
    for name in PROFILE_PARTS:
        if name != CustomerProfileProjection.name:
            catch_up(tenant, BY_NAME[name])
    return applied


def head(tenant: Tenant) -> int:
    """The tenant's event-log head position (0 when empty)."""
    return tenant.app.recorder.max_notification_id() or 0


def identity(type_: str, value: str) -> dict[str, str]:
    return {"type": type_, "value": value}


async def new_customer(client: Any, headers: dict[str, str], **fields: Any) -> str:
    """A customer registered over the API under a fresh identity (and ``fields``): its id."""
    body = {"identities": [identity("wechat_unionid", f"u-{uuid4()}")], **fields}
    response = await client.post("/v1/customers", json=body, headers=headers)
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["customer_id"]
    return customer_id
