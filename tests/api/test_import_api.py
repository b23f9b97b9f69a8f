"""POST /v1/imports/customers: an NDJSON or CSV body imported like ``membercore import``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, head, project

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]
NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def ndjson(*items: dict[str, Any] | str) -> bytes:
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode()


def person(n: int) -> dict[str, Any]:
    return {
        "identities": [{"type": "wechat_unionid", "value": f"api-{n}"}],
        "name": f"Person {n}",
        "phone": f"+86139{n:08d}",
        "email": f"p{n}@example.com",
    }


async def upload(
    client: Client, headers: dict[str, str], body: bytes, content: dict[str, str] = NDJSON
) -> dict[str, Any]:
    response = await client.post(
        "/v1/imports/customers", content=body, headers={**headers, **content}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = response.json()
    return answer


async def test_an_ndjson_upload_registers_customers_and_lists_rejected_rows(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    body = ndjson(person(1), {"name": "nobody"}, person(2), person(1), "not json")

    answer = await upload(client, admin, body)

    assert {k: answer[k] for k in ("rows", "registered", "matched", "rejected")} == {
        "rows": 5,
        "registered": 2,
        "matched": 1,
        "rejected": 2,
    }
    assert answer["position"] == head(tenant)
    assert answer["rejections_truncated"] is False
    assert [r["row"] for r in answer["rejections"]] == [2, 5]
    assert answer["rejections"][0] == {
        "row": 2,
        "code": "invalid_input",
        "errors": [{"field": "identities", "reason": "at least one identity is required"}],
    }
    project(tenant)
    found = await client.get(
        "/v1/customers",
        params={"identity": "wechat_unionid:api-2", "min_position": answer["position"]},
        headers=admin,
    )
    assert found.status_code == 200, found.text
    (item,) = found.json()["items"]
    assert item["name"] == "Person 2"
    assert item["phone"] == "+8613900000002"


async def test_a_csv_upload_larger_than_the_usual_body_limit_is_imported(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    lines = ["identity_type,identity_value,name,phone,email,attr.note"]
    lines += [
        f"member_no,m{n},Name {n},+86137{n:08d},m{n}@example.com,{'x' * 200}" for n in range(5000)
    ]
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 1_048_576  # above the 1 MiB limit of every other route

    answer = await upload(client, admin, body, CSV)

    assert (answer["rows"], answer["registered"], answer["rejected"]) == (5000, 5000, 0)

    again = await upload(client, admin, body, CSV)
    assert (again["registered"], again["matched"], again["position"]) == (0, 5000, 0)


async def test_an_idempotency_key_replays_the_first_answer(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    body = ndjson(person(1), person(2))
    headers = {**admin, **NDJSON, "Idempotency-Key": "import-1"}

    first = await client.post("/v1/imports/customers", content=body, headers=headers)
    written = head(tenant)
    replay = await client.post("/v1/imports/customers", content=body, headers=headers)

    assert first.status_code == replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert head(tenant) == written
    other = await client.post("/v1/imports/customers", content=ndjson(person(3)), headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")


async def test_a_body_that_is_neither_ndjson_nor_csv_is_refused(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/imports/customers",
        content=b"hello",
        headers={**admin, "Content-Type": "text/plain"},
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_a_csv_with_unknown_columns_is_refused_whole(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/imports/customers",
        content=b"identity_type,identity_value,shoe_size\nmember_no,m1,42\n",
        headers={**admin, **CSV},
    )
    body = assert_problem(response, 400, "invalid_input")
    assert body["errors"][0]["field"] == "body"
    assert "shoe_size" in body["errors"][0]["reason"]
    assert head(tenant) == 0


@pytest.mark.parametrize("role", [Role.SALES, Role.INTEGRATOR, Role.AUDITOR])
async def test_only_admins_and_operators_import(
    client: Client, tenant: Tenant, key_for: KeyFor, role: Role
) -> None:
    response = await client.post(
        "/v1/imports/customers",
        content=ndjson(person(1)),
        headers={**key_for(tenant, role), **NDJSON},
    )
    assert_problem(response, 403, "forbidden")
    operator = key_for(tenant, Role.OPERATOR)
    assert (await upload(client, operator, ndjson(person(1))))["registered"] == 1
