"""Exact inputs: strict JSON decoding, checked path and query parameters, bounded instants,
and malformed bodies, on every route: a 4xx problem with a stable code, never a 500."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.inputs import INSTANT_RULE, instant_problem
from infrastructure.settings import Settings
from tests.api.support import assert_problem, identity, new_customer

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "points", "earn": [{"per_amount": 100, "points": 1}]},
    ],
}

# Numbers that lax decoding turns into the integer 1000.
LAX_INTEGERS = ["1e3", "1000.0", '"1000"', "1.0000000000000001e3"]
# Instants that overflow when shown in UTC or in a zone ±14 hours away.
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0999-12-31T23:00:00Z"]


@pytest.fixture
async def program(client: Client, admin: dict[str, str]) -> None:
    response = await client.put("/v1/program", json=PROGRAM, headers=admin)
    assert response.status_code == 200, response.text


@pytest.fixture
async def cid(client: Client, admin: dict[str, str], program: None) -> str:
    return await new_customer(client, admin)


def an_order(**kw: Any) -> dict[str, Any]:
    return {
        "order_id": f"o-{uuid4().hex[:10]}",
        "channel": "tmall",
        "identity": identity("tmall_ouid", f"ou-{uuid4().hex}"),
        "placed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "amount": 2933,
        **kw,
    }


def with_raw(body: dict[str, Any], field: str, raw: str) -> bytes:
    """``body`` as JSON with ``field``'s value written as the literal ``raw``."""
    return json.dumps({**body, field: "@@"}).replace('"@@"', raw).encode()


async def post_raw(client: Client, url: str, raw: bytes, headers: dict[str, str]) -> Any:
    return await client.post(
        url, content=raw, headers={**headers, "Content-Type": "application/json"}
    )


# -- strict integers -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", LAX_INTEGERS)
async def test_an_order_amount_that_is_not_a_json_integer_is_400_invalid_type(
    client: Client, admin: dict[str, str], program: None, raw: str
) -> None:
    response = await post_raw(client, "/v1/orders", with_raw(an_order(), "amount", raw), admin)
    assert assert_problem(response, 400, "invalid_type")["field"] == "amount"


@pytest.mark.parametrize("raw", LAX_INTEGERS)
@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("redemptions", {"redemption_id": "r-1", "amount": 1}),
        ("adjustments", {"adjustment_id": "a-1", "amount": 1, "reason": "goodwill"}),
        ("holds", {"hold_id": "h-1", "amount": 1}),
    ],
)
async def test_points_amounts_that_are_not_json_integers_are_400_invalid_type_and_write_nothing(
    client: Client, admin: dict[str, str], cid: str, route: str, body: dict[str, Any], raw: str
) -> None:
    url = f"/v1/customers/{cid}/points/points/{route}"
    response = await post_raw(client, url, with_raw(body, "amount", raw), admin)
    assert assert_problem(response, 400, "invalid_type")["field"] == "amount"
    balances = await client.get(f"/v1/customers/{cid}/points", headers=admin)
    assert balances.status_code == 200, balances.text
    assert all(b["available"] == 0 for b in balances.json()["balances"]), balances.text


async def test_a_json_integer_is_still_accepted(
    client: Client, admin: dict[str, str], program: None
) -> None:
    response = await post_raw(client, "/v1/orders", with_raw(an_order(), "amount", "1000"), admin)
    assert response.status_code == 201, response.text


# -- malformed bodies ----------------------------------------------------------------------------

MALFORMED = {
    "nan": b'{"amount": NaN}',
    "infinity": b'{"amount": Infinity}',
    "truncated": b'{"order_id": "o-1", "amount": 1',
    "invalid_utf8": b'{"order_id": "\xff\xfe"}',
    "lone_surrogate": b'{"order_id": "\\ud800"}',
    "trailing_data": json.dumps(an_order()).encode() + b" x",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_body_is_400_malformed_json(
    client: Client, admin: dict[str, str], raw: bytes
) -> None:
    assert_problem(await post_raw(client, "/v1/orders", raw, admin), 400, "malformed_json")


async def test_a_number_too_large_for_a_float_is_400_invalid_value(
    client: Client, admin: dict[str, str], program: None
) -> None:
    body = {"identities": [identity("wechat_unionid", "u-big")], "attributes": {"x": "@@"}}
    raw = json.dumps(body).replace('"@@"', "1e400").encode()
    assert_problem(await post_raw(client, "/v1/customers", raw, admin), 400, "invalid_value")


DEEP = b"[" * 10_000 + b"]" * 10_000


@pytest.mark.parametrize(
    ("url", "raw"),
    [
        (
            "/v1/customers",
            b'{"identities": [{"type": "wechat_unionid", "value": "u-1"}], "attributes": {"x": '
            + DEEP
            + b"}}",
        ),
        ("/v1/orders/batch", b'{"orders": [{"order_id": ' + DEEP + b"}]}"),
        ("/v1/program", b'{"point_types": ' + DEEP + b"}"),
    ],
)
async def test_deep_nesting_inside_a_free_form_field_is_400_malformed_json(
    client: Client, admin: dict[str, str], url: str, raw: bytes
) -> None:
    method = client.put if url == "/v1/program" else client.post
    headers = {**admin, "Content-Type": "application/json"}
    assert_problem(await method(url, content=raw, headers=headers), 400, "malformed_json")


async def test_a_nul_character_in_a_body_string_is_400_naming_the_field(
    client: Client, admin: dict[str, str], program: None
) -> None:
    raw = b'{"identities": [{"type": "wechat_unionid", "value": "u-a\\u0000b"}]}'
    response = await post_raw(client, "/v1/customers", raw, admin)
    assert assert_problem(response, 400, "invalid_value")["field"] == "identities[0].value"


@pytest.mark.parametrize("url", ["/v1/orders", "/v1/program", "/v1/orders/batch"])
async def test_an_empty_body_where_one_is_required_is_400_missing_body(
    client: Client, admin: dict[str, str], url: str
) -> None:
    method = client.put if url == "/v1/program" else client.post
    response = await method(url, content=b"", headers=admin)
    assert_problem(response, 400, "missing_body")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_of_another_content_type_is_415_unsupported_media_type(
    client: Client, admin: dict[str, str], program: None, content_type: str
) -> None:
    raw = json.dumps(an_order()).encode()
    headers = {**admin, "Content-Type": content_type}
    response = await client.post("/v1/orders", content=raw, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")


async def test_a_json_content_type_with_a_charset_or_a_suffix_is_accepted(
    client: Client, admin: dict[str, str], program: None
) -> None:
    for content_type in ["application/json; charset=utf-8", "application/merge-patch+json"]:
        raw = json.dumps(an_order()).encode()
        headers = {**admin, "Content-Type": content_type}
        response = await client.post("/v1/orders", content=raw, headers=headers)
        assert response.status_code == 201, (content_type, response.text)


# -- path and query parameters -------------------------------------------------------------------

BAD_PATH_VALUES = {"nul": "a%00b", "kilobytes": "a" * 4096}
VALID = {
    "channel": "tmall",
    "order_id": "o-1",
    "point_type": "points",
    "hold_id": "h-1",
    "redemption_id": "r-1",
    "group": "consumer",
    "override_id": "ov-1",
    "grant_id": "g-1",
    "code": "free_shipping",
    "role": "agent",
    "tag": "vip",
    "staff_id": "s-1",
    "merge_id": str(uuid4()),
}


def routes_with(app: Litestar) -> list[tuple[str, str, str]]:
    """Every (method, path template, path parameter) of the app's API (not its docs pages)."""
    found = []
    for route in app.routes:
        if not route.path.startswith("/v1/"):
            continue
        for name in re.findall(r"{(\w+):\w+}", route.path):
            for method in sorted(getattr(route, "methods", [])):
                if method not in {"HEAD", "OPTIONS"}:
                    found.append((method, route.path, name))
    return found


ROUTES = routes_with(create_app(Settings(database_url="postgresql://unused")))


def test_every_path_parameter_is_in_the_sample(anyio_backend: str) -> None:
    names = {name for _, _, name in ROUTES}
    assert names <= {*VALID, "customer_id"}, names - {*VALID, "customer_id"}


def bad_path_cases() -> list[Any]:
    """Every route with each bad value; each route with one of them (the values taken in turn)
    by default, the rest of the cross product in ``make test-long``: each case costs a tenant
    and an app, and a route's check does not depend on which bad value it meets."""
    kinds = list(BAD_PATH_VALUES)
    cases = []
    for i, route in enumerate(ROUTES):
        for kind in kinds:
            marks = [] if kind == kinds[i % len(kinds)] else [pytest.mark.slow]
            case = (*route, BAD_PATH_VALUES[kind])
            cases.append(pytest.param(*case, id=f"{' '.join(route)}-{kind}", marks=marks))
    return cases


@pytest.mark.parametrize(("method", "template", "name", "bad"), bad_path_cases())
async def test_a_bad_path_parameter_is_400_invalid_path_parameter_naming_it(
    client: Client, admin: dict[str, str], method: str, template: str, name: str, bad: str
) -> None:
    values = {**VALID, "customer_id": str(uuid4()), name: bad}
    path = re.sub(r"{(\w+):\w+}", lambda m: values[m.group(1)], template)
    response = await client.request(method, path, json={}, headers=admin)
    assert assert_problem(response, 400, "invalid_path_parameter")["field"] == name


@pytest.mark.parametrize(
    ("name", "value"),
    [("point_type", "Points"), ("channel", "a b"), ("hold_id", "h 1"), ("group", "x" * 33)],
)
async def test_a_path_parameter_outside_its_charset_is_400(
    client: Client, admin: dict[str, str], cid: str, name: str, value: str
) -> None:
    values = {**VALID, name: value}
    urls = {
        "point_type": f"/v1/customers/{cid}/points/{values['point_type']}/entries",
        "channel": f"/v1/orders/{values['channel']}/o-1/refunds",
        "hold_id": f"/v1/customers/{cid}/points/points/holds/{values['hold_id']}/capture",
        "group": f"/v1/customers/{cid}/levels/{values['group']}/overrides",
    }
    method = "GET" if name == "point_type" else "POST"
    response = await client.request(method, urls[name], json={}, headers=admin)
    assert assert_problem(response, 400, "invalid_path_parameter")["field"] == name


@pytest.mark.parametrize(
    "url",
    [
        "/v1/customers?phone=1%002",
        "/v1/customers?email=" + "a" * 5000,
        "/v1/customers?identity=wechat_unionid:a%00b",
        "/v1/events?types=a%00b",
    ],
)
async def test_a_query_parameter_with_nul_or_kilobytes_is_400_invalid_parameter(
    client: Client, admin: dict[str, str], url: str
) -> None:
    assert_problem(await client.get(url, headers=admin), 400, "invalid_parameter")


async def test_a_role_reason_with_nul_is_400_not_500(
    client: Client, admin: dict[str, str], cid: str
) -> None:
    response = await client.delete(f"/v1/customers/{cid}/roles/agent?reason=a%00b", headers=admin)
    assert_problem(response, 400, "invalid_parameter")


# -- instants ------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", OUT_OF_RANGE)
async def test_an_order_placed_at_out_of_range_is_400_naming_placed_at(
    client: Client, admin: dict[str, str], program: None, at: str
) -> None:
    response = await client.post("/v1/orders", json=an_order(placed_at=at), headers=admin)
    assert assert_problem(response, 400, "invalid_value")["field"] == "placed_at"


@pytest.mark.parametrize("at", OUT_OF_RANGE)
async def test_a_behaviour_occurred_at_out_of_range_is_400_naming_it(
    client: Client, admin: dict[str, str], cid: str, at: str
) -> None:
    behaviour = {
        "event_id": "e-1",
        "customer_id": cid,
        "type": "page_view",
        "occurred_at": at,
        "data": {},
    }
    response = await client.post("/v1/behaviors", json={"behaviors": [behaviour]}, headers=admin)
    body = assert_problem(response, 400, "invalid_value")
    assert body["field"] == "behaviors[0].occurred_at"


@pytest.mark.parametrize("at", OUT_OF_RANGE)
async def test_a_hold_expires_at_out_of_range_is_400_naming_it(
    client: Client, admin: dict[str, str], cid: str, at: str
) -> None:
    body = {"hold_id": "h-1", "amount": 1, "expires_at": at}
    url = f"/v1/customers/{cid}/points/points/holds"
    response = await client.post(url, json=body, headers=admin)
    assert assert_problem(response, 400, "invalid_value")["field"] == "expires_at"


@pytest.mark.parametrize("at", OUT_OF_RANGE)
async def test_assess_levels_as_of_out_of_range_is_400_naming_it(
    client: Client, admin: dict[str, str], program: None, at: str
) -> None:
    response = await client.post("/v1/jobs/assess-levels", json={"as_of": at}, headers=admin)
    assert assert_problem(response, 400, "invalid_value")["field"] == "as_of"


@pytest.mark.parametrize("until", [*OUT_OF_RANGE, "9999-12-31", "0999-01-01"])
async def test_a_level_override_until_out_of_range_is_400_naming_it(
    client: Client, admin: dict[str, str], cid: str, until: str
) -> None:
    body = {"override_id": "ov-1", "level": "gold", "until": until, "reason": "test"}
    url = f"/v1/customers/{cid}/levels/consumer/overrides"
    response = await client.post(url, json=body, headers=admin)
    assert assert_problem(response, 400, "invalid_value")["field"] == "until"


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ("1000-01-01T00:00:00+00:00", None),
        ("8999-12-31T23:59:59.999999+00:00", None),
        ("1000-01-01T13:59:59+14:00", INSTANT_RULE),
        ("8999-12-31T23:00:00-01:00", INSTANT_RULE),
        ("0999-12-31T23:59:59", INSTANT_RULE),
    ],
)
def test_instants_are_bounded_in_utc_so_every_offset_can_show_them(
    at: str, problem: str | None
) -> None:
    assert instant_problem(datetime.fromisoformat(at)) == problem


# -- min_position ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    [
        "/v1/customers/{cid}",
        "/v1/customers?identity=wechat_unionid:nobody",
        "/v1/customers/{cid}/history",
        "/v1/merge-candidates",
        "/v1/customers/{cid}/levels",
        "/v1/customers/{cid}/benefits",
        "/v1/customers/{cid}/benefits/redemptions",
    ],
)
async def test_a_min_position_beyond_the_log_head_is_400_at_once_on_every_route_that_takes_one(
    client: Client, admin: dict[str, str], cid: str, route: str
) -> None:
    url = route.format(cid=cid)
    joiner = "&" if "?" in url else "?"
    started = time.monotonic()
    response = await client.get(f"{url}{joiner}min_position=10000000", headers=admin)
    assert time.monotonic() - started < 2
    assert assert_problem(response, 400, "position_beyond_head")["field"] == "min_position"


async def test_an_event_feed_position_beyond_a_bigint_is_400_invalid_parameter(
    client: Client, admin: dict[str, str]
) -> None:
    response = await client.get("/v1/events?after=99999999999999999999", headers=admin)
    assert assert_problem(response, 400, "invalid_parameter")["field"] == "after"
