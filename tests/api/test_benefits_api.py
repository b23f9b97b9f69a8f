"""Benefits over HTTP: holdings, grants, revocations, redemptions (核销) and their history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, identity

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "benefits": [
        {
            "code": "free_shipping",
            "name": "包邮",
            "quota": {"count": 2, "period": "month"},
            "validity_days": 30,
        },
        {"code": "birthday_coupon", "name": "生日券", "quota": {"count": 1, "period": "year"}},
        {"code": "lounge", "name": "贵宾室", "enabled": False},
    ],
}


async def customer(client: Client, admin: dict[str, str]) -> str:
    put = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert put.status_code == 200, put.text
    response = await client.post(
        "/v1/customers", json={"identities": [identity("member_no", uuid4().hex)]}, headers=admin
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["customer_id"]
    return customer_id


async def grant(
    client: Client, admin: dict[str, str], cid: str, code: str, grant_id: str = "g1", **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/customers/{cid}/benefits/grants",
        json={"grant_id": grant_id, "code": code, "reason": "vip care", **extra},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def redemptions(cid: str, code: str = "free_shipping") -> str:
    return f"/v1/customers/{cid}/benefits/{code}/redemptions"


async def test_a_redemption_answers_201_then_its_replay_200_with_the_identical_body(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "free_shipping")
    body = {"redemption_id": "pos-1:r1", "note": "order 42"}

    first = await client.post(redemptions(cid), json=body, headers=admin)
    again = await client.post(redemptions(cid), json=body, headers=admin)

    assert first.status_code == 201, first.text
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    out = first.json()
    assert out["redemption_id"] == "pos-1:r1"
    assert (out["benefit"], out["source"], out["note"]) == ("free_shipping", "grant:g1", "order 42")
    assert (out["quota"], out["period"], out["used"], out["remaining"]) == (2, "month", 1, 1)
    assert out["program_version"] == 1
    assert isinstance(out["position"], int)
    assert out["position"] > 0


async def test_the_same_redemption_id_with_another_body_is_422_idempotency_key_reused(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "free_shipping")
    await grant(client, admin, cid, "birthday_coupon", grant_id="g2")
    await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=admin)

    other_note = await client.post(
        redemptions(cid), json={"redemption_id": "r1", "note": "x"}, headers=admin
    )
    other_code = await client.post(
        redemptions(cid, "birthday_coupon"), json={"redemption_id": "r1"}, headers=admin
    )

    assert_problem(other_note, 422, "idempotency_key_reused")
    assert_problem(other_code, 422, "idempotency_key_reused")


async def test_a_third_redemption_in_a_month_with_quota_two_is_409_quota_exhausted(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "free_shipping")
    for n in (1, 2):
        ok = await client.post(redemptions(cid), json={"redemption_id": f"r{n}"}, headers=admin)
        assert ok.status_code == 201, ok.text

    third = await client.post(redemptions(cid), json={"redemption_id": "r3"}, headers=admin)

    problem = assert_problem(third, 409, "benefit_quota_exhausted")
    assert (problem["quota"], problem["period"]) == (2, "month")


async def test_redeeming_a_benefit_not_held_is_409_benefit_not_held(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)

    response = await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=admin)

    assert_problem(response, 409, "benefit_not_held")


async def test_redeeming_a_switched_off_benefit_is_409_benefit_disabled(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "lounge")

    response = await client.post(
        redemptions(cid, "lounge"), json={"redemption_id": "r1"}, headers=admin
    )
    listed = await client.get(f"/v1/customers/{cid}/benefits", headers=admin)

    assert_problem(response, 409, "benefit_disabled")
    assert [(b["code"], b["enabled"]) for b in listed.json()["benefits"]] == [("lounge", False)]


async def test_an_unknown_benefit_is_404_benefit_not_found(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)

    redeemed = await client.post(
        redemptions(cid, "spa"), json={"redemption_id": "r1"}, headers=admin
    )
    granted = await client.post(
        f"/v1/customers/{cid}/benefits/grants",
        json={"grant_id": "g1", "code": "spa", "reason": "x"},
        headers=admin,
    )

    assert_problem(redeemed, 404, "benefit_not_found")
    assert_problem(granted, 404, "benefit_not_found")


async def test_an_unknown_customer_is_404_customer_not_found(
    client: Client, admin: dict[str, str]
) -> None:
    await customer(client, admin)

    for cid in (str(uuid4()), "not-a-uuid"):
        listed = await client.get(f"/v1/customers/{cid}/benefits", headers=admin)
        redeemed = await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=admin)
        assert_problem(listed, 404, "customer_not_found")
        assert_problem(redeemed, 404, "customer_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"redemption_id": "r1", "extra": 1},
        {"redemption_id": "bad id with spaces"},
        {"note": "no id"},
        {"redemption_id": 5},
    ],
)
async def test_a_malformed_redemption_is_400(
    client: Client, admin: dict[str, str], body: dict[str, Any]
) -> None:
    cid = await customer(client, admin)

    response = await client.post(redemptions(cid), json=body, headers=admin)

    assert_problem(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        {"grant_id": "g1", "code": "free_shipping", "reason": "x", "valid_days": 3},
        {"grant_id": "g1", "code": "free_shipping"},
        {"grant_id": "g1", "code": "free_shipping", "reason": "x", "until": "tomorrow"},
        {"grant_id": "g1", "code": "free_shipping", "reason": "x", "until": "2030-01-01T00:00"},
        {"grant_id": "g1", "code": "free_shipping", "reason": "x", "until": "2001-01-01"},
    ],
)
async def test_a_malformed_grant_is_400(
    client: Client, admin: dict[str, str], body: dict[str, Any]
) -> None:
    cid = await customer(client, admin)

    response = await client.post(f"/v1/customers/{cid}/benefits/grants", json=body, headers=admin)

    assert_problem(response, 400)


async def test_a_grant_until_a_bare_date_ends_at_that_local_midnight(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)

    body = await grant(client, admin, cid, "free_shipping", until="2099-01-01")

    assert body["until"] == "2099-01-01T00:00:00+08:00"
    assert body["benefit"] == "free_shipping"
    assert body["grant_id"] == "g1"


async def test_the_benefit_list_shows_sources_validity_and_quota_left(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    granted = await grant(client, admin, cid, "free_shipping")
    await grant(client, admin, cid, "birthday_coupon", grant_id="g2")
    redeemed = await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=admin)

    response = await client.get(
        f"/v1/customers/{cid}/benefits",
        params={"min_position": redeemed.json()["position"]},
        headers=admin,
    )

    assert response.status_code == 200, response.text
    by_code = {b["code"]: b for b in response.json()["benefits"]}
    assert list(by_code) == ["free_shipping", "birthday_coupon"]
    shipping = by_code["free_shipping"]
    assert (shipping["name"], shipping["enabled"], shipping["sources"]) == (
        "包邮",
        True,
        ["grant:g1"],
    )
    assert shipping["valid_until"] == granted["until"]
    quota = shipping["quota"]
    assert (quota["count"], quota["period"], quota["used"], quota["remaining"]) == (
        2,
        "month",
        1,
        1,
    )
    assert by_code["birthday_coupon"]["valid_until"] is None  # no validity_days: no end
    assert by_code["birthday_coupon"]["quota"]["remaining"] == 1


async def test_a_grant_replay_is_200_and_a_revocation_ends_the_holding(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    body = {"grant_id": "g1", "code": "birthday_coupon", "reason": "vip"}
    first = await client.post(f"/v1/customers/{cid}/benefits/grants", json=body, headers=admin)
    again = await client.post(f"/v1/customers/{cid}/benefits/grants", json=body, headers=admin)

    revoked = await client.post(
        f"/v1/customers/{cid}/benefits/grants/g1/revoke", json={"reason": "oops"}, headers=admin
    )
    listed = await client.get(f"/v1/customers/{cid}/benefits", headers=admin)
    redeemed = await client.post(
        redemptions(cid, "birthday_coupon"), json={"redemption_id": "r1"}, headers=admin
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["position"] > first.json()["position"]
    assert listed.json()["benefits"] == []
    assert_problem(redeemed, 409, "benefit_not_held")


async def test_revoking_an_unknown_grant_is_404(client: Client, admin: dict[str, str]) -> None:
    cid = await customer(client, admin)

    response = await client.post(
        f"/v1/customers/{cid}/benefits/grants/nope/revoke", json={"reason": "x"}, headers=admin
    )

    assert_problem(response, 404, "benefit_grant_not_found")


async def test_the_redemption_history_pages_oldest_first(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "free_shipping")
    await grant(client, admin, cid, "birthday_coupon", grant_id="g2")
    for rid, code in (("a", "free_shipping"), ("b", "birthday_coupon"), ("c", "free_shipping")):
        r = await client.post(redemptions(cid, code), json={"redemption_id": rid}, headers=admin)
        assert r.status_code == 201, r.text
    path = f"/v1/customers/{cid}/benefits/redemptions"

    page1 = (await client.get(path, params={"limit": 2}, headers=admin)).json()
    page2 = (
        await client.get(path, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=admin)
    ).json()
    shipping = (await client.get(path, params={"benefit": "free_shipping"}, headers=admin)).json()

    assert [i["redemption_id"] for i in page1["items"]] == ["a", "b"]
    assert [i["redemption_id"] for i in page2["items"]] == ["c"]
    assert page2["next_cursor"] is None
    assert [i["redemption_id"] for i in shipping["items"]] == ["a", "c"]
    assert page1["items"][0]["source"] == "grant:g1"
    assert page1["items"][1]["benefit"] == "birthday_coupon"


async def test_roles_without_the_benefit_permissions_are_403(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    cid = await customer(client, admin)
    finance, frontend = key_for(tenant, Role.FINANCE), key_for(tenant, Role.FRONTEND)

    redeem = await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=finance)
    grant_ = await client.post(
        f"/v1/customers/{cid}/benefits/grants",
        json={"grant_id": "g1", "code": "free_shipping", "reason": "x"},
        headers=frontend,
    )
    listed = await client.get(f"/v1/customers/{cid}/benefits", headers=finance)

    assert_problem(redeem, 403, "forbidden")
    assert_problem(grant_, 403, "forbidden")
    assert listed.status_code == 200


async def test_benefit_events_reach_the_feed_as_public_types(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "free_shipping")
    await client.post(redemptions(cid), json={"redemption_id": "r1"}, headers=admin)

    feed = await client.get(
        "/v1/events", params={"types": "benefit.granted,benefit.redeemed"}, headers=admin
    )

    assert feed.status_code == 200, feed.text
    items = feed.json()["items"]
    assert [i["type"] for i in items] == ["benefit.granted", "benefit.redeemed"]
    redeemed = items[1]["data"]
    assert (redeemed["customer_id"], redeemed["benefit"], redeemed["source"]) == (
        cid,
        "free_shipping",
        "grant:g1",
    )
    assert redeemed["program_version"] == 1


async def test_the_benefit_list_as_of_a_time_before_a_grant_is_empty(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    await grant(client, admin, cid, "birthday_coupon")
    path = f"/v1/customers/{cid}/benefits"

    before = await client.get(path, params={"at": "2001-01-01"}, headers=admin)
    naive = await client.get(path, params={"at": "2001-01-01T00:00:00"}, headers=admin)

    assert before.status_code == 200, before.text
    assert before.json()["benefits"] == []
    assert before.json()["at"] == "2001-01-01T00:00:00+08:00"
    assert_problem(naive, 400, "invalid_input")


async def test_odd_text_and_times_are_answered_without_a_500(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await customer(client, admin)
    grants = f"/v1/customers/{cid}/benefits/grants"

    nul_note = await client.post(
        redemptions(cid, "lounge"), json={"redemption_id": "r1", "note": "a\x00b"}, headers=admin
    )
    nul_reason = await client.post(
        grants, json={"grant_id": "g1", "code": "lounge", "reason": "x\x00y"}, headers=admin
    )
    far = await client.post(
        grants,
        json={
            "grant_id": "g2",
            "code": "lounge",
            "reason": "x",
            "until": "9999-12-31T23:59:59-23:00",
        },
        headers=admin,
    )
    seconds_offset = await client.post(
        grants,
        json={
            "grant_id": "g3",
            "code": "lounge",
            "reason": "x",
            "until": "2090-01-01T00:00:00+05:30:15",
        },
        headers=admin,
    )
    long_code = await client.post(
        redemptions(cid, "x" * 2000), json={"redemption_id": "r2"}, headers=admin
    )

    assert assert_problem(nul_note, 400, "invalid_value")["field"] == "note"
    assert assert_problem(nul_reason, 400, "invalid_value")["field"] == "reason"
    assert assert_problem(far, 400, "invalid_input")["errors"][0]["field"] == "until"
    assert seconds_offset.status_code == 201, seconds_offset.text
    assert seconds_offset.json()["until"] == "2089-12-31T18:29:45+00:00"
    assert assert_problem(long_code, 400, "invalid_path_parameter")["field"] == "code"
