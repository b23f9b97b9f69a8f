"""Points over HTTP: balances, entries, redemptions, adjustments, holds and the expiry job;
status codes, problem bodies, idempotent replay and 400s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from application.points import load_account
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, identity

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]
SHANGHAI = ZoneInfo("Asia/Shanghai")

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "points", "expiry": {"mode": "rolling_days", "days": 30}},
        {"code": "growth", "redeemable": False},
    ],
}


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def program(client: Client, admin: dict[str, str]) -> None:
    response = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200, response.text


@pytest.fixture
async def cid(client: Client, admin: dict[str, str], program: None) -> UUID:
    response = await client.post(
        "/v1/customers",
        json={"identities": [identity("wechat_unionid", f"u-{uuid4()}")]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["customer_id"])


def earn(
    tenant: Tenant,
    customer_id: UUID,
    lot_id: str,
    points: int,
    *,
    at: datetime | None = None,
    expires_at: datetime | None = None,
    active_at: datetime | None = None,
    point_type: str = "points",
) -> None:
    """Earn a lot the way an order would (orders are another module's)."""
    at = at or now() - timedelta(hours=1)
    account = load_account(tenant.app, customer_id, point_type) or PointsAccount.open(
        customer_id, point_type, at=at
    )
    account.earn(
        lot_id,
        points,
        earned_at=at,
        at=at,
        expires_at=expires_at,
        active_at=active_at or at,
        source={"kind": "test"},
        program_version=1,
    )
    tenant.app.save(account)


def base(customer_id: UUID, point_type: str = "points") -> str:
    return f"/v1/customers/{customer_id}/points/{point_type}"


# -- balances ---------------------------------------------------------------------------------


async def test_balances_show_available_pending_held_and_expiries_by_local_date(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    day = now().astimezone(SHANGHAI).date() + timedelta(days=3)
    soon = datetime(day.year, day.month, day.day, 12, tzinfo=SHANGHAI)
    earn(tenant, cid, "a", 100, expires_at=soon)
    earn(tenant, cid, "b", 30, expires_at=soon + timedelta(hours=1))
    earn(tenant, cid, "p", 20, active_at=now() + timedelta(days=7))
    earn(tenant, cid, "g", 40, point_type="growth")
    hold = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "h1", "amount": 25}, headers=admin
    )
    assert hold.status_code == 201, hold.text

    response = await client.get(f"/v1/customers/{cid}/points", headers=admin)

    assert response.status_code == 200, response.text
    points, growth = response.json()["balances"]
    assert points == {
        "point_type": "points",
        "available": 105,
        "pending": 20,
        "held": 25,
        "expiring": [{"on": day.isoformat(), "amount": 75 + 30}],
    }
    assert growth == {
        "point_type": "growth",
        "available": 40,
        "pending": 0,
        "held": 0,
        "expiring": [],
    }


async def test_balances_of_an_unknown_customer_are_404(
    client: Client, admin: dict[str, str], program: None
) -> None:
    response = await client.get(f"/v1/customers/{uuid4()}/points", headers=admin)
    assert_problem(response, 404, "customer_not_found")


# -- redemptions ------------------------------------------------------------------------------


async def test_a_redemption_answers_201_with_the_lots_taken_and_a_replay_200_with_the_same_body(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "late", 50, expires_at=now() + timedelta(days=20))
    earn(tenant, cid, "soon", 50, expires_at=now() + timedelta(days=2))
    body = {"redemption_id": "red-1", "amount": 70, "reason": "coupon"}

    first = await client.post(f"{base(cid)}/redemptions", json=body, headers=admin)
    again = await client.post(f"{base(cid)}/redemptions", json=body, headers=admin)

    assert first.status_code == 201, first.text
    assert first.json() == {
        "customer_id": str(cid),
        "point_type": "points",
        "redemption_id": "red-1",
        "amount": 70,
        "lots": [{"lot_id": "soon", "amount": 50}, {"lot_id": "late", "amount": 20}],
        "available": 30,
        "position": first.json()["position"],
    }
    assert isinstance(first.json()["position"], int)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    account = load_account(tenant.app, cid, "points")
    assert account is not None
    assert account.totals["redeemed"] == 70


async def test_the_same_redemption_id_with_another_body_is_422(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    url = f"{base(cid)}/redemptions"
    assert (
        await client.post(url, json={"redemption_id": "r", "amount": 5}, headers=admin)
    ).status_code == 201

    response = await client.post(url, json={"redemption_id": "r", "amount": 6}, headers=admin)

    assert_problem(response, 422, "idempotency_key_reused")


async def test_redeeming_more_than_available_is_409_insufficient_points_and_changes_nothing(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    response = await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 51}, headers=admin
    )

    body = assert_problem(response, 409, "insufficient_points")
    assert (body["available"], body["requested"]) == (50, 51)
    account = load_account(tenant.app, cid, "points")
    assert account is not None
    assert account.available(now()) == 50


async def test_redeeming_a_non_redeemable_point_type_is_409(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "g", 50, point_type="growth")
    response = await client.post(
        f"{base(cid, 'growth')}/redemptions",
        json={"redemption_id": "r", "amount": 1},
        headers=admin,
    )
    assert_problem(response, 409, "points_not_redeemable")


async def test_an_unknown_point_type_is_404(
    client: Client, admin: dict[str, str], cid: UUID
) -> None:
    response = await client.post(
        f"{base(cid, 'nope')}/redemptions", json={"redemption_id": "r", "amount": 1}, headers=admin
    )
    assert_problem(response, 404, "point_type_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"redemption_id": "r", "amount": 0}, "invalid_value"),
        ({"redemption_id": "r", "amount": -5}, "invalid_value"),
        ({"redemption_id": "r", "amount": 1.5}, "invalid_type"),
        ({"redemption_id": "r", "amount": "ten"}, "invalid_type"),
        ({"redemption_id": "r", "amount": 10**16}, "invalid_value"),
        ({"redemption_id": "r b", "amount": 1}, "invalid_value"),
        ({"amount": 1}, "missing_field"),
        ({"redemption_id": "r", "amount": 1, "extra": True}, "unknown_field"),
    ],
)
async def test_malformed_redemptions_are_400_and_never_500(
    client: Client, admin: dict[str, str], cid: UUID, body: dict[str, Any], code: str
) -> None:
    response = await client.post(f"{base(cid)}/redemptions", json=body, headers=admin)
    assert_problem(response, 400, code)


async def test_a_merged_away_customer_cannot_redeem_409_customer_merged(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    other = await client.post(
        "/v1/customers",
        json={"identities": [identity("wechat_unionid", f"u-{uuid4()}")]},
        headers=admin,
    )
    source = other.json()["customer_id"]
    merged = await client.post(
        f"/v1/customers/{cid}/merge", json={"source_customer_id": source}, headers=admin
    )
    assert merged.status_code == 201, merged.text

    response = await client.post(
        f"/v1/customers/{source}/points/points/redemptions",
        json={"redemption_id": "r", "amount": 1},
        headers=admin,
    )

    assert_problem(response, 409, "customer_merged")


# -- adjustments ------------------------------------------------------------------------------


async def test_a_positive_adjustment_adds_a_lot_with_the_types_expiry_and_records_reason_and_actor(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    response = await client.post(
        f"{base(cid)}/adjustments",
        json={"adjustment_id": "adj-1", "amount": 40, "reason": "goodwill"},
        headers=admin,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["amount"], body["lot_id"], body["available"]) == (40, "adjustment:adj-1", 40)
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.astimezone(SHANGHAI).date() == (
        now().astimezone(SHANGHAI).date() + timedelta(days=31)
    )
    entries = (await client.get(f"{base(cid)}/entries", headers=admin)).json()["items"]
    (adjusted,) = [e for e in entries if e["kind"] == "adjusted"]
    assert adjusted["reason"] == "goodwill"
    assert adjusted["actor"]


async def test_a_negative_adjustment_consumes_lots_like_a_redemption(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    response = await client.post(
        f"{base(cid)}/adjustments",
        json={"adjustment_id": "adj-1", "amount": -20, "reason": "duplicate earn"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    assert response.json()["lots"] == [{"lot_id": "a", "amount": 20}]
    assert response.json()["available"] == 30


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"adjustment_id": "a", "amount": 0, "reason": "x"}, 400, "invalid_input"),
        ({"adjustment_id": "a", "amount": 5}, 400, "missing_field"),
        ({"adjustment_id": "a", "amount": 5, "reason": ""}, 400, "invalid_value"),
        ({"adjustment_id": "a", "amount": 5, "reason": "   "}, 400, "invalid_input"),
        ({"adjustment_id": "a", "amount": -5, "reason": "x"}, 409, "insufficient_points"),
    ],
)
async def test_bad_adjustments_are_rejected(
    client: Client, admin: dict[str, str], cid: UUID, body: dict[str, Any], status: int, code: str
) -> None:
    response = await client.post(f"{base(cid)}/adjustments", json=body, headers=admin)
    assert_problem(response, status, code)


async def test_adjustments_need_the_points_adjust_permission(
    client: Client, key_for: KeyFor, tenant: Tenant, cid: UUID
) -> None:
    response = await client.post(
        f"{base(cid)}/adjustments",
        json={"adjustment_id": "a", "amount": 5, "reason": "x"},
        headers=key_for(tenant, Role.FRONTEND),
    )
    assert_problem(response, 403, "forbidden")


# -- holds ------------------------------------------------------------------------------------


async def test_a_hold_is_captured_once_and_a_second_resolution_is_409(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    held = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "h", "amount": 30}, headers=admin
    )
    assert held.status_code == 201, held.text
    assert held.json()["available"] == 20

    captured = await client.post(f"{base(cid)}/holds/h/capture", headers=admin)
    again = await client.post(f"{base(cid)}/holds/h/release", headers=admin)

    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    assert captured.json()["lots"] == [{"lot_id": "a", "amount": 30}]
    assert isinstance(captured.json()["position"], int)
    assert_problem(again, 409, "hold_already_resolved")


async def test_a_released_hold_gives_the_points_back(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    await client.post(f"{base(cid)}/holds", json={"hold_id": "h", "amount": 30}, headers=admin)

    released = await client.post(f"{base(cid)}/holds/h/release", headers=admin)

    assert released.status_code == 200, released.text
    assert released.json()["available"] == 50


async def test_capturing_an_unknown_hold_is_404(
    client: Client, admin: dict[str, str], cid: UUID
) -> None:
    response = await client.post(f"{base(cid)}/holds/nope/capture", headers=admin)
    assert_problem(response, 404, "hold_not_found")


# -- entries ----------------------------------------------------------------------------------


async def test_entries_list_the_ledger_in_order_with_paging(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    expires = now() + timedelta(days=9)
    earn(tenant, cid, "a", 50, expires_at=expires)
    await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 10}, headers=admin
    )
    await client.post(
        f"{base(cid)}/adjustments",
        json={"adjustment_id": "j", "amount": 5, "reason": "sorry"},
        headers=admin,
    )

    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await client.get(f"{base(cid)}/entries?{query}", headers=admin)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert pages >= 2
    assert [e["kind"] for e in items] == ["earned", "redeemed", "adjusted"]
    assert datetime.fromisoformat(items[0]["expires_at"]) == expires
    assert items[1]["lots"] == [{"lot_id": "a", "amount": 10}]


@pytest.mark.parametrize("query", ["limit=1001", "limit=0", "cursor=abc"])
async def test_bad_entry_paging_is_400(
    client: Client, admin: dict[str, str], cid: UUID, query: str
) -> None:
    response = await client.get(f"{base(cid)}/entries?{query}", headers=admin)
    assert_problem(response, 400)


# -- the expiry job ---------------------------------------------------------------------------


async def test_the_expiry_job_answers_200_with_counts_and_a_second_run_expires_nothing(
    client: Client, key_for: KeyFor, tenant: Tenant, cid: UUID
) -> None:
    past = now() - timedelta(days=10)
    earn(tenant, cid, "old", 30, at=past, expires_at=past + timedelta(days=1))
    operator = key_for(tenant, Role.OPERATOR)
    as_of = now().isoformat()

    first = await client.post("/v1/jobs/expire-points", json={"as_of": as_of}, headers=operator)
    second = await client.post("/v1/jobs/expire-points", json={"as_of": as_of}, headers=operator)

    assert first.status_code == 200, first.text
    assert first.json()["points_expired"] == 30
    assert first.json()["lots_expired"] == 1
    assert isinstance(first.json()["position"], int)
    assert second.status_code == 200
    assert second.json()["points_expired"] == 0


async def test_the_expiry_job_accepts_a_bare_date_as_the_local_start_of_that_day(
    client: Client, admin: dict[str, str], cid: UUID
) -> None:
    today = now().astimezone(SHANGHAI).date().isoformat()
    response = await client.post("/v1/jobs/expire-points", json={"as_of": today}, headers=admin)
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["as_of"]).astimezone(SHANGHAI).hour == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"as_of": "2999-01-01T00:00:00+00:00"}, "invalid_input"),
        ({"as_of": "yesterday-ish"}, "invalid_value"),
        ({"as_of": "2025-01-01T00:00:00"}, "invalid_value"),
        ({}, "missing_field"),
        ({"as_of": "2025-01-01", "x": 1}, "unknown_field"),
    ],
)
async def test_bad_expiry_job_requests_are_400(
    client: Client, admin: dict[str, str], program: None, body: dict[str, Any], code: str
) -> None:
    response = await client.post("/v1/jobs/expire-points", json=body, headers=admin)
    assert_problem(response, 400, code)


async def test_the_expiry_job_is_for_admins_and_operators_only(
    client: Client, key_for: KeyFor, tenant: Tenant, program: None
) -> None:
    response = await client.post(
        "/v1/jobs/expire-points",
        json={"as_of": now().isoformat()},
        headers=key_for(tenant, Role.FRONTEND),
    )
    assert_problem(response, 403, "forbidden")


async def test_the_openapi_document_lists_the_points_routes(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert "/v1/customers/{customer_id}/points" in paths
    assert "/v1/customers/{customer_id}/points/{point_type}/redemptions" in paths
    assert "/v1/customers/{customer_id}/points/{point_type}/holds/{hold_id}/capture" in paths
    assert "/v1/jobs/expire-points" in paths
