"""Running a command over HTTP: idempotency by client id, response shape, replay headers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from litestar import Request, Response

from api.auth import principal_of, tenant_of
from api.errors import bad_request, not_found
from application.context import CommandContext
from application.errors import RejectionReplayed
from application.idempotency import IdempotencyKey, StoredAnswer, StoredOutcome
from application.kernel import Answer, Caller, Command, Outcome, execute, rejection_of
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


STATUS_OF = {Outcome.CREATED: 201, Outcome.DONE: 200, Outcome.REPLAYED: 200}


def respond(answer: Answer) -> Response[Any]:
    """A command's answer: 201 created, 200 done; a replay answers 200 with
    ``Idempotent-Replayed`` (the contract: not the original 201)."""
    headers = {"Idempotent-Replayed": "true"} if answer.outcome is Outcome.REPLAYED else None
    body = {**answer.body, "position": answer.position}
    return Response(
        msgspec.json.encode(body),
        status_code=STATUS_OF[answer.outcome],
        media_type="application/json",
        headers=headers,
    )


def run(
    request: Request[Any, Any, Any], command: Command, client_id: str | None = None
) -> Response[Any]:
    """Run ``command`` through the kernel as the request's key, in its tenant. ``client_id`` is
    the ``Idempotency-Key`` header of commands whose body names no client id."""
    tenant = tenant_of(request)
    caller = Caller(principal_of(request).key_id, tenant.slug, tenant.idempotency)
    answer = execute(tenant.app, command, caller, client_id=idempotency_header(client_id))
    return respond(answer)


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
        return _legacy(result)

    canonical = msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
    key = IdempotencyKey(scope, client_id, hashlib.sha256(canonical).hexdigest())
    stored = tenant.idempotency.begin(key)
    if stored is not None:
        if stored.outcome == "rejected":
            raise RejectionReplayed(stored.body)
        return respond(Answer(Outcome.REPLAYED, stored.body, stored.position or 0))

    def complete(status: int, body: dict[str, Any]) -> object:
        return tenant.idempotency.completion(key, StoredAnswer(_outcome(status), body, None))

    # Ids derived from the key make a retried command produce byte-identical events.
    ctx = CommandContext(
        actor=principal.key_id,
        complete=complete,
        new_id=lambda: uuid5(NAMESPACE_URL, f"membercore:{tenant.slug}:{scope}:{client_id}"),
    )
    try:
        result = handler(ctx)
    except DomainError as e:
        tenant.idempotency.complete(key, StoredAnswer("rejected", rejection_of(e), None))
        raise
    except BaseException:
        tenant.idempotency.release(key)
        raise
    if not result.completed:
        tenant.idempotency.complete(
            key, StoredAnswer(_outcome(result.status), result.body(), result.position)
        )
    return _legacy(result)


def _outcome(status: int) -> StoredOutcome:
    return "created" if status == 201 else "done"


def _legacy(result: Result) -> Response[Any]:
    outcome = Outcome.CREATED if result.status == 201 else Outcome.DONE
    return respond(Answer(outcome, result.body(), result.position))


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
