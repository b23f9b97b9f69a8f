"""Authentication (401), the role/permission matrix (403) and tenant isolation (404, feed)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.kernel import Caller, execute
from application.permissions import Role
from application.registration import RegisterCustomer
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.api.support import assert_problem, bearer, head, identity, project
from tests.conftest import new_slug

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

# What each role may do on these three routes, from the contract's intent (not from the code's
# table): registering is for staff, POS/apps and channel connectors; personal data is not for
# finance (its reports are aggregates) but auditors may read it; the event feed is for integrators,
# and auditors and admins may follow it too.
REGISTER = {Role.ADMIN, Role.OPERATOR, Role.SALES, Role.FRONTEND, Role.INTEGRATOR}
READ_PROFILE = {Role.ADMIN, Role.OPERATOR, Role.SALES, Role.FRONTEND, Role.INTEGRATOR, Role.AUDITOR}
READ_FEED = {Role.ADMIN, Role.INTEGRATOR, Role.AUDITOR}


@dataclass(frozen=True)
class World:
    tenant: Tenant
    keys: dict[Role, dict[str, str]]
    customer_id: str


@pytest.fixture(scope="module")
def world(runtime: Runtime) -> World:
    """One tenant with a key per role and one projected customer, shared by the matrix."""
    tenant = runtime.tenants.create(new_slug("auth"))
    keys = {role: bearer(runtime.keys.create(tenant.slug, role)) for role in Role}
    command = RegisterCustomer(identities=[("member_no", "m-1")])
    registration = execute(tenant.app, command, Caller("test"))
    project(tenant)
    return World(tenant, keys, registration.body["customer_id"])


ROUTES: dict[str, Callable[[World], tuple[str, str]]] = {
    "register": lambda w: ("POST", "/v1/customers"),
    "read_profile": lambda w: ("GET", f"/v1/customers/{w.customer_id}"),
    "read_feed": lambda w: ("GET", "/v1/events"),
}


async def call(client: Client, world: World, route: str, headers: dict[str, str]) -> httpx.Response:
    method, path = ROUTES[route](world)
    if method == "POST":
        body = {"identities": [identity("member_no", secrets.token_hex(6))]}
        return await client.post(path, json=body, headers=headers)
    return await client.get(path, headers=headers)


@pytest.mark.parametrize("route", list(ROUTES))
async def test_missing_authorization_header_answers_401_with_bearer_challenge(
    client: Client, world: World, route: str
) -> None:
    response = await call(client, world, route, {})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", list(ROUTES))
async def test_non_bearer_scheme_answers_401_with_bearer_challenge(
    client: Client, world: World, route: str
) -> None:
    # A valid key sent under another scheme must not authenticate.
    token = world.keys[Role.ADMIN]["Authorization"].removeprefix("Bearer ")
    response = await call(client, world, route, {"Authorization": f"Basic {token}"})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("key", ["mck_" + "A" * 43, "not-a-membercore-key", "mck_" + "x" * 200])
async def test_unknown_api_key_answers_401_with_bearer_challenge(
    client: Client, world: World, route: str, key: str
) -> None:
    response = await call(client, world, route, bearer(key))
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_empty_bearer_token_answers_401(client: Client, world: World) -> None:
    response = await client.get("/v1/events", headers={"Authorization": "Bearer   "})
    assert_problem(response, 401, "unauthenticated")


async def test_unauthenticated_register_writes_nothing(client: Client, world: World) -> None:
    before = head(world.tenant)
    response = await call(client, world, "register", bearer("mck_" + "B" * 43))
    assert response.status_code == 401
    assert head(world.tenant) == before


@pytest.mark.parametrize("role", list(Role))
async def test_register_is_allowed_exactly_for_writing_roles(
    client: Client, world: World, role: Role
) -> None:
    before = head(world.tenant)
    response = await call(client, world, "register", world.keys[role])
    if role in REGISTER:
        assert response.status_code == 201, response.text
        assert response.json()["matched"] is False
    else:
        assert_problem(response, 403, "forbidden")
        assert head(world.tenant) == before


@pytest.mark.parametrize("role", list(Role))
async def test_profile_read_is_allowed_exactly_for_roles_that_may_see_personal_data(
    client: Client, world: World, role: Role
) -> None:
    response = await call(client, world, "read_profile", world.keys[role])
    if role in READ_PROFILE:
        assert response.status_code == 200, response.text
        assert response.json()["customer_id"] == world.customer_id
    else:
        body = assert_problem(response, 403, "forbidden")
        assert "member_no" not in response.text
        assert world.customer_id not in body["detail"]


@pytest.mark.parametrize("role", list(Role))
async def test_event_feed_is_allowed_exactly_for_feed_roles(
    client: Client, world: World, role: Role
) -> None:
    response = await call(client, world, "read_feed", world.keys[role])
    if role in READ_FEED:
        assert response.status_code == 200, response.text
        assert world.customer_id in {i["stream_id"] for i in response.json()["items"]}
    else:
        assert_problem(response, 403, "forbidden")


async def test_finance_cannot_look_customers_up_by_identity(client: Client, world: World) -> None:
    response = await client.get(
        "/v1/customers", params={"identity": "member_no:m-1"}, headers=world.keys[Role.FINANCE]
    )
    assert_problem(response, 403, "forbidden")


# -- tenant isolation (J2) -------------------------------------------------------------------


@pytest.fixture
def other(runtime: Runtime) -> tuple[Tenant, dict[str, str]]:
    """A second tenant and its admin key."""
    tenant = runtime.tenants.create(new_slug("other"))
    return tenant, bearer(runtime.keys.create(tenant.slug, Role.ADMIN))


async def test_customer_of_another_tenant_is_404_customer_not_found(
    client: Client, world: World, other: tuple[Tenant, dict[str, str]]
) -> None:
    _, other_admin = other
    response = await client.get(f"/v1/customers/{world.customer_id}", headers=other_admin)
    body = assert_problem(response, 404, "customer_not_found")
    assert "member_no" not in response.text
    assert set(body) - {"type", "title", "status", "detail", "code"} == set()


async def test_identity_lookup_does_not_find_customers_of_another_tenant(
    client: Client, world: World, other: tuple[Tenant, dict[str, str]]
) -> None:
    _, other_admin = other
    response = await client.get(
        "/v1/customers", params={"identity": "member_no:m-1"}, headers=other_admin
    )
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_event_feed_of_a_tenant_holds_none_of_another_tenants_events(
    client: Client, world: World, other: tuple[Tenant, dict[str, str]]
) -> None:
    _, other_admin = other
    mine = await client.post(
        "/v1/customers", json={"identities": [identity("member_no", "b-1")]}, headers=other_admin
    )
    assert mine.status_code == 201
    feed = (await client.get("/v1/events", params={"limit": 1000}, headers=other_admin)).json()
    streams = {item["stream_id"] for item in feed["items"]}
    assert streams == {mine.json()["customer_id"]}
    assert world.customer_id not in streams
    assert "m-1" not in str(feed)


async def test_the_same_identity_in_two_tenants_registers_two_customers(
    client: Client, world: World, other: tuple[Tenant, dict[str, str]]
) -> None:
    _, other_admin = other
    response = await client.post(
        "/v1/customers", json={"identities": [identity("member_no", "m-1")]}, headers=other_admin
    )
    assert response.status_code == 201, response.text
    assert response.json()["matched"] is False


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None
)
@given(
    header=st.binary(max_size=150).filter(lambda b: not set(b) & {0, 10, 13})
    | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=150).map(
        lambda t: ("Bearer mck_" + t).encode("latin-1")
    )
)
async def test_arbitrary_authorization_header_answers_401_and_never_5xx(
    client: Client, world: World, header: bytes
) -> None:
    response = await client.get("/v1/events", headers={"Authorization": header})  # type: ignore[dict-item]
    assert_problem(response, 401, "unauthenticated")
