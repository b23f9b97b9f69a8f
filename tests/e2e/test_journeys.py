"""Journeys over real HTTP against ``membercore serve`` with its live projection worker."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx

from tests.e2e.conftest import Service, Tenant


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def register(http: httpx.Client, key: str, value: str, **extra: Any) -> httpx.Response:
    body = {"identities": [{"type": "wechat_unionid", "value": value}], **extra}
    return http.post("/v1/customers", json=body, headers=bearer(key))


def test_tenants_create_prints_the_tenant_and_a_working_admin_key(
    e2e_tenant: Tenant, http: httpx.Client
) -> None:
    assert e2e_tenant.admin_key.startswith("mck_")
    response = http.get("/v1/events", headers=bearer(e2e_tenant.admin_key))
    assert response.status_code == 200


def test_registered_customer_is_read_back_with_min_position_through_the_live_projector(
    e2e_tenant: Tenant, http: httpx.Client
) -> None:
    value = f"o6_{secrets.token_hex(6)}"
    email = f"Lin.{value}@Example.com"
    created = register(http, e2e_tenant.admin_key, value, name="Lin", email=email)
    assert created.status_code == 201, created.text
    body = created.json()
    profile = http.get(
        f"/v1/customers/{body['customer_id']}",
        params={"min_position": body["position"]},
        headers=bearer(e2e_tenant.admin_key),
    )
    assert profile.status_code == 200, profile.text
    doc = profile.json()
    assert doc["customer_id"] == body["customer_id"]
    # The email field is an identity too.
    assert doc["identities"] == [
        {"type": "wechat_unionid", "value": value},
        {"type": "email", "value": email.lower()},
    ]
    assert (doc["name"], doc["email"]) == ("Lin", email.lower())


def test_customer_is_found_by_identity_over_http(e2e_tenant: Tenant, http: httpx.Client) -> None:
    value = f"o6_{secrets.token_hex(6)}"
    created = register(http, e2e_tenant.admin_key, value).json()
    found = http.get(
        "/v1/customers",
        params={"identity": f"wechat_unionid:{value}", "min_position": created["position"]},
        headers=bearer(e2e_tenant.admin_key),
    )
    assert found.status_code == 200, found.text
    assert [p["customer_id"] for p in found.json()["items"]] == [created["customer_id"]]


def test_idempotent_retry_over_http_replays_the_first_answer(
    e2e_tenant: Tenant, http: httpx.Client
) -> None:
    headers = {**bearer(e2e_tenant.admin_key), "Idempotency-Key": f"e2e-{secrets.token_hex(6)}"}
    body = {"identities": [{"type": "wechat_unionid", "value": f"o6_{secrets.token_hex(6)}"}]}
    first = http.post("/v1/customers", json=body, headers=headers)
    again = http.post("/v1/customers", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


def test_feed_over_http_lists_the_registration_after_a_position(
    e2e_tenant: Tenant, http: httpx.Client
) -> None:
    key = e2e_tenant.admin_key
    before = http.get("/v1/events", params={"limit": 1000}, headers=bearer(key)).json()
    value = f"o6_{secrets.token_hex(6)}"
    created = register(http, key, value).json()
    page = http.get(
        "/v1/events", params={"after": before["next_cursor"], "limit": 1000}, headers=bearer(key)
    )
    assert page.status_code == 200
    items = page.json()["items"]
    assert [(i["type"], i["stream_id"]) for i in items] == [
        ("customer.registered", created["customer_id"])
    ]
    assert items[0]["data"]["identities"] == [{"type": "wechat_unionid", "value": value}]
    assert items[0]["position"] <= created["position"]


def test_auditor_key_from_the_cli_reads_but_cannot_register(
    service: Service, e2e_tenant: Tenant, http: httpx.Client
) -> None:
    issued = service.cli("keys", "create", "--tenant", e2e_tenant.slug, "--role", "auditor")
    assert set(issued) == {"api_key"}
    auditor = issued["api_key"]
    created = register(http, e2e_tenant.admin_key, f"o6_{secrets.token_hex(6)}").json()

    profile = http.get(
        f"/v1/customers/{created['customer_id']}",
        params={"min_position": created["position"]},
        headers=bearer(auditor),
    )
    assert profile.status_code == 200, profile.text
    assert http.get("/v1/events", headers=bearer(auditor)).status_code == 200

    refused = register(http, auditor, f"o6_{secrets.token_hex(6)}")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "forbidden"


def test_unknown_key_over_http_answers_401_problem(http: httpx.Client) -> None:
    response = http.get("/v1/events", headers=bearer("mck_" + "0" * 43))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"


def test_health_over_http_reports_projection_lag_without_a_key(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["projections"]["customer_profile"]["lag"], int)


def test_request_log_records_carry_the_request_id(
    service: Service, e2e_tenant: Tenant, http: httpx.Client
) -> None:
    http.get("/v1/events", headers={**bearer(e2e_tenant.admin_key), "X-Request-ID": "e2e-log-1"})
    records = [json.loads(line) for line in service.log_lines() if line.startswith("{")]
    assert any(
        r.get("event") == "request"
        and r.get("request_id") == "e2e-log-1"
        and r.get("tenant") == e2e_tenant.slug
        and r.get("status") == 200
        for r in records
    ), records[-5:]


def test_every_server_log_line_is_json_when_json_logs_are_asked_for(service: Service) -> None:
    # MEMBERCORE_LOG_FORMAT=json: a log shipper must be able to parse every line, including
    # those of libraries (uvicorn) that log through the standard library.
    not_json = []
    for line in service.log_lines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            not_json.append(line)
    assert not_json == []
