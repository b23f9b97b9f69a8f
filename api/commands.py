"""Running a command over HTTP: idempotency by client id, response shape, replay headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from litestar import Request, Response

from api.auth import principal_of, tenant_of
from api.errors import PROBLEM_JSON, bad_request, not_found, problem_for
from application.context import CommandContext
from application.errors import ApplicationError
from application.idempotency import IdempotencyKey, StoredResponse
from domain.errors import DomainError
from infrastructure.tenancy import Principal, Tenant

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Result(Protocol):
    position: int
    completed: bool

    @property
    def status(self) -> int: ...

    def body(self) -> dict[str, Any]: ...


def idempotency_header(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not CLIENT_ID.match(raw):
        raise bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-128 characters from [A-Za-z0-9._:-]",
            field="Idempotency-Key",
        )
    return raw


def _respond(status: int, body: dict[str, Any], *, replayed: bool) -> Response[Any]:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return Response(
        msgspec.json.encode(body), status_code=status, media_type=media, headers=headers
    )


def run_command(
    tenant: Tenant,
    principal: Principal,
    *,
    scope: str,
    client_id: str | None,
    request: Any,
    handler: Callable[[CommandContext], Result],
) -> Response[Any]:
    """Run ``handler`` at most once per ``(scope, client_id)``; replay the first answer after."""
    if client_id is None:
        result = handler(CommandContext(actor=principal.key_id))
        return _respond(
            result.status, {**result.body(), "position": result.position}, replayed=False
        )

    key = IdempotencyKey.for_request(scope, client_id, request)
    stored = tenant.idempotency.begin(key)
    if stored is not None:
        body = (
            stored.body if stored.position is None else {**stored.body, "position": stored.position}
        )
        # The contract: a replayed success answers 200 (not the original 201); a replayed
        # rejection answers its original status.
        status = 200 if stored.status < 300 else stored.status
        return _respond(status, body, replayed=True)

    def complete(status: int, body: dict[str, Any]) -> object:
        return tenant.idempotency.completion(key, status, body)

    # Ids derived from the key make a retried command produce byte-identical events.
    ctx = CommandContext(
        actor=principal.key_id,
        complete=complete,
        new_id=lambda: uuid5(NAMESPACE_URL, f"membercore:{tenant.slug}:{scope}:{client_id}"),
    )
    try:
        result = handler(ctx)
    except (DomainError, ApplicationError) as e:
        if _is_final(e):
            # The rejection is the answer to this key: replaying it must not run the command again.
            tenant.idempotency.complete(key, StoredResponse(_status(e), problem_for(e), None))
        else:
            tenant.idempotency.release(key)
        raise
    except BaseException:
        tenant.idempotency.release(key)
        raise
    if not result.completed:
        tenant.idempotency.complete(
            key, StoredResponse(result.status, result.body(), result.position)
        )
    return _respond(result.status, {**result.body(), "position": result.position}, replayed=False)


def _is_final(e: Exception) -> bool:
    # Transient failures (conflict retries exhausted, database down) leave the key free.
    return isinstance(e, DomainError)


def _status(e: DomainError | ApplicationError) -> int:
    status: int = problem_for(e)["status"]
    return status


def run_for(
    request: Request[Any, Any, Any],
    scope: str,
    client_id: str | None,
    body: Any,
    handler: Callable[[Any, CommandContext], Result],
) -> Response[Any]:
    """``run_command`` for a route: the request's tenant and key, ``handler(app, ctx)``."""
    tenant = tenant_of(request)
    return run_command(
        tenant,
        principal_of(request),
        scope=scope,
        client_id=idempotency_header(client_id),
        request=body,
        handler=lambda ctx: handler(tenant.app, ctx),
    )


def customer_id_of(raw: str) -> UUID:
    """A customer id from a path: 404 ``customer_not_found`` when it cannot be one."""
    cid = parse_uuid(raw)
    if cid is None:
        raise not_found("customer_not_found", f"customer {raw} does not exist")
    return cid


def parse_uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


def position_cursor(cursor: str | None, default: int = 0) -> int:
    """A ``next_cursor`` that is a log or table position; 400 ``invalid_cursor`` otherwise.

    At most 18 digits: anything longer cannot be a bigint position (and would overflow in SQL).
    """
    if cursor is None:
        return default
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise bad_request("invalid_cursor", "cursor must be a next_cursor value", field="cursor")
    return int(cursor)
