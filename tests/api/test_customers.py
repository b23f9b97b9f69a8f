"""Registering with identity matching, the 360-degree profile, lookups and read-your-writes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, head, identity, project

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

PROFILE_KEYS = {
    "customer_id", "identities", "name", "phone", "email", "attributes", "roles", "owner", "tags",
    "points", "levels", "wallet", "stats", "rfm", "clv", "merged_into",
}  # fmt: skip
STATS_KEYS = {
    "order_count", "total_spend", "first_order_at", "last_order_at", "avg_order_value",
    "refund_count",
}  # fmt: skip


async def register(
    client: Client, admin: dict[str, str], *identities: dict[str, str], **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/customers", json={"identities": list(identities), **extra}, headers=admin
    )


async def profile(client: Client, admin: dict[str, str], customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}", headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_new_registration_answers_201_with_customer_id_and_position(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    response = await register(client, admin, identity("wechat_unionid", "o6_bmjrPTlm6"))
    assert response.status_code == 201
    body = response.json()
    assert body["matched"] is False
    assert body["position"] == head(tenant)
    assert response.headers["content-type"].startswith("application/json")


async def test_profile_has_every_contract_field_and_the_registered_values(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(
        client,
        admin,
        identity("wechat_unionid", "o6_profile"),
        name="Ada Lovelace",
        phone="+8613800000000",
        email="Ada@Example.COM",
        birthday="1990-12-10",
        attributes={"city": "Shanghai", "vip": True},
        owner="staff-7",
    )
    project(tenant)
    doc = await profile(client, admin, created.json()["customer_id"])
    assert doc.keys() >= PROFILE_KEYS
    assert doc["stats"].keys() >= STATS_KEYS
    assert doc["customer_id"] == created.json()["customer_id"]
    # The phone and email fields are identities too, normalised (E.164, lower case).
    assert doc["identities"] == [
        identity("wechat_unionid", "o6_profile"),
        identity("phone", "+8613800000000"),
        identity("email", "ada@example.com"),
    ]
    assert (doc["name"], doc["phone"], doc["email"]) == (
        "Ada Lovelace",
        "+8613800000000",
        "ada@example.com",
    )
    assert doc["attributes"] == {"city": "Shanghai", "vip": True}
    assert doc["roles"] == ["consumer"]
    assert doc["owner"] == "staff-7"
    assert doc["merged_into"] is None


async def test_registering_a_held_identity_again_answers_200_matched_with_the_same_customer(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    first = await register(client, admin, identity("member_no", "m-100"))
    before = head(tenant)
    again = await register(client, admin, identity("member_no", "m-100"))
    assert again.status_code == 200
    assert again.json()["matched"] is True
    assert again.json()["customer_id"] == first.json()["customer_id"]
    assert head(tenant) == before
    assert again.json()["position"] <= head(tenant)


async def test_identity_match_folds_type_case_width_and_surrounding_spaces(
    client: Client, admin: dict[str, str]
) -> None:
    first = await register(client, admin, identity("member_no", "m-200"))
    again = await register(client, admin, identity(" MEMBER_NO ", "\uff4d-\uff12\uff10\uff10 "))
    assert again.status_code == 200, again.text
    assert again.json()["customer_id"] == first.json()["customer_id"]


async def test_registering_a_known_and_a_new_identity_links_the_new_one_to_the_customer(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    first = await register(client, admin, identity("member_no", "m-300"))
    linked = await register(
        client, admin, identity("member_no", "m-300"), identity("email_id", "m300@example.com")
    )
    assert linked.status_code == 200
    assert linked.json()["matched"] is True
    assert linked.json()["customer_id"] == first.json()["customer_id"]
    assert linked.json()["position"] == head(tenant)
    project(tenant)
    doc = await profile(client, admin, first.json()["customer_id"])
    assert doc["identities"] == [
        identity("member_no", "m-300"),
        identity("email_id", "m300@example.com"),
    ]


async def test_linked_identity_then_matches_the_same_customer(
    client: Client, admin: dict[str, str]
) -> None:
    first = await register(client, admin, identity("member_no", "m-400"))
    await register(client, admin, identity("member_no", "m-400"), identity("phone_id", "400"))
    by_new = await register(client, admin, identity("phone_id", "400"))
    assert by_new.status_code == 200
    assert by_new.json()["customer_id"] == first.json()["customer_id"]


async def test_identities_held_by_two_customers_merge_them_into_the_first_registered(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    # Without a program every identity type identifies its person: the two are one person.
    a = (await register(client, admin, identity("member_no", "a-1"))).json()["customer_id"]
    b = (await register(client, admin, identity("member_no", "b-1"))).json()["customer_id"]
    response = await register(
        client,
        admin,
        identity("member_no", "a-1"),
        identity("member_no", "b-1"),
        identity("email_id", "new@example.com"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customer_id"], body["matched"]) == (a, True)
    assert len(body["merged"]) == 1
    assert body["position"] == head(tenant)
    project(tenant)
    assert (await profile(client, admin, b))["merged_into"] == a
    assert {(i["type"], i["value"]) for i in (await profile(client, admin, a))["identities"]} == {
        ("member_no", "a-1"),
        ("member_no", "b-1"),
        ("email_id", "new@example.com"),
    }


async def test_duplicate_identities_in_one_request_register_one_holding_it_once(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(
        client, admin, identity("member_no", "dup-1"), identity("MEMBER_NO", "dup-1 ")
    )
    assert created.status_code == 201, created.text
    project(tenant)
    doc = await profile(client, admin, created.json()["customer_id"])
    assert doc["identities"] == [identity("member_no", "dup-1")]


async def test_lookup_by_identity_returns_the_holder(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(client, admin, identity("member_no", "find-1"), email="F@x.io")
    await register(client, admin, identity("member_no", "find-2"))
    project(tenant)
    response = await client.get(
        "/v1/customers", params={"identity": "member_no:find-1"}, headers=admin
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["customer_id"] for i in items] == [created.json()["customer_id"]]
    assert "next_cursor" in response.json()


async def test_lookup_by_email_is_case_insensitive(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(client, admin, identity("member_no", "mail-1"), email="Mixed@Case.io")
    project(tenant)
    response = await client.get("/v1/customers", params={"email": "mixed@CASE.io"}, headers=admin)
    assert [i["customer_id"] for i in response.json()["items"]] == [created.json()["customer_id"]]


async def test_lookup_by_phone_returns_the_holder(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(client, admin, identity("member_no", "tel-1"), phone="+16502530000")
    project(tenant)
    # Looked up as registration normalised it: any spelling of the same number finds it.
    for spelling in ("+16502530000", "+1 (650) 253-0000"):
        response = await client.get("/v1/customers", params={"phone": spelling}, headers=admin)
        assert [i["customer_id"] for i in response.json()["items"]] == [
            created.json()["customer_id"]
        ]
    assert [i["customer_id"] for i in response.json()["items"]] == [created.json()["customer_id"]]


# "+16502530199" typed with full-width characters, as some input methods send it.
FULL_WIDTH_PHONE = " " + "".join(chr(ord(c) + 0xFEE0) for c in "+16502530199") + " "


async def test_lookup_by_phone_folds_full_width_digits_like_registration(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(client, admin, identity("member_no", "tel-fw"), phone="+16502530199")
    project(tenant)
    response = await client.get("/v1/customers", params={"phone": FULL_WIDTH_PHONE}, headers=admin)
    assert [i["customer_id"] for i in response.json()["items"]] == [created.json()["customer_id"]]


async def test_lookup_pages_with_next_cursor_until_the_last_page(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    # A shared store phone: the program lets several customers hold it without matching.
    program = {
        "currency": "CNY",
        "timezone": "UTC",
        "point_types": [{"code": "points"}],
        "identity": {"rules": {"phone": {"match": "none", "max_customers": 10}}},
    }
    assert (await client.put("/v1/program", json=program, headers=admin)).status_code == 200
    ids = sorted(
        [
            (
                await register(
                    client, admin, identity("member_no", f"pg-{n}"), phone="+16502530123"
                )
            ).json()["customer_id"]
            for n in range(5)
        ]
    )
    project(tenant)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"phone": "+16502530123", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/customers", params=params, headers=admin)).json()
        seen += [i["customer_id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


async def test_lookup_with_a_malformed_cursor_answers_400_invalid_cursor(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.get(
        "/v1/customers", params={"phone": "+1", "cursor": "not-a-cursor"}, headers=admin
    )
    assert_problem(response, 400, "invalid_cursor")


async def test_lookup_of_an_unknown_identity_returns_no_items(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.get(
        "/v1/customers", params={"identity": "member_no:nobody"}, headers=admin
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [{}, {"identity": "member_no"}, {"identity": ":x"}, {"phone": "1", "email": "a@b.c"}],
    ids=["none", "no-colon", "no-type", "two-criteria"],
)
async def test_lookup_needs_exactly_one_well_formed_criterion(
    client: Client, admin: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get("/v1/customers", params=params, headers=admin)
    assert_problem(response, 400, "invalid_parameter")


async def test_min_position_beyond_the_log_head_answers_400_at_once(
    client: Client, admin: dict[str, str]
) -> None:
    created = await register(client, admin, identity("member_no", "beyond-1"))
    started = time.monotonic()
    response = await client.get(
        f"/v1/customers/{created.json()['customer_id']}",
        params={"min_position": 10**12},
        headers=admin,
    )
    elapsed = time.monotonic() - started
    body = assert_problem(response, 400, "position_beyond_head")
    assert body["field"] == "min_position"
    assert body["head"] >= created.json()["position"]
    assert elapsed < 1.0  # refused, not waited for


async def test_min_position_the_read_model_does_not_reach_answers_503_read_model_behind(
    client: Client, admin: dict[str, str]
) -> None:
    # No projection worker runs behind ``client``: the profile never reaches the write.
    created = await register(client, admin, identity("member_no", "behind-1"))
    started = time.monotonic()
    response = await client.get(
        f"/v1/customers/{created.json()['customer_id']}",
        params={"min_position": created.json()["position"]},
        headers=admin,
    )
    elapsed = time.monotonic() - started
    assert_problem(response, 503, "read_model_behind")
    assert int(response.headers["retry-after"]) >= 1
    assert 4.0 <= elapsed < 15.0  # bounded wait: about 5 s, not forever


async def test_min_position_already_reached_answers_at_once(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    created = await register(client, admin, identity("member_no", "reached-1"))
    project(tenant)
    started = time.monotonic()
    response = await client.get(
        "/v1/customers",
        params={"identity": "member_no:reached-1", "min_position": created.json()["position"]},
        headers=admin,
    )
    assert response.status_code == 200
    assert len(response.json()["items"]) == 1
    assert time.monotonic() - started < 2.0


async def test_negative_min_position_answers_400_invalid_parameter(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.get(
        "/v1/customers/1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        params={"min_position": -1},
        headers=admin,
    )
    assert assert_problem(response, 400, "invalid_parameter")["field"] == "min_position"


async def test_min_position_reads_your_write_through_the_app_projection_worker(
    anyio_backend: str, settings: Settings, runtime: Runtime, tenant: Tenant, admin: dict[str, str]
) -> None:
    async with AsyncTestClient(create_app(settings, runtime=runtime, projections=True)) as live:
        created = await live.post(
            "/v1/customers",
            json={"identities": [identity("member_no", "ryw-1")], "name": "Grace"},
            headers=admin,
        )
        assert created.status_code == 201
        body = created.json()
        response = await live.get(
            f"/v1/customers/{body['customer_id']}",
            params={"min_position": body["position"]},
            headers=admin,
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Grace"


async def test_app_stops_the_projection_worker_it_started_on_a_given_runtime(
    anyio_backend: str, settings: Settings, runtime: Runtime
) -> None:
    assert runtime.worker is None
    async with AsyncTestClient(create_app(settings, runtime=runtime, projections=True)):
        assert runtime.worker is not None
        threads = list(runtime.worker._threads)
        assert threads
        assert all(t.is_alive() for t in threads)
    assert runtime.worker is None
    assert not any(t.is_alive() for t in threads)
