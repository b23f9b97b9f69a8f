"""GET /v1/events: the tenant's public events in position order, paged, filtered by type."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.public_events import PUBLIC_EVENTS
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, head, identity

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

ITEM_KEYS = {"position", "type", "schema_version", "stream_id", "version", "occurred_at", "data"}


@pytest.fixture
async def history(client: Client, admin: dict[str, str]) -> dict[str, str]:
    """Three registrations and one identity link, in that order; returns name -> customer id."""
    ids = {}
    for name in ("ann", "bob", "cat"):
        response = await client.post(
            "/v1/customers",
            json={"identities": [identity("member_no", name)], "name": name.title()},
            headers=admin,
        )
        assert response.status_code == 201
        ids[name] = response.json()["customer_id"]
    linked = await client.post(
        "/v1/customers",
        json={"identities": [identity("member_no", "ann"), identity("email_id", "ann@x.io")]},
        headers=admin,
    )
    assert linked.status_code == 200
    return ids


async def feed(client: Client, admin: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/events", params=params, headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_feed_lists_public_events_in_position_order(
    client: Client, admin: dict[str, str], history: dict[str, str]
) -> None:
    items = (await feed(client, admin))["items"]
    assert [(i["type"], i["stream_id"]) for i in items] == [
        ("customer.registered", history["ann"]),
        ("customer.registered", history["bob"]),
        ("customer.registered", history["cat"]),
        ("customer.identities_linked", history["ann"]),
    ]
    positions = [i["position"] for i in items]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


async def test_feed_items_carry_the_documented_keys_and_payload(
    client: Client, admin: dict[str, str], history: dict[str, str]
) -> None:
    items = (await feed(client, admin))["items"]
    for item in items:
        assert set(item) == ITEM_KEYS
        assert isinstance(item["position"], int)
        assert item["schema_version"] == 1
        assert datetime.fromisoformat(item["occurred_at"]).utcoffset() is not None
        assert item["data"]["customer_id"] == item["stream_id"]
    registered, linked = items[0], items[3]
    assert registered["version"] == 1
    assert registered["data"]["identities"] == [identity("member_no", "ann")]
    assert registered["data"]["name"] == "Ann"
    assert linked["version"] == 2
    assert linked["data"] == {
        "customer_id": history["ann"],
        "identities": [identity("email_id", "ann@x.io")],
    }


async def test_feed_hides_internal_identity_claim_streams(
    client: Client, admin: dict[str, str], tenant: Tenant, history: dict[str, str]
) -> None:
    items = (await feed(client, admin))["items"]
    assert {i["stream_id"] for i in items} == set(history.values())
    assert {i["type"] for i in items} <= {p.name for p in PUBLIC_EVENTS}
    assert len(items) < head(tenant)  # the claims are in the log, not in the feed


async def test_feed_after_a_position_returns_only_later_events(
    client: Client, admin: dict[str, str], history: dict[str, str]
) -> None:
    everything = (await feed(client, admin))["items"]
    cut = everything[1]["position"]
    later = (await feed(client, admin, after=cut))["items"]
    assert later == everything[2:]


async def test_feed_limit_caps_the_page_and_next_cursor_resumes_without_gaps(
    client: Client, admin: dict[str, str], history: dict[str, str]
) -> None:
    everything = (await feed(client, admin))["items"]
    seen: list[dict[str, Any]] = []
    cursor = "0"
    for _ in range(10):
        page = await feed(client, admin, cursor=cursor, limit=3)
        assert len(page["items"]) <= 3
        if not page["items"]:
            assert page["next_cursor"] == cursor
            break
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        assert cursor == str(page["items"][-1]["position"])
    assert seen == everything


async def test_feed_of_an_empty_tenant_is_empty_and_keeps_the_cursor(
    client: Client, admin: dict[str, str]
) -> None:
    page = await feed(client, admin, after=7)
    assert page == {"items": [], "next_cursor": "7"}


async def test_feed_types_filter_returns_only_those_types(
    client: Client, admin: dict[str, str], history: dict[str, str]
) -> None:
    linked = (await feed(client, admin, types="customer.identities_linked"))["items"]
    assert [(i["type"], i["stream_id"]) for i in linked] == [
        ("customer.identities_linked", history["ann"])
    ]
    both = await feed(client, admin, types="customer.registered, customer.identities_linked")
    assert len(both["items"]) == 4


@pytest.mark.parametrize(
    "types", ["customer.deleted", "customer.registered,nope", "Customer.Registered"]
)
async def test_feed_unknown_event_type_answers_400_unknown_event_type(
    client: Client, admin: dict[str, str], types: str
) -> None:
    response = await client.get("/v1/events", params={"types": types}, headers=admin)
    assert assert_problem(response, 400, "unknown_event_type")["field"] == "types"


@pytest.mark.parametrize(
    "cursor",
    ["abc", "-1", "1.5", "\u00b2", "\u0663"],
    ids=["word", "neg", "dec", "sup2", "arabic3"],
)
async def test_feed_non_numeric_cursor_answers_400_invalid_cursor(
    client: Client, admin: dict[str, str], cursor: str
) -> None:
    response = await client.get("/v1/events", params={"cursor": cursor}, headers=admin)
    assert_problem(response, 400, "invalid_cursor")
