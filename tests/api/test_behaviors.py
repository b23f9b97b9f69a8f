"""POST /v1/behaviors (batch, idempotent per event_id, a result per item) and the customer's
behaviour listing and summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, identity

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]


async def register(client: Client, headers: dict[str, str], value: str = "m-1") -> str:
    response = await client.post(
        "/v1/customers", json={"identities": [identity("member_no", value)]}, headers=headers
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["customer_id"]
    return customer_id


def search(customer_id: str, n: int, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n:04d}",
        "customer_id": customer_id,
        "type": "search",
        "occurred_at": f"2026-05-01T10:{n % 60:02d}:00+08:00",
        "channel": "miniprogram",
        "data": {"query": f"tea {n}", "results": n},
        **changes,
    }


async def post(client: Client, headers: dict[str, str], *items: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/behaviors", json={"behaviors": list(items)}, headers=headers)


async def post_ok(
    client: Client, headers: dict[str, str], *items: dict[str, Any]
) -> dict[str, Any]:
    response = await post(client, headers, *items)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def statuses(body: dict[str, Any]) -> list[int]:
    return [r["status"] for r in body["results"]]


@pytest.fixture
async def customer(client: Client, admin: dict[str, str]) -> str:
    return await register(client, admin)


# -- recording --------------------------------------------------------------------------------


async def test_new_behaviours_answer_200_with_201_per_item_and_counts(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    body = await post_ok(client, admin, search(customer, 1), search(customer, 2))

    assert body == {
        "results": [{"event_id": "ev-0001", "status": 201}, {"event_id": "ev-0002", "status": 201}],
        "accepted": 2,
        "replayed": 0,
        "rejected": 0,
    }


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("page_view", {"url": "https://shop.example.com/", "title": "Home", "referrer": None}),
        ("product_view", {"sku": "TEA-1", "category": "tea"}),
        ("search", {"query": "tea", "results": 0}),
        ("add_to_cart", {"sku": "TEA-1", "quantity": 1, "amount": 3990}),
        ("feedback", {"rating": 5, "text": "great\nthanks"}),
    ],
)
async def test_every_type_is_accepted_and_read_back_as_stored(
    client: Client, admin: dict[str, str], customer: str, type_: str, data: dict[str, Any]
) -> None:
    body = await post_ok(client, admin, search(customer, 1, type=type_, data=data))
    assert statuses(body) == [201]

    page = (await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)).json()
    [item] = page["items"]
    assert item["type"] == type_
    assert item["data"] == {k: v for k, v in data.items() if v is not None}
    assert item["occurred_at"] == "2026-05-01T02:01:00+00:00"
    assert item["channel"] == "miniprogram"


async def test_replaying_a_batch_answers_200_per_item_and_stores_nothing_new(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    items = [search(customer, n) for n in range(3)]
    await post_ok(client, admin, *items)

    again = await post_ok(client, admin, *items)

    assert statuses(again) == [200, 200, 200]
    assert (again["accepted"], again["replayed"], again["rejected"]) == (0, 3, 0)
    page = (await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)).json()
    assert len(page["items"]) == 3


async def test_replay_matches_on_content_not_on_key_order_offset_or_width(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    await post_ok(client, admin, search(customer, 1))
    same = search(
        customer,
        1,
        occurred_at="2026-05-01T02:01:00Z",
        data={"results": 1, "query": "\uff54ea 1 "},
    )

    assert statuses(await post_ok(client, admin, same)) == [200]


async def test_a_known_event_id_with_other_content_is_422_idempotency_key_reused(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    await post_ok(client, admin, search(customer, 1))

    body = await post_ok(
        client, admin, search(customer, 1, data={"query": "coffee"}), search(customer, 2)
    )

    assert body["results"][0]["status"] == 422
    assert body["results"][0]["error"]["code"] == "idempotency_key_reused"
    assert "ev-0001" in body["results"][0]["error"]["detail"]
    assert body["results"][1] == {"event_id": "ev-0002", "status": 201}
    assert (body["accepted"], body["replayed"], body["rejected"]) == (1, 0, 1)


async def test_an_unknown_customer_is_404_for_its_item_and_the_others_are_stored(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    stranger = str(uuid4())

    body = await post_ok(client, admin, search(customer, 1), search(stranger, 2))

    assert body["results"][0] == {"event_id": "ev-0001", "status": 201}
    assert body["results"][1]["status"] == 404
    assert body["results"][1]["error"] == {
        "code": "customer_not_found",
        "detail": f"customer {stranger} does not exist",
    }
    page = (await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)).json()
    assert [i["event_id"] for i in page["items"]] == ["ev-0001"]


async def test_a_customer_of_another_tenant_is_404_per_item(
    client: Client, admin: dict[str, str], runtime: Runtime, key_for: KeyFor
) -> None:
    other = runtime.tenants.create(f"x_{uuid4().hex[:10]}")
    theirs = await register(client, key_for(other, Role.ADMIN))

    body = await post_ok(client, admin, search(theirs, 1))

    assert statuses(body) == [404]


async def test_duplicate_ids_in_one_batch_first_wins_identical_200_different_422(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    first = search(customer, 1)

    body = await post_ok(client, admin, first, first, search(customer, 1, data={"query": "coffee"}))

    assert statuses(body) == [201, 200, 422]
    page = (await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)).json()
    assert [i["data"]["query"] for i in page["items"]] == ["tea 1"]


# -- whole-request rejections -----------------------------------------------------------------


async def test_a_bad_data_field_is_400_naming_it_and_nothing_is_stored(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    items = [search(customer, n) for n in range(4)]
    items[3]["data"] = {"results": 2}

    body = assert_problem(await post(client, admin, *items), 400, "invalid_input")

    assert body["errors"] == [{"field": "behaviors[3].data.query", "reason": "is required"}]
    page = (await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)).json()
    assert page["items"] == []


async def test_an_unknown_field_inside_data_is_400_naming_it(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    item = search(customer, 1, type="add_to_cart", data={"sku": "A", "quantity": 1, "colour": 1})

    body = assert_problem(await post(client, admin, item), 400, "invalid_input")

    assert [e["field"] for e in body["errors"]] == ["behaviors[0].data.colour"]


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"extra": 1}, "unknown_field", "behaviors[0].extra"),
        ({"type": "checkout"}, "invalid_value", "behaviors[0].type"),
        ({"occurred_at": "2026-05-01T10:00:00"}, "invalid_value", "behaviors[0].occurred_at"),
        ({"event_id": "has space"}, "invalid_value", "behaviors[0].event_id"),
        ({"customer_id": "nope"}, "invalid_value", "behaviors[0].customer_id"),
        ({"data": "text"}, "invalid_type", "behaviors[0].data"),
    ],
)
async def test_wire_schema_errors_are_400_naming_the_field(
    client: Client,
    admin: dict[str, str],
    customer: str,
    change: dict[str, Any],
    code: str,
    field: str,
) -> None:
    item = {**search(customer, 1), **change}

    body = assert_problem(await post(client, admin, item), 400, code)

    assert body["field"] == field


async def test_a_missing_data_object_is_400_missing_field(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    item = search(customer, 1)
    del item["data"]

    body = assert_problem(await post(client, admin, item), 400, "missing_field")

    assert body["field"] == "behaviors[0].data"


async def test_unknown_top_level_fields_are_400_unknown_field(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    response = await client.post(
        "/v1/behaviors", json={"behaviors": [search(customer, 1)], "more": 1}, headers=admin
    )

    assert assert_problem(response, 400, "unknown_field")["field"] == "more"


async def test_an_empty_batch_and_one_over_1000_items_are_400(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    assert_problem(await post(client, admin), 400, "invalid_value")
    small = {"event_id": "e", "customer_id": customer, "type": "search",
             "occurred_at": "2026-05-01T00:00:00Z", "data": {"query": "q"}}  # fmt: skip
    too_many = [{**small, "event_id": f"e{n}"} for n in range(1001)]

    body = assert_problem(await post(client, admin, *too_many), 400, "invalid_value")

    assert body["field"] == "behaviors"


async def test_a_full_batch_of_1000_is_accepted(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    small = {"customer_id": customer, "type": "product_view",
             "occurred_at": "2026-05-01T00:00:00Z", "data": {"sku": "S"}}  # fmt: skip

    body = await post_ok(client, admin, *({**small, "event_id": f"e{n}"} for n in range(1000)))

    assert body["accepted"] == 1000


async def test_a_body_over_1_mib_is_413(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    url = "https://example.com/" + "x" * 2000
    items = [search(customer, n, type="page_view", data={"url": url}) for n in range(600)]

    assert_problem(await post(client, admin, *items), 413, "payload_too_large")


# -- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.SALES, Role.FINANCE, Role.AUDITOR])
async def test_roles_without_behaviors_write_get_403(
    client: Client, tenant: Tenant, key_for: KeyFor, customer: str, role: Role
) -> None:
    assert_problem(await post(client, key_for(tenant, role), search(customer, 1)), 403, "forbidden")


@pytest.mark.parametrize("role", [Role.FRONTEND, Role.INTEGRATOR, Role.OPERATOR])
async def test_apps_connectors_and_operators_may_record(
    client: Client, tenant: Tenant, key_for: KeyFor, customer: str, role: Role
) -> None:
    body = await post_ok(client, key_for(tenant, role), search(customer, 1))

    assert statuses(body) == [201]


async def test_without_a_key_recording_is_401(client: Client, customer: str) -> None:
    assert_problem(await post(client, {}, search(customer, 1)), 401, "unauthenticated")


async def test_finance_cannot_read_behaviours(
    client: Client, tenant: Tenant, key_for: KeyFor, customer: str
) -> None:
    finance = key_for(tenant, Role.FINANCE)
    for path in ("behaviors", "behaviors/summary"):
        response = await client.get(f"/v1/customers/{customer}/{path}", headers=finance)
        assert_problem(response, 403, "forbidden")


# -- reading ----------------------------------------------------------------------------------


async def test_listing_pages_by_position_with_next_cursor(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    await post_ok(client, admin, *(search(customer, n) for n in range(5)))
    url = f"/v1/customers/{customer}/behaviors"

    first = (await client.get(url, params={"limit": 2}, headers=admin)).json()
    second = (
        await client.get(url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)
    ).json()
    third = (
        await client.get(url, params={"limit": 2, "cursor": second["next_cursor"]}, headers=admin)
    ).json()

    pages = [first, second, third]
    seen = [i["event_id"] for p in pages for i in p["items"]]
    assert sorted(seen) == [f"ev-{n:04d}" for n in range(5)]
    positions = [i["position"] for p in pages for i in p["items"]]
    assert positions == sorted(positions)
    assert first["next_cursor"] == str(first["items"][-1]["position"])
    assert third["next_cursor"] is None


async def test_listing_filters_by_type(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    await post_ok(
        client,
        admin,
        search(customer, 1),
        search(customer, 2, type="product_view", data={"sku": "A"}),
    )

    page = (
        await client.get(
            f"/v1/customers/{customer}/behaviors", params={"type": "product_view"}, headers=admin
        )
    ).json()

    assert [i["event_id"] for i in page["items"]] == ["ev-0002"]


async def test_a_registered_customer_without_behaviours_lists_nothing(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    response = await client.get(f"/v1/customers/{customer}/behaviors", headers=admin)

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("path", ["behaviors", "behaviors/summary"])
@pytest.mark.parametrize("customer_id", [str(uuid4()), "not-a-uuid"])
async def test_reading_an_unknown_customer_is_404(
    client: Client, admin: dict[str, str], path: str, customer_id: str
) -> None:
    response = await client.get(f"/v1/customers/{customer_id}/{path}", headers=admin)

    assert_problem(response, 404, "customer_not_found")


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"type": "checkout"}, "invalid_parameter", "type"),
        ({"cursor": "abc"}, "invalid_cursor", "cursor"),
        ({"cursor": "-1"}, "invalid_cursor", "cursor"),
        ({"limit": "0"}, "invalid_parameter", "limit"),
        ({"limit": "1001"}, "invalid_parameter", "limit"),
    ],
)
async def test_bad_listing_parameters_are_400(
    client: Client,
    admin: dict[str, str],
    customer: str,
    params: dict[str, str],
    code: str,
    field: str,
) -> None:
    response = await client.get(f"/v1/customers/{customer}/behaviors", params=params, headers=admin)

    assert assert_problem(response, 400, code)["field"] == field


async def test_summary_counts_types_days_top_skus_and_searches(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    views = ["B", "A", "B", "C", "B", "A", "D", "E", "F"]
    items = [
        search(customer, n, type="product_view", data={"sku": sku},
               occurred_at=f"2026-05-0{1 + n % 3}T12:00:00Z")
        for n, sku in enumerate(views)
    ]  # fmt: skip
    items += [
        search(customer, 20, occurred_at="2026-04-30T23:30:00Z"),
        search(customer, 21, occurred_at="2026-05-03T08:00:00+08:00"),
        search(customer, 22, type="feedback", data={"rating": 3}),
    ]
    await post_ok(client, admin, *items)

    response = await client.get(f"/v1/customers/{customer}/behaviors/summary", headers=admin)

    assert response.status_code == 200
    assert response.json() == {
        "customer_id": customer,
        "counts": {"page_view": 0, "product_view": 9, "search": 2, "add_to_cart": 0, "feedback": 1},
        "first_at": "2026-04-30T23:30:00+00:00",
        "last_at": "2026-05-03T12:00:00+00:00",
        # Apr 30, May 1, 2, 3 (UTC): the feedback at 2026-05-01T02:22Z is on May 1.
        "distinct_days": 4,
        "top_skus": [
            {"sku": "B", "views": 3},
            {"sku": "A", "views": 2},
            {"sku": "C", "views": 1},
            {"sku": "D", "views": 1},
            {"sku": "E", "views": 1},
        ],
        "searches": 2,
    }


async def test_summary_of_a_customer_without_behaviours_is_zeros(
    client: Client, admin: dict[str, str], customer: str
) -> None:
    response = await client.get(f"/v1/customers/{customer}/behaviors/summary", headers=admin)

    assert response.json() == {
        "customer_id": customer,
        "counts": dict.fromkeys(
            ["page_view", "product_view", "search", "add_to_cart", "feedback"], 0
        ),
        "first_at": None,
        "last_at": None,
        "distinct_days": 0,
        "top_skus": [],
        "searches": 0,
    }


async def test_the_openapi_document_lists_the_behaviour_operations(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"RecordBehaviors", "ListCustomerBehaviors", "SummarizeCustomerBehaviors"} <= operations
