"""The OpenAPI document against the app: schemathesis generates requests for every operation from
the app's own document (valid and invalid ones, path parameters included) and checks that no answer
is a 5xx, that every status is one the operation declares, and that every body matches its schema.

Path parameters are drawn either from the document's schema or from resources seeded in the tenant
(a customer with points, a hold, a redemption, an order, a merge, a benefit grant, a level
override), so the routes answer from real state as well as with 404s. Requests per operation: 15 in
``make test``, 400 under ``HYPOTHESIS_PROFILE=long`` (``make test-long``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.serialization import encode_json
from litestar.testing import TestClient
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from api.app import create_app
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from tests.api.support import bearer, identity
from tests.conftest import new_slug

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
# Generated requests per operation: a short run in `make test`, many more in `make test-long`.
EXAMPLES = 400 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 15

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "points", "earn": [{"per_amount": 100, "points": 1}]},
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]},
    ],
    "level_groups": [
        {
            "code": "consumer",
            "name": "会员等级",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "calendar", "period": "year"},
            "assessment": {"mode": "calendar", "period": "year", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "name": "普通", "threshold": 0},
                {"code": "gold", "name": "黄金", "threshold": 100000},
            ],
        }
    ],
    "benefits": [
        {"code": "free_shipping", "name": "包邮", "quota": {"count": 2, "period": "month"}},
    ],
}


def _ok(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed(settings: Settings, runtime: Runtime, headers: dict[str, str]) -> dict[str, str]:
    """Resources for the path parameters to name; returns a value per path parameter name."""
    placed = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    with TestClient(create_app(settings, runtime=runtime)) as c:
        _ok(c.put("/v1/program", json=PROGRAM, headers=headers), 200)
        member = identity("member_no", uuid4().hex)
        cid = _ok(
            c.post(
                "/v1/customers",
                json={"identities": [member], "roles": ["consumer"]},
                headers=headers,
            ),
            201,
        )["customer_id"]
        other = _ok(
            c.post(
                "/v1/customers", json={"identities": [identity("member_no", "x")]}, headers=headers
            ),
            201,
        )["customer_id"]
        order = {
            "order_id": "o-1",
            "channel": "tmall",
            "identity": member,
            "placed_at": placed,
            "amount": 500000,
        }
        _ok(c.post("/v1/orders", json=order, headers=headers), 201)
        points = f"/v1/customers/{cid}/points/points"
        _ok(c.post(f"{points}/holds", json={"hold_id": "h-1", "amount": 10}, headers=headers), 201)
        _ok(
            c.post(
                f"{points}/redemptions", json={"redemption_id": "r-1", "amount": 5}, headers=headers
            ),
            201,
        )
        merge_id = _ok(
            c.post(
                f"/v1/customers/{cid}/merge", json={"source_customer_id": other}, headers=headers
            ),
            201,
        )["merge_id"]
        _ok(
            c.post(
                f"/v1/customers/{cid}/benefits/grants",
                json={"grant_id": "g-1", "code": "free_shipping", "reason": "care"},
                headers=headers,
            ),
            201,
        )
        _ok(
            c.post(
                f"/v1/customers/{cid}/levels/consumer/overrides",
                json={"override_id": "ov-1", "level": "gold", "until": "2099-01-01", "reason": "x"},
                headers=headers,
            ),
            201,
        )
        _ok(c.post(f"/v1/customers/{cid}/tags", json={"tags": ["vip"]}, headers=headers), 200)
        _ok(c.post(f"/v1/customers/{cid}/owner", json={"owner": "s-1"}, headers=headers), 200)
        erasable = _ok(
            c.post(
                "/v1/customers", json={"identities": [identity("member_no", "e")]}, headers=headers
            ),
            201,
        )["customer_id"]
    return {
        "erasable": erasable,
        "customer_id": cid,
        "point_type": "points",
        "hold_id": "h-1",
        "redemption_id": "r-1",
        "channel": "tmall",
        "order_id": "o-1",
        "merge_id": merge_id,
        "group": "consumer",
        "override_id": "ov-1",
        "code": "free_shipping",
        "grant_id": "g-1",
        "role": "consumer",
        "tag": "vip",
        "staff_id": "s-1",
    }


@pytest.fixture(scope="module")
def seeded(settings: Settings, runtime: Runtime) -> dict[str, Any]:
    """A tenant of its own (the run writes a lot), its admin headers and its seeded resources."""
    tenant = runtime.tenants.create(new_slug("st"))
    headers = bearer(runtime.keys.create(tenant.slug, Role.ADMIN))
    return {"headers": headers, "known": _seed(settings, runtime, headers)}


@pytest.fixture(scope="module")
def app(settings: Settings, runtime: Runtime) -> Iterator[Litestar]:
    """The app with its projection worker, so reads with a reachable ``min_position`` answer."""
    yield create_app(settings, runtime=runtime, projections=True)
    # The app's lifespan runs on schemathesis' own event loop; end it before the database goes.
    asgi.shutdown_lifespans()


def _document() -> dict[str, Any]:
    """The document the app serves at /schema/openapi.json (building it needs no database)."""
    document: dict[str, Any] = json.loads(
        encode_json(create_app(Settings()).openapi_schema.to_schema())
    )
    return document


DOCUMENT = _document()
# Generated requests (schema-driven and boundary values); the documented examples run apart,
# once each, since Hypothesis' ``data`` (the choice of seeded path values) cannot join them.
generated = schemathesis.openapi.from_dict(DOCUMENT)
generated.config.phases.examples.enabled = False


def _has_examples(node: Any, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a part of the document holds an example, following ``$ref``s into it."""
    if isinstance(node, list):
        return any(_has_examples(item, seen) for item in node)
    if not isinstance(node, dict):
        return False
    if "examples" in node or "example" in node:
        return True
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in seen:
        target = DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return _has_examples(target, seen | {ref})
    return any(_has_examples(value, seen) for value in node.values())


WITH_EXAMPLES = [
    op["operationId"]
    for item in DOCUMENT["paths"].values()
    for op in item.values()
    if isinstance(op, dict) and _has_examples([op.get("parameters", []), op.get("requestBody", {})])
]
documented = schemathesis.openapi.from_dict(DOCUMENT).include(operation_id=WITH_EXAMPLES)
documented.config.phases.coverage.enabled = False
documented.config.phases.fuzzing.enabled = False


def test_the_document_tested_is_the_one_the_app_serves(
    settings: Settings, runtime: Runtime
) -> None:
    with TestClient(create_app(settings, runtime=runtime)) as c:
        assert c.get("/schema/openapi.json").json() == DOCUMENT


def _call(case: Any, app: Litestar, seeded: dict[str, Any], use: Callable[[str], bool]) -> None:
    known = dict(seeded["known"])
    if case.operation.label == "DELETE /v1/customers/{customer_id}":
        # Erasing the customer every other operation reads would leave them only 404s.
        known["customer_id"] = known["erasable"]
    for name in list(case.path_parameters or {}):
        if name in known and use(name):
            case.path_parameters[name] = known[name]
    case.call_and_validate(
        app=app, base_url="http://testserver", headers=seeded["headers"], checks=CHECKS
    )


@generated.parametrize()
@generated.given(data=st.data())
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
def test_every_operation_answers_as_its_openapi_document_says(
    case: Any, data: st.DataObject, app: Litestar, seeded: dict[str, Any]
) -> None:
    _call(case, app, seeded, lambda name: data.draw(st.booleans(), label=f"known {name}"))


@documented.parametrize()
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_the_documented_examples_answer_as_the_document_says(
    case: Any, app: Litestar, seeded: dict[str, Any]
) -> None:
    # An example is a request meant to succeed: its path names a seeded resource.
    _call(case, app, seeded, lambda name: True)
