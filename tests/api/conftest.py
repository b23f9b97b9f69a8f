"""API fixtures: an in-process app on the session runtime, and tenants with keys per role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from tests.api.support import bearer


@pytest.fixture
async def client(
    anyio_backend: str, settings: Settings, runtime: Runtime
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app on the shared runtime; entering the client runs the lifespan (async read pool)."""
    async with AsyncTestClient(create_app(settings, runtime=runtime)) as c:
        yield c


@pytest.fixture
def key_for(runtime: Runtime) -> Callable[[Tenant, Role], dict[str, str]]:
    """Authorization headers for a new key of ``role`` in ``tenant``."""

    def make(tenant: Tenant, role: Role) -> dict[str, str]:
        return bearer(runtime.keys.create(tenant.slug, role))

    return make


@pytest.fixture
def admin(tenant: Tenant, key_for: Callable[[Tenant, Role], dict[str, str]]) -> dict[str, str]:
    """Authorization headers of an admin key of the test's ``tenant``."""
    return key_for(tenant, Role.ADMIN)
