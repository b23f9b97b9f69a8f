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
    key = _bearer_key(connection.scope["headers"])
    if key is None:
        raise unauthenticated()
    runtime: Runtime = connection.app.state.runtime
    known, principal = runtime.keys.cached(key)
    if not known:
        principal = await anyio.to_thread.run_sync(runtime.keys.authenticate, key)
    if principal is None:
        raise unauthenticated("the API key is not valid")
    command = handler.operation_id if isinstance(handler.operation_id, str) else None
    structlog.contextvars.bind_contextvars(
        tenant=principal.tenant, role=principal.role.value, command=command
    )
    if not allows(principal.role, permission):
        raise forbidden(principal.role.value, permission.value)
    connection.state.principal = principal


def _bearer_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, read from the raw ASGI headers."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal: Principal = connection.state.principal
    return principal


def tenant_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Tenant:
    runtime: Runtime = connection.app.state.runtime
    return runtime.tenants.get(principal_of(connection).tenant)
