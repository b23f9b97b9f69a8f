"""Points over HTTP: balances, entries, redemptions and their reversals, adjustments, holds (and
their timeouts) and the expiry job; status codes, problem bodies, idempotent replay and 400s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.loaders import points_account as load_account
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, key_id, new_customer
from tests.integration.points_support import earn, now

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


@pytest.fixture
async def program(client: Client, admin: dict[str, str]) -> None:
    response = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200, response.text


@pytest.fixture
async def cid(client: Client, admin: dict[str, str], program: None) -> UUID:
    return UUID(await new_customer(client, admin))


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
        "reversible_until": first.json()["reversible_until"],
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


# Raw bodies, so the sample holds what a JSON encoder would never write: the lax integers
# (``1e3``, ``1000.0``, ``"1000"``, a float that rounds to an integer) that were once taken as
# points, NaN, a NUL in the client id, deep nesting where a string belongs, a truncated document.
MALFORMED_REDEMPTIONS = {
    "zero": (b'{"redemption_id": "r", "amount": 0}', "invalid_value"),
    "negative": (b'{"redemption_id": "r", "amount": -5}', "invalid_value"),
    "fraction": (b'{"redemption_id": "r", "amount": 1.5}', "invalid_type"),
    "exponent": (b'{"redemption_id": "r", "amount": 1e3}', "invalid_type"),
    "integral_float": (b'{"redemption_id": "r", "amount": 1000.0}', "invalid_type"),
    "rounds_to_one": (b'{"redemption_id": "r", "amount": 1.0000000000000001}', "invalid_type"),
    "numeric_string": (b'{"redemption_id": "r", "amount": "1000"}', "invalid_type"),
    "word": (b'{"redemption_id": "r", "amount": "ten"}', "invalid_type"),
    "boolean": (b'{"redemption_id": "r", "amount": true}', "invalid_type"),
    "too_large": (b'{"redemption_id": "r", "amount": 10000000000000000}', "invalid_value"),
    "beyond_int64": (b'{"redemption_id": "r", "amount": 1' + b"0" * 30 + b"}", "invalid_value"),
    "nan": (b'{"redemption_id": "r", "amount": NaN}', "malformed_json"),
    "space_in_id": (b'{"redemption_id": "r b", "amount": 1}', "invalid_value"),
    "nul_in_id": (b'{"redemption_id": "r\\u0000", "amount": 1}', "invalid_value"),
    "long_id": (b'{"redemption_id": "' + b"r" * 5000 + b'", "amount": 1}', "invalid_value"),
    "missing_id": (b'{"amount": 1}', "missing_field"),
    "unknown_field": (b'{"redemption_id": "r", "amount": 1, "extra": true}', "unknown_field"),
    "nested": (
        b'{"redemption_id": "r", "amount": 1, "reason": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "invalid_type",
    ),
    "truncated": (b'{"redemption_id": "r", "amount": 1', "malformed_json"),
}


@pytest.mark.parametrize(
    ("raw", "code"), MALFORMED_REDEMPTIONS.values(), ids=MALFORMED_REDEMPTIONS.keys()
)
async def test_malformed_redemptions_are_400_and_never_500(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID, raw: bytes, code: str
) -> None:
    before = tenant.app.recorder.max_notification_id()
    response = await client.post(
        f"{base(cid)}/redemptions",
        content=raw,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, code)
    assert tenant.app.recorder.max_notification_id() == before


async def test_a_merged_away_customer_cannot_redeem_409_customer_merged(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    source = await new_customer(client, admin)
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
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID, runtime: Runtime
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
    assert adjusted["actor"] == key_id(runtime, admin)


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


async def test_six_holds_of_1000_on_5000_the_sixth_is_409_and_released_or_rejected_ones_fail(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 5000)
    statuses = []
    for n in range(6):
        held = await client.post(
            f"{base(cid)}/holds", json={"hold_id": f"h{n}", "amount": 1000}, headers=admin
        )
        statuses.append(held.status_code)
    released = await client.post(f"{base(cid)}/holds/h0/release", headers=admin)

    capture_released = await client.post(f"{base(cid)}/holds/h0/capture", headers=admin)
    capture_rejected = await client.post(f"{base(cid)}/holds/h5/capture", headers=admin)

    assert statuses == [201] * 5 + [409]
    assert released.status_code == 200, released.text
    body = assert_problem(capture_released, 409, "hold_already_resolved")
    assert body["resolution"] == "released"
    assert_problem(capture_rejected, 404, "hold_not_found")
    account = load_account(tenant.app, cid, "points")
    assert account is not None
    assert (account.held, account.available(now()), account.totals["redeemed"]) == (4000, 1000, 0)


async def test_a_hold_without_a_timeout_gets_the_types_default_of_30_minutes(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    before = now()

    held = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "h", "amount": 10}, headers=admin
    )

    assert held.status_code == 201, held.text
    timeout = datetime.fromisoformat(held.json()["expires_at"])
    assert before + timedelta(minutes=30) <= timeout <= now() + timedelta(minutes=30)


async def test_a_hold_takes_its_timeout_from_ttl_seconds_or_expires_at(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 50)
    until = (now() + timedelta(hours=2)).replace(microsecond=0)
    before = now()

    by_ttl = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "t", "amount": 10, "ttl_seconds": 90}, headers=admin
    )
    by_instant = await client.post(
        f"{base(cid)}/holds",
        json={"hold_id": "i", "amount": 10, "expires_at": until.isoformat()},
        headers=admin,
    )

    assert by_ttl.status_code == 201, by_ttl.text
    ttl_timeout = datetime.fromisoformat(by_ttl.json()["expires_at"])
    assert before + timedelta(seconds=90) <= ttl_timeout <= now() + timedelta(seconds=90)
    assert by_instant.status_code == 201, by_instant.text
    assert datetime.fromisoformat(by_instant.json()["expires_at"]) == until
    entries = (await client.get(f"{base(cid)}/entries", headers=admin)).json()["items"]
    assert [e["expires_at"] for e in entries if e["kind"] == "held"] == [
        by_ttl.json()["expires_at"],
        by_instant.json()["expires_at"],
    ]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"ttl_seconds": 0}, "invalid_value"),
        ({"ttl_seconds": 30 * 86400 + 1}, "invalid_value"),
        ({"ttl_seconds": "sixty"}, "invalid_type"),
        ({"ttl_seconds": 60, "expires_at": "2999-01-01T00:00:00+00:00"}, "invalid_input"),
        ({"expires_at": "2999-01-01T00:00:00+00:00"}, "invalid_input"),
        ({"expires_at": "2000-01-01T00:00:00+00:00"}, "invalid_input"),
        ({"expires_at": "2999-01-01T00:00:00"}, "invalid_input"),
        ({"expires_at": "soon"}, "invalid_value"),
    ],
)
async def test_bad_hold_timeouts_are_400_and_hold_nothing(
    client: Client,
    admin: dict[str, str],
    tenant: Tenant,
    cid: UUID,
    extra: dict[str, Any],
    code: str,
) -> None:
    earn(tenant, cid, "a", 50)
    response = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "h", "amount": 10, **extra}, headers=admin
    )

    assert_problem(response, 400, code)
    account = load_account(tenant.app, cid, "points")
    assert account is not None
    assert account.holds == {}


async def test_a_hold_past_its_timeout_cannot_be_captured_before_or_after_the_job_released_it(
    client: Client,
    admin: dict[str, str],
    tenant: Tenant,
    cid: UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    earn(tenant, cid, "a", 50)
    held = await client.post(
        f"{base(cid)}/holds", json={"hold_id": "h", "amount": 30, "ttl_seconds": 60}, headers=admin
    )
    assert held.status_code == 201, held.text
    later = datetime.fromisoformat(held.json()["expires_at"]) + timedelta(seconds=1)
    monkeypatch.setattr(tenant.app, "clock", lambda: later)

    before_job = await client.post(f"{base(cid)}/holds/h/capture", headers=admin)
    balances = (await client.get(f"/v1/customers/{cid}/points", headers=admin)).json()
    job = await client.post(
        "/v1/jobs/expire-points", json={"as_of": later.isoformat()}, headers=admin
    )
    after_job = await client.post(
        f"{base(cid)}/holds/h/capture", headers={**admin, "Idempotency-Key": "k2"}
    )
    release = await client.post(f"{base(cid)}/holds/h/release", headers=admin)

    body = assert_problem(before_job, 409, "hold_expired")
    assert body["expires_at"] == held.json()["expires_at"]
    assert (balances["balances"][0]["available"], balances["balances"][0]["held"]) == (50, 0)
    assert job.status_code == 200, job.text
    assert job.json()["holds_expired"] == 1
    assert_problem(after_job, 409, "hold_expired")
    assert_problem(release, 409, "hold_expired")
    entries = (await client.get(f"{base(cid)}/entries", headers=admin)).json()["items"]
    (expired,) = [e for e in entries if e["kind"] == "hold_expired"]
    assert expired["expires_at"] == held.json()["expires_at"]
    assert expired["lots"] == [{"lot_id": "a", "amount": 30}]


# -- redemption reversals -----------------------------------------------------------------------


async def test_a_redemption_reversal_answers_201_restores_the_lots_and_a_replay_200(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    soon, late = now() + timedelta(days=2), now() + timedelta(days=20)
    earn(tenant, cid, "soon", 50, expires_at=soon)
    earn(tenant, cid, "late", 50, expires_at=late)
    redeemed = await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 70}, headers=admin
    )
    assert redeemed.status_code == 201, redeemed.text
    url = f"{base(cid)}/redemptions/r/reversals"
    body = {"reversal_id": "v1", "reason": "order cancelled"}

    first = await client.post(url, json=body, headers=admin)
    again = await client.post(url, json=body, headers=admin)

    assert first.status_code == 201, first.text
    assert first.json() == {
        "customer_id": str(cid),
        "point_type": "points",
        "redemption_id": "r",
        "reversal_id": "v1",
        "amount": 70,
        "lots": [{"lot_id": "late", "amount": 20}, {"lot_id": "soon", "amount": 50}],
        "reversed_total": 70,
        "reversible": 0,
        "available": 100,
        "position": first.json()["position"],
    }
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    account = load_account(tenant.app, cid, "points")
    assert account is not None
    assert account.lots["soon"].expires_at == soon
    assert account.lots["late"].expires_at == late
    entries = (await client.get(f"{base(cid)}/entries", headers=admin)).json()["items"]
    (entry,) = [e for e in entries if e["kind"] == "redemption_reversed"]
    assert (entry["redemption_id"], entry["reversal_id"], entry["amount"]) == ("r", "v1", 70)
    assert entry["reason"] == "order cancelled"
    assert entry["lots"] == first.json()["lots"]


async def test_partial_reversals_accumulate_and_more_than_is_left_is_409(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 100)
    await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 60}, headers=admin
    )
    url = f"{base(cid)}/redemptions/r/reversals"

    first = await client.post(url, json={"reversal_id": "v1", "amount": 25}, headers=admin)
    second = await client.post(url, json={"reversal_id": "v2", "amount": 25}, headers=admin)
    too_much = await client.post(url, json={"reversal_id": "v3", "amount": 11}, headers=admin)
    rest = await client.post(url, json={"reversal_id": "v4"}, headers=admin)
    nothing_left = await client.post(url, json={"reversal_id": "v5"}, headers=admin)

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["reversed_total"] == 50
    body = assert_problem(too_much, 409, "reversal_exceeds_redemption")
    assert (body["requested"], body["reversible"]) == (11, 10)
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount"], rest.json()["available"]) == (10, 100)
    assert_problem(nothing_left, 409, "reversal_exceeds_redemption")


async def test_a_restored_lot_past_its_expiry_expires_at_once_in_a_separate_entry(
    client: Client,
    admin: dict[str, str],
    tenant: Tenant,
    cid: UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    soon = now() + timedelta(days=1)
    earn(tenant, cid, "soon", 40, expires_at=soon)
    await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 40}, headers=admin
    )
    monkeypatch.setattr(tenant.app, "clock", lambda: soon + timedelta(hours=1))

    response = await client.post(
        f"{base(cid)}/redemptions/r/reversals", json={"reversal_id": "v"}, headers=admin
    )

    assert response.status_code == 201, response.text
    assert response.json()["available"] == 0
    entries = (await client.get(f"{base(cid)}/entries", headers=admin)).json()["items"]
    assert [e["kind"] for e in entries] == ["earned", "redeemed", "redemption_reversed", "expired"]
    assert entries[-1]["lots"] == [{"lot_id": "soon", "amount": 40}]


async def test_reversing_an_unknown_redemption_is_404(
    client: Client, admin: dict[str, str], cid: UUID
) -> None:
    response = await client.post(
        f"{base(cid)}/redemptions/nope/reversals", json={"reversal_id": "v"}, headers=admin
    )
    assert_problem(response, 404, "redemption_not_found")


async def test_the_same_reversal_id_on_another_redemption_is_422(
    client: Client, admin: dict[str, str], tenant: Tenant, cid: UUID
) -> None:
    earn(tenant, cid, "a", 100)
    for r in ("r1", "r2"):
        await client.post(
            f"{base(cid)}/redemptions", json={"redemption_id": r, "amount": 10}, headers=admin
        )
    body = {"reversal_id": "v"}
    first = await client.post(f"{base(cid)}/redemptions/r1/reversals", json=body, headers=admin)

    other = await client.post(f"{base(cid)}/redemptions/r2/reversals", json=body, headers=admin)

    assert first.status_code == 201, first.text
    assert_problem(other, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reversal_id": "v", "amount": 0}, "invalid_value"),
        ({"reversal_id": "v", "amount": 1.5}, "invalid_type"),
        ({"amount": 1}, "missing_field"),
        ({"reversal_id": "v", "extra": 1}, "unknown_field"),
    ],
)
async def test_malformed_reversals_are_400(
    client: Client, admin: dict[str, str], cid: UUID, body: dict[str, Any], code: str
) -> None:
    response = await client.post(f"{base(cid)}/redemptions/r/reversals", json=body, headers=admin)
    assert_problem(response, 400, code)


async def test_reversals_need_the_points_redeem_permission(
    client: Client, key_for: KeyFor, tenant: Tenant, cid: UUID
) -> None:
    response = await client.post(
        f"{base(cid)}/redemptions/r/reversals",
        json={"reversal_id": "v"},
        headers=key_for(tenant, Role.SALES),
    )
    assert_problem(response, 403, "forbidden")


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
        ({"as_of": "yesterday-ish"}, "invalid_input"),
        ({"as_of": "2025-01-01T00:00:00"}, "invalid_input"),
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
    assert (
        "/v1/customers/{customer_id}/points/{point_type}/redemptions/{redemption_id}/reversals"
        in paths
    )
    assert "/v1/customers/{customer_id}/points/{point_type}/holds/{hold_id}/capture" in paths
    assert "/v1/jobs/expire-points" in paths


async def test_a_redemption_answers_its_reversal_window_and_a_reversal_after_it_is_409(
    client: Client,
    admin: dict[str, str],
    tenant: Tenant,
    cid: UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    earn(tenant, cid, "a", 100, expires_at=now() + timedelta(days=365))
    redeemed = await client.post(
        f"{base(cid)}/redemptions", json={"redemption_id": "r", "amount": 40}, headers=admin
    )
    until = datetime.fromisoformat(redeemed.json()["reversible_until"])
    assert timedelta(days=89) < until - now() <= timedelta(days=90)  # the default 90 days
    monkeypatch.setattr(tenant.app, "clock", lambda: until + timedelta(seconds=1))

    late = await client.post(
        f"{base(cid)}/redemptions/r/reversals", json={"reversal_id": "v"}, headers=admin
    )

    body = assert_problem(late, 409, "reversal_window_closed")
    assert (body["redemption_id"], body["until"]) == ("r", until.isoformat())
