"""Idempotency-Key on POST /v1/customers: replay, reuse, in-flight, rejections (C1-C6, J4)."""

from __future__ import annotations

import json
import secrets
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.schemas import RegisterCustomerBody
from application.idempotency import IdempotencyKey
from application.permissions import Role
from application.registration import RegisterCustomer
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, bearer, head, identity, project
from tests.conftest import new_slug

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]


def new_key() -> str:
    return f"reg:{secrets.token_hex(8)}"


def body_for(value: str, **extra: Any) -> dict[str, Any]:
    return {"identities": [identity("member_no", value)], **extra}


async def register(
    client: Client, headers: dict[str, str], body: dict[str, Any], key: str | None
) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await client.post("/v1/customers", json=body, headers={**headers, **extra})


async def feed_positions(client: Client, admin: dict[str, str]) -> list[int]:
    feed = (await client.get("/v1/events", params={"limit": 1000}, headers=admin)).json()
    return [item["position"] for item in feed["items"]]


def fingerprinted(key: str, body: dict[str, Any]) -> IdempotencyKey:
    """The key the kernel computes: over the command the route makes of the wire body."""
    decoded = msgspec.json.decode(json.dumps(body).encode(), type=RegisterCustomerBody)
    return IdempotencyKey("RegisterCustomer", key, RegisterCustomer.of(decoded).fingerprint())


async def test_first_request_with_a_key_answers_201_without_replay_header(
    client: Client, admin: dict[str, str]
) -> None:
    response = await register(client, admin, body_for("c1-first"), new_key())
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert response.json()["matched"] is False


async def test_same_key_and_body_replays_200_identical_body_and_writes_nothing(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key, body = new_key(), body_for("c1-replay", name="Ada")
    first = await register(client, admin, body, key)
    assert first.status_code == 201
    events_before, head_before = await feed_positions(client, admin), head(tenant)

    again = await register(client, admin, body, key)

    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.content == first.content
    assert head(tenant) == head_before
    assert await feed_positions(client, admin) == events_before


async def test_replay_ignores_json_key_order_and_whitespace(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key = new_key()
    first = await client.post(
        "/v1/customers",
        content=b'{"name": "Ada", "identities": [{"type": "member_no", "value": "c1-order"}]}',
        headers={**admin, "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert first.status_code == 201
    before = head(tenant)
    again = await client.post(
        "/v1/customers",
        content=b'{"identities":[{"value":"c1-order","type":"member_no"}],"name":"Ada"}',
        headers={**admin, "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    assert head(tenant) == before


async def test_replay_is_served_to_another_api_key_of_the_same_tenant(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: Any
) -> None:
    # Keys are scoped to the tenant (like client ids such as order_id): a retry sent with
    # another API key of the same tenant is a replay, not a second registration.
    key, body = new_key(), body_for("c1-other-key")
    first = await register(client, admin, body, key)
    again = await register(client, key_for(tenant, Role.INTEGRATOR), body, key)
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_same_key_with_a_different_body_answers_422_and_writes_nothing(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key = new_key()
    assert (await register(client, admin, body_for("c2-a"), key)).status_code == 201
    before = head(tenant)

    response = await register(client, admin, body_for("c2-b"), key)

    assert_problem(response, 422, "idempotency_key_reused")
    assert head(tenant) == before
    project(tenant)
    for value, holders in (("c2-a", 1), ("c2-b", 0)):
        found = await client.get(
            "/v1/customers", params={"identity": f"member_no:{value}"}, headers=admin
        )
        assert len(found.json()["items"]) == holders


async def test_request_in_flight_under_the_same_key_answers_409_request_in_progress(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key, body = new_key(), body_for("c3-flight")
    claim = fingerprinted(key, body)
    assert tenant.idempotency.begin(claim) is None  # another request holds the key now

    response = await register(client, admin, body, key)

    assert_problem(response, 409, "request_in_progress")
    assert head(tenant) == 0


async def test_key_released_by_an_unfinished_request_then_runs_exactly_once(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key, body = new_key(), body_for("c3-release")
    claim = fingerprinted(key, body)
    assert tenant.idempotency.begin(claim) is None
    assert (await register(client, admin, body, key)).status_code == 409
    tenant.idempotency.release(claim)

    first = await register(client, admin, body, key)
    second = await register(client, admin, body, key)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert len(await feed_positions(client, admin)) == 1


async def test_in_flight_claim_with_a_different_body_answers_422(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key = new_key()
    assert tenant.idempotency.begin(fingerprinted(key, body_for("c3-x"))) is None
    response = await register(client, admin, body_for("c3-y"), key)
    assert_problem(response, 422, "idempotency_key_reused")


async def test_rejected_first_attempt_is_replayed_identically_for_the_same_key(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    key = new_key()
    body = body_for("c5-replay", referrer_id="1b4e28ba-2fa1-41d2-883f-0016d3cca427")
    first = await register(client, admin, body, key)
    problem = assert_problem(first, 422, "unknown_referrer")

    again = await register(client, admin, body, key)

    assert assert_problem(again, 422, "unknown_referrer") == problem
    assert again.headers["idempotent-replayed"] == "true"
    assert head(tenant) == 0


async def test_rejected_attempt_stays_rejected_for_its_key_after_the_cause_is_fixed(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    # C5: the referrer is registered after the first, rejected attempt. The same key still
    # answers the original rejection (it is the answer to that key); a new key succeeds.
    referrer_key = new_key()
    # Customer ids are derived from tenant + idempotency key (C10): the referrer's id is known.
    referrer_id = str(
        uuid5(NAMESPACE_URL, f"membercore:{tenant.slug}:RegisterCustomer:{referrer_key}")
    )
    key, body = new_key(), body_for("c5-fixed", referrer_id=referrer_id)
    rejected = await register(client, admin, body, key)
    assert_problem(rejected, 422, "unknown_referrer")

    referrer = await register(client, admin, body_for("c5-referrer"), referrer_key)
    assert referrer.status_code == 201
    assert referrer.json()["customer_id"] == referrer_id  # precondition of this test
    before = head(tenant)

    retried = await register(client, admin, body, key)
    assert retried.status_code == 422
    assert retried.json() == rejected.json()
    assert head(tenant) == before

    fresh = await register(client, admin, body, new_key())
    assert fresh.status_code == 201, fresh.text


async def test_invalid_input_is_not_stored_against_the_key(
    client: Client, admin: dict[str, str]
) -> None:
    # A 400 from body validation never reached the command: the key stays unused.
    key = new_key()
    bad = await register(client, admin, {"identities": []}, key)
    assert_problem(bad, 400)
    good = await register(client, admin, body_for("c5-after-400"), key)
    assert good.status_code == 201, good.text


async def test_same_key_in_two_tenants_does_not_collide(
    client: Client, admin: dict[str, str], runtime: Runtime, tenant: Tenant
) -> None:
    other = runtime.tenants.create(new_slug("idem"))
    other_admin = bearer(runtime.keys.create(other.slug, Role.ADMIN))
    key = new_key()

    mine = await register(client, admin, body_for("c6-mine", name="Mine"), key)
    theirs = await register(client, other_admin, body_for("c6-theirs", name="Theirs"), key)

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    project(tenant)
    project(other)
    profile = await client.get(f"/v1/customers/{theirs.json()['customer_id']}", headers=other_admin)
    assert profile.json()["name"] == "Theirs"
    assert profile.json()["identities"] == [identity("member_no", "c6-theirs")]
    assert head(other) > 0
    found = await client.get(
        "/v1/customers", params={"identity": "member_no:c6-theirs"}, headers=admin
    )
    assert found.json()["items"] == []


async def test_matched_registration_under_a_key_is_replayed_as_200(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    assert (await register(client, admin, body_for("c1-match"), None)).status_code == 201
    key = new_key()
    first = await register(client, admin, body_for("c1-match"), key)
    assert first.status_code == 200
    assert first.json()["matched"] is True
    before = head(tenant)
    again = await register(client, admin, body_for("c1-match"), key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert head(tenant) == before


@pytest.mark.parametrize(
    "bad_key",
    [
        "k" * 129,
        "has space",
        "slash/key",
        "quote'",
        "",
        "é".encode(),
        "k" * 256,
    ],
    ids=["too-long", "space", "slash", "quote", "empty", "non-ascii", "over-255"],
)
async def test_malformed_idempotency_key_answers_400_and_writes_nothing(
    client: Client, admin: dict[str, str], tenant: Tenant, bad_key: str | bytes
) -> None:
    response = await client.post(
        "/v1/customers",
        json=body_for("j4"),
        headers={**admin, "Idempotency-Key": bad_key},  # type: ignore[dict-item]
    )
    problem = assert_problem(response, 400, "invalid_idempotency_key")
    assert problem["field"] == "Idempotency-Key"
    assert head(tenant) == 0


async def test_longest_allowed_idempotency_key_is_accepted(
    client: Client, admin: dict[str, str]
) -> None:
    key = "A.b_c:d-" * 16
    assert len(key) == 128
    response = await register(client, admin, body_for("j4-max"), key)
    assert response.status_code == 201, response.text
