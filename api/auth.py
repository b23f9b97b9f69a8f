"""Bearer API keys -> (tenant, role); the permission a route needs is in its ``opt``."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import structlog
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.errors import forbidden, unauthenticated
from application.permissions import Permission, allows
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Principal, Tenant


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard for every /v1 route: 401 without a known key, 403 without the route's permission."""
    permission: Permission | None = handler.opt.get("permission")
    if permission is None:
        return
    if isinstance(handler.operation_id, str):
        structlog.contextvars.bind_contextvars(command=handler.operation_id)
    header = connection.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthenticated()
    runtime: Runtime = connection.app.state.runtime
    known, principal = runtime.keys.cached(key.strip())
    if not known:
        principal = await anyio.to_thread.run_sync(runtime.keys.authenticate, key.strip())
    if principal is None:
        raise unauthenticated("the API key is not valid")
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, role=principal.role.value)
    if not allows(principal.role, permission):
        raise forbidden(principal.role.value, permission.value)
    connection.state.principal = principal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal: Principal = connection.state.principal
    return principal


def tenant_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Tenant:
    runtime: Runtime = connection.app.state.runtime
    return runtime.tenants.get(principal_of(connection).tenant)
