"""Running a command over HTTP: idempotency by client id, response shape, replay headers."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter

from api.auth import principal_of, tenant_of
from api.errors import bad_request, not_found
from application.kernel import Answer, Caller, Command, Outcome, execute

CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The header a command whose body names no client id takes it in.
IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key")]


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
