"""Customer commands over HTTP (issue 3): profile, identities, merges, roles, owner, consent,
erasure, export, history and the program document.

Reads after a command pass the command's ``position`` as ``min_position`` to an app running the
projection worker (``live``): read-your-writes as a client does it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, identity, key_id

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
KeyFor = Callable[[Tenant, Role], dict[str, str]]

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points"}],
    "identity": {"default_country": "CN"},
    "attributes": [
        {"code": "city", "type": "string"},
        {"code": "size", "type": "enum", "values": ["S", "M", "L"]},
    ],
}


@pytest.fixture
async def live(anyio_backend: str, settings: Settings, runtime: Runtime) -> AsyncIterator[Client]:
    """The app with its projection worker: reads with ``min_position`` see the command."""
    async with AsyncTestClient(create_app(settings, runtime=runtime, projections=True)) as c:
        yield c


async def register(
    client: Client, headers: dict[str, str], *identities: dict[str, str], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers", json={"identities": list(identities), **extra}, headers=headers
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def new_customer(client: Client, headers: dict[str, str], label: str, **extra: Any) -> str:
    body = await register(client, headers, identity("member_no", label), **extra)
    customer_id: str = body["customer_id"]
    return customer_id


async def read(
    client: Client, headers: dict[str, str], path: str, position: int, **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params={"min_position": position, **params}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def put_program(
    client: Client, headers: dict[str, str], document: dict[str, Any]
) -> httpx.Response:
    return await client.put("/v1/program", json=document, headers=headers)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


# -- PATCH /v1/customers/{id} -----------------------------------------------------------------


async def test_patch_changes_the_given_fields_and_the_profile_shows_them(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "patch-1", name="Li Lei")

    body = ok(
        await live.patch(
            f"/v1/customers/{cid}",
            json={
                "name": "Li  Lei ",
                "email": "Li.Lei@Example.com",
                "birthday": "1990-05-01",
                "attributes": {"city": "Shanghai"},
            },
            headers=admin,
        )
    )

    assert body["customer_id"] == cid
    assert body["changed"] == ["attributes.city", "birthday", "email", "name"]
    doc = await read(live, admin, f"/v1/customers/{cid}", body["position"])
    assert (doc["name"], doc["email"], doc["birthday"]) == (
        "Li  Lei",
        "li.lei@example.com",
        "1990-05-01",
    )
    assert doc["attributes"] == {"city": "Shanghai"}


async def test_patch_with_unchanged_values_changes_nothing_and_answers_the_last_position(
    client: Client, admin: dict[str, str]
) -> None:
    created = await register(client, admin, identity("member_no", "same"), name="Same")

    body = ok(
        await client.patch(
            f"/v1/customers/{created['customer_id']}", json={"name": "Same"}, headers=admin
        )
    )

    assert body["changed"] == []
    # The position of the customer's last event: enough to read the profile back.
    assert 0 < body["position"] <= created["position"]


async def test_patch_null_clears_a_field(live: Client, admin: dict[str, str]) -> None:
    cid = await new_customer(live, admin, "clear", name="Gone Soon", attributes={"city": "X"})

    body = ok(
        await live.patch(
            f"/v1/customers/{cid}",
            json={"name": None, "attributes": {"city": None}},
            headers=admin,
        )
    )

    assert body["changed"] == ["attributes.city", "name"]
    doc = await read(live, admin, f"/v1/customers/{cid}", body["position"])
    assert doc["name"] is None
    assert doc["attributes"] == {}


async def test_patch_accepts_free_form_attributes_until_a_program_declares_them(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "attrs")
    ok(await client.patch(f"/v1/customers/{cid}", json={"attributes": {"shoe": 42}}, headers=admin))
    ok(await put_program(client, admin, PROGRAM))

    refused = await client.patch(
        f"/v1/customers/{cid}", json={"attributes": {"shoe": 43, "hat": "red"}}, headers=admin
    )

    body = assert_problem(refused, 400, "invalid_input")
    assert {e["field"] for e in body["errors"]} == {"attributes.shoe", "attributes.hat"}


async def test_patch_validates_an_enum_attribute_against_its_values(
    client: Client, admin: dict[str, str]
) -> None:
    ok(await put_program(client, admin, PROGRAM))
    cid = await new_customer(client, admin, "enum")

    refused = await client.patch(
        f"/v1/customers/{cid}", json={"attributes": {"size": "XL"}}, headers=admin
    )
    accepted = await client.patch(
        f"/v1/customers/{cid}", json={"attributes": {"size": "M"}}, headers=admin
    )

    body = assert_problem(refused, 400, "invalid_input")
    assert [e["field"] for e in body["errors"]] == ["attributes.size"]
    assert ok(accepted)["changed"] == ["attributes.size"]


async def test_patch_refuses_a_bad_phone_and_a_bad_email_together(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "bad-contact")

    refused = await client.patch(
        f"/v1/customers/{cid}", json={"phone": "12", "email": "no-at-sign"}, headers=admin
    )

    body = assert_problem(refused, 400, "invalid_input")
    assert {e["field"] for e in body["errors"]} == {"phone", "email"}


async def test_patch_of_the_phone_moves_the_phone_identity(
    live: Client, admin: dict[str, str]
) -> None:
    ok(await put_program(live, admin, PROGRAM))  # default country CN
    cid = await new_customer(live, admin, "phone-move", phone="13800138000")

    body = ok(
        await live.patch(f"/v1/customers/{cid}", json={"phone": "139 0000 0001"}, headers=admin)
    )

    doc = await read(live, admin, f"/v1/customers/{cid}", body["position"])
    assert doc["phone"] == "+8613900000001"
    assert identity("phone", "+8613900000001") in doc["identities"]
    assert identity("phone", "+8613800138000") not in doc["identities"]
    found = await read(live, admin, "/v1/customers", body["position"], phone="13900000001")
    assert [c["customer_id"] for c in found["items"]] == [cid]
    freed = await read(live, admin, "/v1/customers", body["position"], phone="13800138000")
    assert freed["items"] == []
    # The old number is free: registering it makes a new customer.
    again = await register(live, admin, identity("phone", "13800138000"))
    assert again["customer_id"] != cid


async def test_patch_to_a_phone_or_email_another_customer_holds_answers_identity_conflict(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    holder = await new_customer(client, admin, "holder", phone="+8613800138000", email="h@x.io")
    cid = await new_customer(client, admin, "wants-it")
    head = tenant.app.recorder.max_notification_id()

    for change in ({"phone": "+86 138 0013 8000"}, {"email": "H@X.io"}):
        response = await client.patch(f"/v1/customers/{cid}", json=change, headers=admin)
        assert assert_problem(response, 409, "identity_conflict")["customer_ids"] == [holder]

    assert tenant.app.recorder.max_notification_id() == head


async def test_history_shows_who_changed_what_through_which_channel(
    live: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor, runtime: Runtime
) -> None:
    operator = key_for(tenant, Role.OPERATOR)
    cid = await new_customer(live, admin, "history", name="Before")
    ok(await live.patch(f"/v1/customers/{cid}", json={"name": "During"}, headers=admin))
    body = ok(
        await live.patch(
            f"/v1/customers/{cid}",
            params={"channel": "pos"},
            json={"name": "After"},
            headers=operator,
        )
    )

    history = await read(live, admin, f"/v1/customers/{cid}/history", body["position"])

    registered, first, second = history["items"]
    assert registered["kind"] == "registered"
    assert first["kind"] == second["kind"] == "profile_changed"
    assert first["changes"] == [{"field": "name", "before": "Before", "after": "During"}]
    assert second["changes"] == [{"field": "name", "before": "During", "after": "After"}]
    assert second["channel"] == "pos"
    assert first["actor"] == key_id(runtime, admin)
    assert second["actor"] == key_id(runtime, operator)
    assert first["actor"] != second["actor"]
    assert second["position"] == body["position"]
    assert history["next_cursor"] is None


async def test_history_pages_with_a_cursor(live: Client, admin: dict[str, str]) -> None:
    cid = await new_customer(live, admin, "history-pages", name="0")
    position = 0
    for n in range(1, 4):
        position = ok(
            await live.patch(f"/v1/customers/{cid}", json={"name": str(n)}, headers=admin)
        )["position"]

    first = await read(live, admin, f"/v1/customers/{cid}/history", position, limit=2)
    second = await read(
        live, admin, f"/v1/customers/{cid}/history", position, limit=2, cursor=first["next_cursor"]
    )

    assert len(first["items"]) == 2
    assert first["next_cursor"] is not None
    assert [i["changes"][0]["after"] for i in second["items"]] == ["2", "3"]


# -- identities ---------------------------------------------------------------------------------


async def test_link_adds_identities_and_refuses_one_held_by_another_customer(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "link-1")
    other = await new_customer(live, admin, "link-2")

    body = ok(
        await live.post(
            f"/v1/customers/{cid}/identities",
            json={"identities": [identity("jd_pin", "jd-link"), identity("member_no", "link-1")]},
            headers=admin,
        )
    )
    conflict = await live.post(
        f"/v1/customers/{cid}/identities",
        json={"identities": [identity("member_no", "link-2")]},
        headers=admin,
    )

    doc = await read(live, admin, f"/v1/customers/{cid}", body["position"])
    assert identity("jd_pin", "jd-link") in doc["identities"]
    problem = assert_problem(conflict, 409, "identity_conflict")
    assert problem["customer_ids"] == [other]


async def test_unlink_removes_an_identity_but_never_the_last_one(
    client: Client, admin: dict[str, str]
) -> None:
    created = await register(
        client, admin, identity("member_no", "un-1"), identity("jd_pin", "jd-un")
    )
    cid = created["customer_id"]
    path = f"/v1/customers/{cid}/identities"

    unlinked = await client.delete(path, params={"identity": "jd_pin:jd-un"}, headers=admin)
    not_held = await client.delete(path, params={"identity": "jd_pin:jd-un"}, headers=admin)
    last = await client.delete(path, params={"identity": "member_no:un-1"}, headers=admin)
    malformed = await client.delete(path, params={"identity": "no-colon"}, headers=admin)

    assert ok(unlinked)["position"] > created["position"]
    assert_problem(not_held, 404, "identity_not_held")
    assert_problem(last, 409, "last_identity")
    assert_problem(malformed, 400)


async def test_commands_on_an_unknown_customer_answer_404(
    client: Client, admin: dict[str, str]
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"

    for response in (
        await client.patch(f"/v1/customers/{missing}", json={"name": "x"}, headers=admin),
        await client.patch("/v1/customers/not-a-uuid", json={"name": "x"}, headers=admin),
        await client.post(f"/v1/customers/{missing}/roles", json={"role": "agent"}, headers=admin),
    ):
        assert_problem(response, 404, "customer_not_found")


# -- merges ---------------------------------------------------------------------------------------


async def test_merge_moves_the_source_into_the_survivor_and_the_source_reads_merged_into(
    live: Client, admin: dict[str, str]
) -> None:
    survivor = await new_customer(live, admin, "m-survivor", name="Survivor")
    source = (
        await register(
            live, admin, identity("member_no", "m-source"), identity("jd_pin", "jd-source")
        )
    )["customer_id"]

    merged = ok(
        await live.post(
            f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
        ),
        201,
    )

    assert (merged["survivor_id"], merged["source_id"]) == (survivor, source)
    assert merged["moved"] == {"identity_claim": 2}
    gone = await read(live, admin, f"/v1/customers/{source}", merged["position"])
    assert gone["merged_into"] == survivor
    doc = await read(live, admin, f"/v1/customers/{survivor}", merged["position"])
    assert {(i["type"], i["value"]) for i in doc["identities"]} == {
        ("member_no", "m-survivor"),
        ("member_no", "m-source"),
        ("jd_pin", "jd-source"),
    }
    found = await read(
        live, admin, "/v1/customers", merged["position"], identity="jd_pin:jd-source"
    )
    assert [c["customer_id"] for c in found["items"]] == [survivor]


async def test_commands_on_a_merged_away_customer_answer_409_naming_the_survivor(
    client: Client, admin: dict[str, str]
) -> None:
    survivor = await new_customer(client, admin, "cm-1")
    source = await new_customer(client, admin, "cm-2")
    ok(
        await client.post(
            f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
        ),
        201,
    )

    refused = await client.patch(f"/v1/customers/{source}", json={"name": "x"}, headers=admin)
    again = await client.post(
        f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
    )
    itself = await client.post(
        f"/v1/customers/{survivor}/merge", json={"source_customer_id": survivor}, headers=admin
    )

    assert assert_problem(refused, 409, "customer_merged")["merged_into"] == survivor
    assert_problem(again, 409, "merge_not_allowed")
    assert_problem(itself, 409, "merge_not_allowed")


async def test_undo_reverses_a_merge_once_and_a_second_undo_is_refused(
    live: Client, admin: dict[str, str]
) -> None:
    survivor = await new_customer(live, admin, "u-1")
    source = await new_customer(live, admin, "u-2", email="u2@example.com")
    merged = ok(
        await live.post(
            f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
        ),
        201,
    )

    undone = ok(await live.post(f"/v1/merges/{merged['merge_id']}/undo", headers=admin))
    twice = await live.post(f"/v1/merges/{merged['merge_id']}/undo", headers=admin)

    assert {k: undone[k] for k in ("merge_id", "survivor_id", "source_id")} == {
        k: merged[k] for k in ("merge_id", "survivor_id", "source_id")
    }
    assert_problem(twice, 409, "merge_not_undoable")
    back = await read(live, admin, f"/v1/customers/{source}", undone["position"])
    assert back["merged_into"] is None
    assert back["email"] == "u2@example.com"
    doc = await read(live, admin, f"/v1/customers/{survivor}", undone["position"])
    assert doc["identities"] == [identity("member_no", "u-1")]
    assert doc["email"] is None


async def test_undo_of_an_unknown_merge_answers_404(client: Client, admin: dict[str, str]) -> None:
    for merge_id in ("00000000-0000-4000-8000-000000000000", "nope"):
        response = await client.post(f"/v1/merges/{merge_id}/undo", headers=admin)
        assert_problem(response, 404, "merge_not_found")


async def test_merging_needs_the_merge_permission(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    a = await new_customer(client, admin, "perm-1")
    b = await new_customer(client, admin, "perm-2")

    for role in (Role.SALES, Role.FRONTEND, Role.INTEGRATOR):
        response = await client.post(
            f"/v1/customers/{a}/merge",
            json={"source_customer_id": b},
            headers=key_for(tenant, role),
        )
        assert_problem(response, 403, "forbidden")
    operator = key_for(tenant, Role.OPERATOR)
    ok(
        await client.post(
            f"/v1/customers/{a}/merge", json={"source_customer_id": b}, headers=operator
        ),
        201,
    )


async def test_registering_identities_of_two_customers_answers_with_the_merge(
    client: Client, admin: dict[str, str]
) -> None:
    first = await new_customer(client, admin, "auto-1")
    await new_customer(client, admin, "auto-2")

    both = await register(
        client, admin, identity("member_no", "auto-1"), identity("member_no", "auto-2")
    )

    assert (both["customer_id"], both["matched"]) == (first, True)
    assert len(both["merged"]) == 1
    ok(await client.post(f"/v1/merges/{both['merged'][0]}/undo", headers=admin))


async def test_merge_candidates_list_pairs_sharing_a_suggesting_identity(
    live: Client, admin: dict[str, str]
) -> None:
    program = {
        **PROGRAM,
        "identity": {
            "default_country": "CN",
            "rules": {"phone": {"match": "suggest", "max_customers": 5}},
        },
    }
    ok(await put_program(live, admin, program))
    first = await new_customer(live, admin, "cand-1", phone="13800138000")
    second = await register(live, admin, identity("member_no", "cand-2"), phone="13800138000")
    third = await register(live, admin, identity("member_no", "cand-3"), phone="13800138000")

    assert second["customer_id"] != first  # a suggestion, not a match
    listed = await read(live, admin, "/v1/merge-candidates", third["position"])

    pairs = {(c["customer_id"], c["other_id"], c["reason"]) for c in listed["items"]}
    assert (second["customer_id"], first, "identity:phone") in pairs
    assert (third["customer_id"], first, "identity:phone") in pairs
    assert (third["customer_id"], second["customer_id"], "identity:phone") in pairs
    page = await read(live, admin, "/v1/merge-candidates", third["position"], limit=1)
    assert len(page["items"]) == 1
    assert page["next_cursor"] is not None
    rest = await read(
        live, admin, "/v1/merge-candidates", third["position"], cursor=page["next_cursor"]
    )
    assert len(rest["items"]) == len(listed["items"]) - 1

    # Merging a pair takes every pair of the merged-away customer off the list.
    merged = ok(
        await live.post(
            f"/v1/customers/{first}/merge",
            json={"source_customer_id": second["customer_id"]},
            headers=admin,
        ),
        201,
    )
    after = await read(live, admin, "/v1/merge-candidates", merged["position"])
    assert {(c["customer_id"], c["other_id"]) for c in after["items"]} == {
        (third["customer_id"], first)
    }


async def test_linking_or_patching_to_a_suggesting_identity_others_hold_lists_the_pair(
    live: Client, admin: dict[str, str]
) -> None:
    program = {
        **PROGRAM,
        "identity": {
            "default_country": "CN",
            "rules": {
                "phone": {"match": "suggest", "max_customers": 5},
                "store_card": {"match": "suggest", "max_customers": 5},
            },
        },
    }
    ok(await put_program(live, admin, program))
    holder = await new_customer(live, admin, "sugg-1", phone="13800138011")
    ok(
        await live.post(
            f"/v1/customers/{holder}/identities",
            json={"identities": [identity("store_card", "card-77")]},
            headers=admin,
        )
    )
    linker = await new_customer(live, admin, "sugg-2")
    patcher = await new_customer(live, admin, "sugg-3")

    linked = ok(
        await live.post(
            f"/v1/customers/{linker}/identities",
            json={"identities": [identity("store_card", "card-77")]},
            headers=admin,
        )
    )
    patched = ok(
        await live.patch(f"/v1/customers/{patcher}", json={"phone": "13800138011"}, headers=admin)
    )

    assert linked["linked"] == ["store_card"]
    assert patched["changed"] == ["phone"]
    listed = await read(live, admin, "/v1/merge-candidates", patched["position"])
    pairs = {(c["customer_id"], c["other_id"], c["reason"]) for c in listed["items"]}
    assert pairs == {
        (linker, holder, "identity:store_card"),
        (patcher, holder, "identity:phone"),
    }
    doc = await read(live, admin, f"/v1/customers/{linker}", patched["position"])
    assert identity("store_card", "card-77") in doc["identities"]  # linked, not merged


# -- roles and the agent tree -------------------------------------------------------------------


async def test_roles_are_added_and_ended(live: Client, admin: dict[str, str]) -> None:
    cid = await new_customer(live, admin, "roles")
    path = f"/v1/customers/{cid}/roles"

    added = ok(await live.post(path, json={"role": "agent"}, headers=admin))
    again = ok(await live.post(path, json={"role": "agent"}, headers=admin))
    unknown = await live.post(path, json={"role": "wizard"}, headers=admin)
    ended = ok(await live.delete(f"{path}/consumer", params={"reason": "upgraded"}, headers=admin))
    not_held = await live.delete(f"{path}/guide", headers=admin)

    assert added["roles"] == ["agent", "consumer"]
    assert again["position"] == added["position"]
    assert_problem(unknown, 400, "invalid_input")
    assert ended["roles"] == ["agent"]
    assert_problem(not_held, 404, "role_not_held")
    doc = await read(live, admin, f"/v1/customers/{cid}", ended["position"])
    assert doc["roles"] == ["agent"]


# -- static tags ---------------------------------------------------------------------------------


async def test_tags_are_added_and_removed_and_the_profile_lists_them_sorted(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "tags")
    path = f"/v1/customers/{cid}/tags"

    added = ok(await live.post(path, json={"tags": ["VIP", "tea_lover", "b2b"]}, headers=admin))
    again = ok(await live.post(path, json={"tags": ["vip"]}, headers=admin))
    removed = ok(await live.delete(f"{path}/b2b", headers=admin))
    absent = ok(await live.delete(f"{path}/b2b", headers=admin))

    assert added["added"] == ["vip", "tea_lover", "b2b"]
    assert added["tags"] == ["b2b", "tea_lover", "vip"]
    assert (again["added"], again["position"]) == ([], added["position"])
    assert (removed["removed"], removed["tags"]) == (["b2b"], ["tea_lover", "vip"])
    assert (absent["removed"], absent["position"]) == ([], removed["position"])
    doc = await read(live, admin, f"/v1/customers/{cid}", removed["position"])
    assert doc["tags"] == ["tea_lover", "vip"]


async def test_the_feed_publishes_tags_put_on_and_taken_off_with_their_channel(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "tag-feed")
    path = f"/v1/customers/{cid}/tags"
    ok(await client.post(path, params={"channel": "pos"}, json={"tags": ["vip"]}, headers=admin))
    ok(await client.delete(f"{path}/vip", headers=admin))

    response = await client.get(
        "/v1/events",
        params={"types": "customer.tags_added,customer.tag_removed"},
        headers=admin,
    )

    items = [i for i in ok(response)["items"] if i["stream_id"] == cid]
    assert [(i["type"], i["data"]) for i in items] == [
        ("customer.tags_added", {"customer_id": cid, "tags": ["vip"], "channel": "pos"}),
        ("customer.tag_removed", {"customer_id": cid, "tag": "vip", "channel": None}),
    ]


async def test_bad_tag_codes_are_refused_naming_each_and_write_nothing(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "bad-tags")
    path = f"/v1/customers/{cid}/tags"

    bad = await client.post(path, json={"tags": ["ok", "has space", "li@x.cn"]}, headers=admin)
    empty = await client.post(path, json={"tags": []}, headers=admin)
    bad_path = await client.delete(f"{path}/no%20way", headers=admin)
    fine = ok(await client.post(path, json={"tags": ["ok"]}, headers=admin))

    body = assert_problem(bad, 400, "invalid_input")
    assert [e["field"] for e in body["errors"]] == ["tags[1]", "tags[2]"]
    assert_problem(empty, 400)
    assert_problem(bad_path, 400, "invalid_input")
    assert fine["added"] == ["ok"]


async def test_more_tags_than_a_customer_may_carry_answer_tag_limit_reached(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "many-tags")
    path = f"/v1/customers/{cid}/tags"
    for start in (0, 50):
        batch = [f"t{n}" for n in range(start, start + 50)]
        ok(await client.post(path, json={"tags": batch}, headers=admin))

    over = await client.post(path, json={"tags": ["one_more"]}, headers=admin)

    body = assert_problem(over, 409, "tag_limit_reached")
    assert (body["limit"], body["held"], body["adding"]) == (100, 100, 1)


async def test_a_tag_command_repeated_with_its_idempotency_key_replays_the_first_answer(
    client: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(client, admin, "tag-key")
    headers = {**admin, "Idempotency-Key": "tag-key-1"}
    path = f"/v1/customers/{cid}/tags"

    first = await client.post(path, json={"tags": ["vip"]}, headers=headers)
    ok(await client.delete(f"{path}/vip", headers=admin))
    replay = await client.post(path, json={"tags": ["vip"]}, headers=headers)

    assert ok(replay) == ok(first)
    assert replay.headers["Idempotent-Replayed"] == "true"
    now = ok(await client.post(path, json={"tags": ["other"]}, headers=admin))
    assert now["tags"] == ["other"]  # the replay put nothing back on


async def test_merging_unites_the_tags_and_the_undo_takes_back_what_it_added(
    live: Client, admin: dict[str, str]
) -> None:
    survivor = await new_customer(live, admin, "tag-s")
    source = await new_customer(live, admin, "tag-x")
    ok(await live.post(f"/v1/customers/{survivor}/tags", json={"tags": ["vip"]}, headers=admin))
    ok(
        await live.post(
            f"/v1/customers/{source}/tags", json={"tags": ["vip", "new"]}, headers=admin
        )
    )

    merged = ok(
        await live.post(
            f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
        ),
        201,
    )
    during = await read(live, admin, f"/v1/customers/{survivor}", merged["position"])
    undone = ok(await live.post(f"/v1/merges/{merged['merge_id']}/undo", headers=admin))
    after = await read(live, admin, f"/v1/customers/{survivor}", undone["position"])
    restored = await read(live, admin, f"/v1/customers/{source}", undone["position"])

    assert during["tags"] == ["new", "vip"]
    assert after["tags"] == ["vip"]
    assert restored["tags"] == ["new", "vip"]


async def test_role_owner_identity_consent_and_tag_commands_record_their_channel(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "channels")
    base = f"/v1/customers/{cid}"
    via = {"channel": "wecom"}

    ok(await live.post(f"{base}/roles", params=via, json={"role": "agent"}, headers=admin))
    ok(await live.delete(f"{base}/roles/agent", params=via, headers=admin))
    ok(await live.post(f"{base}/owner", params=via, json={"owner": "g1"}, headers=admin))
    ok(await live.post(f"{base}/owner/end", params=via, json={"by": "g1"}, headers=admin))
    ids = {"identities": [identity("jd_pin", "jd-channels")]}
    ok(await live.post(f"{base}/identities", params=via, json=ids, headers=admin))
    ok(
        await live.delete(
            f"{base}/identities", params={**via, "identity": "jd_pin:jd-channels"}, headers=admin
        )
    )
    consent = {"purpose": "marketing", "channel": "sms", "granted": True, "policy_version": "v1"}
    ok(await live.post(f"{base}/consents", params=via, json=consent, headers=admin), 201)
    ok(await live.post(f"{base}/tags", params=via, json={"tags": ["vip"]}, headers=admin))
    last = ok(await live.delete(f"{base}/tags/vip", params=via, headers=admin))
    too_long = await live.post(
        f"{base}/tags", params={"channel": "x" * 65}, json={"tags": ["a"]}, headers=admin
    )

    history = await read(live, admin, f"{base}/history", last["position"])
    rows = [(r["kind"], r["channel"]) for r in history["items"]][1:]
    assert rows == [
        (kind, "wecom")
        for kind in (
            "role_added",
            "role_ended",
            "owner_assigned",
            "owner_ended",
            "identities_linked",
            "identities_unlinked",
            "consent_given",
            "tags_added",
            "tag_removed",
        )
    ]
    assert history["items"][7]["changes"] == [
        {"field": "consents.marketing.sms", "before": None, "after": True}
    ]
    assert_problem(too_long, 400)


async def test_a_parent_agent_that_would_make_a_cycle_is_refused(
    client: Client, admin: dict[str, str]
) -> None:
    top, middle, bottom = [
        await new_customer(client, admin, f"agent-{n}", roles=["agent"]) for n in range(3)
    ]
    consumer = await new_customer(client, admin, "not-an-agent")

    async def parent(child: str, parent_id: str | None) -> httpx.Response:
        return await client.post(
            f"/v1/customers/{child}/parent-agent", json={"parent_id": parent_id}, headers=admin
        )

    ok(await parent(middle, top))
    ok(await parent(bottom, middle))

    assert_problem(await parent(top, bottom), 409, "agent_cycle")
    assert_problem(await parent(top, top), 409, "agent_cycle")
    assert_problem(await parent(bottom, consumer), 400, "invalid_input")
    assert_problem(await parent(consumer, top), 400, "invalid_input")
    ok(await parent(bottom, None))  # a top agent again
    ok(await parent(top, bottom))  # no cycle any more


# -- owner, alerts, handover ---------------------------------------------------------------------


async def test_owner_is_assigned_and_ended_by_a_named_staff_member(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "owned")

    assigned = ok(
        await live.post(
            f"/v1/customers/{cid}/owner", json={"owner": "staff-1", "reason": "new"}, headers=admin
        )
    )
    ended = ok(
        await live.post(f"/v1/customers/{cid}/owner/end", json={"by": "staff-1"}, headers=admin)
    )
    nothing = ok(
        await live.post(f"/v1/customers/{cid}/owner/end", json={"by": "staff-1"}, headers=admin)
    )

    assert assigned["owner"] == "staff-1"
    assert (ended["ended_owner"], ended["alert_raised"]) == ("staff-1", False)
    assert nothing["ended_owner"] is None
    doc = await read(live, admin, f"/v1/customers/{cid}", ended["position"])
    assert doc["owner"] is None


async def test_a_burst_of_ended_ownerships_by_one_staff_raises_an_alert_event(
    client: Client, admin: dict[str, str]
) -> None:
    ok(await put_program(client, admin, {**PROGRAM, "staff_alerts": {"owner_removals": 3}}))
    customers = [await new_customer(client, admin, f"burst-{n}", owner="staff-9") for n in range(4)]

    answers = [
        ok(
            await client.post(
                f"/v1/customers/{cid}/owner/end", json={"by": "staff-9"}, headers=admin
            )
        )
        for cid in customers
    ]

    assert [a["alert_raised"] for a in answers] == [False, False, True, False]
    feed = ok(await client.get("/v1/events", params={"types": "staff.alert_raised"}, headers=admin))
    (alert,) = feed["items"]
    assert alert["type"] == "staff.alert_raised"
    assert alert["data"]["kind"] == "owner_removals_burst"
    assert alert["data"]["count"] == 3
    # Class version 2 names the staff member; the stream id stays a one-way hash of the staff id.
    assert alert["data"]["staff_id"] == "staff-9"
    assert "staff-9" not in alert["stream_id"]


async def test_handover_moves_every_customer_of_a_staff_member_and_reports_them(
    live: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    owned = [await new_customer(live, admin, f"ho-{n}", owner="leaver") for n in range(3)]
    await new_customer(live, admin, "ho-other", owner="stayer")

    report = ok(
        await live.post(
            "/v1/staff/leaver/handover",
            json={"to_staff_id": "heir"},
            headers=key_for(tenant, Role.OPERATOR),
        )
    )
    again = ok(
        await live.post("/v1/staff/leaver/handover", json={"to_staff_id": "heir"}, headers=admin)
    )

    assert (report["from_staff_id"], report["to_staff_id"]) == ("leaver", "heir")
    assert report["moved"] == 3
    assert sorted(report["customer_ids"]) == sorted(owned)
    assert report["skipped"] == []
    for cid in owned:
        assert (await read(live, admin, f"/v1/customers/{cid}", report["position"]))["owner"] == (
            "heir"
        )
    assert again["moved"] == 0
    self_handover = await live.post(
        "/v1/staff/leaver/handover", json={"to_staff_id": "leaver"}, headers=admin
    )
    assert_problem(self_handover, 400, "invalid_input")
    sales = await live.post(
        "/v1/staff/leaver/handover", json={"to_staff_id": "x"}, headers=key_for(tenant, Role.SALES)
    )
    assert_problem(sales, 403, "forbidden")


# -- consent ---------------------------------------------------------------------------------------


async def test_consent_is_granted_with_a_policy_version_and_withdrawn(
    live: Client, admin: dict[str, str]
) -> None:
    cid = await new_customer(live, admin, "consent")
    path = f"/v1/customers/{cid}/consents"
    grant = {"purpose": "marketing", "channel": "sms", "granted": True}

    unversioned = await live.post(path, json=grant, headers=admin)
    granted = await live.post(
        path, json={**grant, "policy_version": "2026-01", "source": "mini_program"}, headers=admin
    )
    withdrawn = await live.post(path, json={**grant, "granted": False}, headers=admin)

    body = assert_problem(unversioned, 400, "invalid_input")
    assert [e["field"] for e in body["errors"]] == ["policy_version"]
    assert ok(granted, 201)["granted"] is True
    done = ok(withdrawn)
    doc = await read(live, admin, f"/v1/customers/{cid}", done["position"])
    (consent,) = doc["consents"]
    assert (consent["purpose"], consent["channel"], consent["granted"]) == (
        "marketing",
        "sms",
        False,
    )


# -- erasure and export ----------------------------------------------------------------------------


async def test_erasure_empties_the_profile_and_later_commands_answer_customer_erased(
    live: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    cid = await new_customer(live, admin, "erase-me", name="Erase Me", email="erase.me@example.com")
    forbidden = await live.delete(f"/v1/customers/{cid}", headers=key_for(tenant, Role.OPERATOR))

    erased = ok(
        await live.delete(f"/v1/customers/{cid}", params={"reason": "request"}, headers=admin)
    )
    patch = await live.patch(f"/v1/customers/{cid}", json={"name": "Back"}, headers=admin)
    again = await live.delete(f"/v1/customers/{cid}", headers=admin)

    assert_problem(forbidden, 403, "forbidden")
    doc = await read(live, admin, f"/v1/customers/{cid}", erased["position"])
    assert doc["erased"] is True
    assert (doc["name"], doc["email"], doc["identities"]) == (None, None, [])
    assert_problem(patch, 409, "customer_erased")
    assert_problem(again, 409, "customer_erased")
    found = await read(
        live, admin, "/v1/customers", erased["position"], email="erase.me@example.com"
    )
    assert found["items"] == []


async def test_export_gives_admins_and_auditors_everything_and_refuses_sales(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    cid = await new_customer(client, admin, "export", name="Exported")
    ok(await client.patch(f"/v1/customers/{cid}", json={"name": "Exported Too"}, headers=admin))

    exported = ok(await client.get(f"/v1/customers/{cid}/export", headers=admin))
    audited = await client.get(f"/v1/customers/{cid}/export", headers=key_for(tenant, Role.AUDITOR))
    sales = await client.get(f"/v1/customers/{cid}/export", headers=key_for(tenant, Role.SALES))

    assert exported.keys() >= {
        "customer",
        "events",
        "behaviors",
        "points",
        "orders",
        "levels",
        "benefits",
    }
    assert exported["customer"]["tags"] == []
    assert exported["customer"]["profile"]["name"] == "Exported Too"
    assert [e["type"] for e in exported["events"]] == ["Registered", "ProfileChanged"]
    assert exported["events"][0]["data"]["name"] == "Exported"
    assert ok(audited) == exported
    assert_problem(sales, 403, "forbidden")

    ok(await client.delete(f"/v1/customers/{cid}", headers=admin))
    after = ok(await client.get(f"/v1/customers/{cid}/export", headers=admin))
    assert after["customer"]["erased"] is True
    assert after["customer"]["identities"] == []
    assert "Exported" not in str(after)


# -- the program document --------------------------------------------------------------------------


async def test_a_bad_program_is_refused_listing_every_problem(
    client: Client, admin: dict[str, str]
) -> None:
    response = await put_program(
        client,
        admin,
        {
            "currency": "yuan",
            "timezone": "Nowhere/Special",
            "point_types": [],
            "identity": {"rules": {"phone": {"match": "identify", "max_customers": 2}}},
            "colour": "red",
        },
    )

    body = assert_problem(response, 400, "invalid_input")
    assert {e["field"] for e in body["errors"]} == {
        "currency",
        "timezone",
        "point_types",
        "identity.rules.phone.max_customers",
        "colour",
    }
    assert_problem(await client.get("/v1/program", headers=admin), 404, "program_not_found")


async def test_program_versions_increase_and_the_same_document_keeps_its_version(
    client: Client, admin: dict[str, str], tenant: Tenant, key_for: KeyFor
) -> None:
    first = ok(await put_program(client, admin, PROGRAM))
    same = ok(await put_program(client, admin, PROGRAM))
    changed = {**PROGRAM, "currency": "USD"}
    second = ok(await put_program(client, admin, changed))

    assert (first["version"], same["version"], second["version"]) == (1, 1, 2)
    assert {k: v for k, v in first.items() if k not in ("version", "position")} == PROGRAM
    current = ok(await client.get("/v1/program", headers=admin))
    assert current == {**changed, "version": 2}
    earlier = ok(await client.get("/v1/program", params={"version": 1}, headers=admin))
    assert earlier == {**PROGRAM, "version": 1}
    assert_problem(await put_program(client, key_for(tenant, Role.OPERATOR), PROGRAM), 403)
    assert (
        ok(await client.get("/v1/program", headers=key_for(tenant, Role.AUDITOR)))["version"] == 2
    )


# -- idempotency ----------------------------------------------------------------------------------


async def test_a_command_repeated_with_its_idempotency_key_replays_the_first_answer(
    client: Client, admin: dict[str, str], tenant: Tenant
) -> None:
    cid = await new_customer(client, admin, "idem")
    headers = {**admin, "Idempotency-Key": "patch-once-1"}

    first = await client.patch(f"/v1/customers/{cid}", json={"name": "Once"}, headers=headers)
    head = tenant.app.recorder.max_notification_id()
    replay = await client.patch(f"/v1/customers/{cid}", json={"name": "Once"}, headers=headers)

    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert tenant.app.recorder.max_notification_id() == head
    reused = await client.patch(f"/v1/customers/{cid}", json={"name": "Other"}, headers=headers)
    assert_problem(reused, 422)


async def test_a_merge_repeated_with_its_idempotency_key_merges_once(
    client: Client, admin: dict[str, str]
) -> None:
    a = await new_customer(client, admin, "idem-m-1")
    b = await new_customer(client, admin, "idem-m-2")
    headers = {**admin, "Idempotency-Key": "merge-once"}

    first = await client.post(
        f"/v1/customers/{a}/merge", json={"source_customer_id": b}, headers=headers
    )
    replay = await client.post(
        f"/v1/customers/{a}/merge", json={"source_customer_id": b}, headers=headers
    )

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


async def test_get_program_of_a_version_not_yet_written_is_404(
    client: Any, admin: dict[str, str]
) -> None:
    document = {
        "currency": "CNY",
        "timezone": "Asia/Shanghai",
        "point_types": [{"code": "points"}],
    }
    put = await client.put("/v1/program", json=document, headers=admin)
    assert put.status_code == 200, put.text
    assert (await client.get("/v1/program?version=1", headers=admin)).status_code == 200
    missing = await client.get("/v1/program?version=2", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["code"] == "program_not_found"


async def test_a_history_cursor_too_long_for_a_position_is_400_not_500(
    client: Any, admin: dict[str, str]
) -> None:
    response = await client.get(f"/v1/customers/{uuid4()}/history?cursor={'9' * 30}", headers=admin)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"
