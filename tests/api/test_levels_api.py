"""The levels routes: GET levels, overrides (set, replay, end), the assessment job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.permissions import Role
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem
from tests.integration.test_levels import PROGRAM

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
Keys = Callable[[Tenant, Role], dict[str, str]]


async def _customer(client: Client, admin: dict[str, str], roles: list[str]) -> str:
    assert (await client.put("/v1/program", json=PROGRAM, headers=admin)).status_code == 200
    r = await client.post(
        "/v1/customers",
        json={"identities": [{"type": "wechat_unionid", "value": "u-api"}], "roles": roles},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    cid: str = r.json()["customer_id"]
    return cid


def _override(override_id: str = "ov-1", **extra: Any) -> dict[str, Any]:
    return {
        "override_id": override_id,
        "level": "gold",
        "until": "2099-01-01",
        "reason": "store opening",
        **extra,
    }


async def test_set_override_answers_201_then_replays_200_with_the_same_body(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await _customer(client, admin, ["consumer"])
    url = f"/v1/customers/{cid}/levels/consumer/overrides"

    first = await client.post(url, json=_override(), headers=admin)
    again = await client.post(url, json=_override(), headers=admin)

    assert first.status_code == 201, first.text
    assert first.json()["level_now"] == "gold"
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    reused = await client.post(url, json=_override(level="platinum"), headers=admin)
    assert_problem(reused, 422, "idempotency_key_reused")


async def test_get_levels_shows_the_override_the_gap_and_what_keeps_the_level(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: Keys
) -> None:
    cid = await _customer(client, admin, ["consumer", "agent"])
    await client.post(f"/v1/customers/{cid}/levels/consumer/overrides", json=_override(),
                      headers=admin)  # fmt: skip

    r = await client.get(f"/v1/customers/{cid}/levels", headers=key_for(tenant, Role.FINANCE))

    assert r.status_code == 200, r.text
    consumer, _agent = r.json()["levels"]
    assert consumer["group"] == "consumer"
    assert consumer["level"] == "gold"
    assert consumer["level_name"] == "黄金"
    assert consumer["qualifying_value"] == 0
    assert consumer["next_level"] == {
        "code": "platinum", "name": "白金", "threshold": 300000, "gap": 300000
    }  # fmt: skip
    assert consumer["keep"] is None  # the computed level is the bottom: nothing to keep
    assert consumer["override"]["reason"] == "store opening"
    assert consumer["window"]["mode"] == "calendar"


async def test_ending_an_override_answers_200_and_the_computed_level_applies_again(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await _customer(client, admin, ["consumer"])
    base = f"/v1/customers/{cid}/levels/consumer/overrides"
    await client.post(base, json=_override(), headers=admin)

    r = await client.post(f"{base}/ov-1/end", headers=admin)

    assert r.status_code == 200, r.text
    assert r.json()["level_now"] == "normal"
    assert r.json()["ended_at"] is not None
    assert_problem(await client.post(f"{base}/ov-9/end", headers=admin), 404,
                   "level_override_not_found")  # fmt: skip


async def test_override_errors_are_problems_unknown_group_404_unknown_level_400(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: Keys
) -> None:
    cid = await _customer(client, admin, ["consumer"])
    url = f"/v1/customers/{cid}/levels"

    assert_problem(await client.post(f"{url}/vip/overrides", json=_override(), headers=admin),
                   404, "level_group_not_found")  # fmt: skip
    assert_problem(
        await client.post(f"{url}/consumer/overrides", json=_override("o2", level="diamond"),
                          headers=admin), 400, "level_not_found")  # fmt: skip
    assert_problem(
        await client.post(f"{url}/consumer/overrides", json=_override("o3", extra=1),
                          headers=admin), 400)  # fmt: skip
    assert_problem(
        await client.post(f"{url}/consumer/overrides", json=_override("o4", until="2001-01-01"),
                          headers=admin), 400, "invalid_input")  # fmt: skip
    sales = key_for(tenant, Role.SALES)
    assert_problem(
        await client.post(f"{url}/consumer/overrides", json=_override("o5"), headers=sales), 403
    )
    missing = "/v1/customers/00000000-0000-0000-0000-000000000000/levels"
    assert_problem(await client.get(missing, headers=admin), 404, "customer_not_found")


async def test_assess_levels_job_runs_and_a_second_run_records_nothing(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: Keys
) -> None:
    await _customer(client, admin, ["consumer"])
    body = {"as_of": "2025-01-01"}

    first = await client.post("/v1/jobs/assess-levels", json=body, headers=admin)
    second = await client.post("/v1/jobs/assess-levels", json=body, headers=admin)

    assert first.status_code == 200, first.text
    assert second.json()["events"] == 0
    assert_problem(
        await client.post("/v1/jobs/assess-levels", json=body,
                          headers=key_for(tenant, Role.FRONTEND)), 403)  # fmt: skip
    assert_problem(
        await client.post("/v1/jobs/assess-levels", json={"as_of": "soon"}, headers=admin), 400
    )


async def test_a_ladder_not_joined_yet_shows_its_entry_level_and_the_gap_to_the_first_upgrade(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await _customer(client, admin, ["consumer", "agent"])

    r = await client.get(f"/v1/customers/{cid}/levels", headers=admin)

    assert r.status_code == 200, r.text
    by_group = {g["group"]: g for g in r.json()["levels"]}
    assert set(by_group) == {"consumer", "agent"}  # both roles' ladders, nothing counted yet
    agent = by_group["agent"]
    assert (agent["level"], agent["level_name"], agent["since"]) == ("rookie", "新手团长", None)
    assert agent["qualifying_value"] == 0
    assert agent["next_level"] == {
        "code": "gold_leader", "name": "金牌团长", "threshold": 500, "gap": 500
    }  # fmt: skip
    assert agent["keep"] is None
    assert agent["override"] is None


async def test_a_ladder_of_a_role_the_customer_does_not_hold_is_not_shown(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await _customer(client, admin, ["consumer"])

    r = await client.get(f"/v1/customers/{cid}/levels", headers=admin)

    assert [g["group"] for g in r.json()["levels"]] == ["consumer"]
