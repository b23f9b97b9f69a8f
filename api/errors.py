"""The one place where errors become HTTP: RFC 9457 problem details with a stable ``code``.

4xx are logged at info without a traceback; 5xx at error with one.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import psycopg
import structlog
from eventsourcing import persistence
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from application.errors import (
    ApplicationError,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    RejectionReplayed,
    RequestInProgress,
    ServiceUnavailable,
    TenantNotFound,
)
from domain.errors import (
    AgentCycle,
    BenefitDisabled,
    BenefitNotFound,
    BenefitNotHeld,
    BenefitQuotaExhausted,
    CannotMerge,
    ClientIdReused,
    CustomerErased,
    CustomerMerged,
    CustomerNotFound,
    DomainError,
    GrantNotFound,
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotFound,
    IdentityConflict,
    IdentityHeldByOther,
    IdentityLimitReached,
    IdentityNotHeld,
    InsufficientPoints,
    InvalidInput,
    LastIdentity,
    LevelGroupNotFound,
    LevelNotFound,
    MergeNotFound,
    MergeNotUndoable,
    OrderNotFound,
    OverrideNotFound,
    PointsNotRedeemable,
    PointTypeNotFound,
    ProgramNotFound,
    RedemptionNotFound,
    RefundExceedsOrder,
    ReversalExceedsRedemption,
    ReversalWindowClosed,
    RoleNotHeld,
    TagLimitReached,
    UnknownReferrer,
)
from projections.queries import PositionBeyondHead, ReadModelBehind

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """An error the API itself raises (auth, malformed parameters)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


def unauthenticated(detail: str = "a valid API key is required") -> ApiError:
    return ApiError(401, "unauthenticated", detail)


def forbidden(role: str, permission: str) -> ApiError:
    return ApiError(403, "forbidden", f"role {role!r} lacks permission {permission!r}")


def not_found(code: str, detail: str) -> ApiError:
    return ApiError(404, code, detail)


def bad_request(code: str, detail: str, **extra: Any) -> ApiError:
    return ApiError(400, code, detail, **extra)


STATUS_BY_ERROR: dict[type[Exception], int] = {
    InvalidInput: 400,
    ClientIdReused: 422,
    CustomerNotFound: 404,
    TenantNotFound: 404,
    IdentityConflict: 409,
    IdentityHeldByOther: 409,
    IdentityLimitReached: 409,
    IdentityNotHeld: 404,
    LastIdentity: 409,
    CustomerMerged: 409,
    CustomerErased: 409,
    CannotMerge: 409,
    MergeNotFound: 404,
    MergeNotUndoable: 409,
    AgentCycle: 409,
    RoleNotHeld: 404,
    TagLimitReached: 409,
    ProgramNotFound: 404,
    UnknownReferrer: 422,
    OrderNotFound: 404,
    RefundExceedsOrder: 409,
    PointTypeNotFound: 404,
    PointsNotRedeemable: 409,
    InsufficientPoints: 409,
    HoldNotFound: 404,
    HoldAlreadyResolved: 409,
    HoldExpired: 409,
    RedemptionNotFound: 404,
    ReversalExceedsRedemption: 409,
    ReversalWindowClosed: 409,
    LevelGroupNotFound: 404,
    LevelNotFound: 400,
    OverrideNotFound: 404,
    BenefitNotFound: 404,
    GrantNotFound: 404,
    BenefitNotHeld: 409,
    BenefitDisabled: 409,
    BenefitQuotaExhausted: 409,
    IdempotencyKeyReused: 422,
    RequestInProgress: 409,
    ConcurrencyConflict: 409,
    ServiceUnavailable: 503,
}

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"urn:membercore:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=body["status"],
        media_type=PROBLEM_JSON,
        headers=headers,
    )


STATUS_BY_CODE: dict[str, int] = {
    code: status
    for error, status in STATUS_BY_ERROR.items()
    if isinstance(code := getattr(error, "code", None), str)
}


def replayed_problem(rejection: dict[str, Any]) -> dict[str, Any]:
    """The problem body of a stored rejection: its fields under the code's status (rows stored
    before rejections were kept without their status carry it)."""
    fields = {k: v for k, v in rejection.items() if k not in ("type", "title", "status")}
    code = str(fields.pop("code", "rejected"))
    detail = str(fields.pop("detail", ""))
    status = rejection.get("status") or STATUS_BY_CODE.get(code, 422)
    return problem_body(int(status), code, detail, **fields)


def problem_for(exc: DomainError | ApplicationError) -> dict[str, Any]:
    """The problem body for a typed error (also stored for idempotent replay of rejections)."""
    status = STATUS_BY_ERROR.get(type(exc), 422 if isinstance(exc, DomainError) else 400)
    fields = exc.problem_fields() if isinstance(exc, DomainError) else {}
    return problem_body(status, exc.code, exc.detail, **fields)


_AT = re.compile(r" - at `\$(?:\.data)?\.?(?P<path>[^`]*)`")
# "Expected `str`, got `int`" is a type error; "Expected `str` of length <= 256" or
# "Expected `array` of length >= 1" is a value of the right type breaking a constraint.
_TYPE_MISMATCH = re.compile(r"^Expected `[^`]*`(?:, got `[^`]*`)?$")


def _validation_problem(exc: ValidationException) -> dict[str, Any]:
    """Turn msgspec's message into a stable code plus the offending field."""
    cause = str(exc.__cause__ or "")
    messages = exc.extra if isinstance(exc.extra, list) else []
    message = messages[0].get("message", exc.detail) if messages else exc.detail
    match = _AT.search(cause)
    field = match.group("path") if match else (messages[0].get("key") if messages else None)
    if "unknown field" in message:
        code = "unknown_field"
        named = re.search(r"`([^`]+)`", message)
        if named:
            field = f"{field}.{named.group(1)}" if field and field != "data" else named.group(1)
    elif "missing required field" in message:
        code = "missing_field"
        named = re.search(r"`([^`]+)`", message)
        if named:
            field = f"{field}.{named.group(1)}" if field and field != "data" else named.group(1)
    elif _TYPE_MISMATCH.match(message):
        code = "invalid_type"
    else:
        code = "invalid_value"
    source = messages[0].get("source") if messages else None
    if source == "query":
        code = "invalid_parameter"
    return problem_body(400, code, f"{message}" + (f" (at {field})" if field else ""), field=field)


# Seconds a client should wait before retrying a 503 (or a transient 409): the pool replaces a
# lost connection, and a restarted PostgreSQL accepts connections, within about that.
RETRY_AFTER = "1"
UNAVAILABLE_DETAIL = (
    "the database is unavailable or timed out; retry later (a command retried with the same"
    " client id runs at most once)"
)
CONFLICT_DETAIL = "the command conflicted with a concurrent write; retry"

# SQLSTATE classes (and codes) that mean the server or the connection failed, not the statement:
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
# query_canceled by statement_timeout or pg_cancel_backend), 58 system error, and the idle
# and transaction timeouts (25P03, 25P04), after which the server closes the connection.
_UNAVAILABLE_SQLSTATE = ("08", "53", "57", "58", "25P03", "25P04")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its explicit causes: eventsourcing re-raises driver errors as its own types
    (``raise ... from``). Implicit context is not followed: an error raised while handling a
    database error is a fault of its own."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 16:
        seen.append(current)
        current = current.__cause__
    return seen


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is the database (or the pool in front of it) failing rather than the
    request: a lost or refused connection, a pool timeout, a cancelled statement, a lock or
    statement timeout, a server shutting down. Such a request may succeed when retried."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_unavailable(e) for e in exc.exceptions)
    for e in _chain(exc):
        if isinstance(
            e,
            ServiceUnavailable
            | psycopg.OperationalError  # PoolTimeout and PoolClosed included
            | psycopg.InterfaceError
            | persistence.OperationalError
            | persistence.InterfaceError,
        ):
            return True
        if isinstance(e, psycopg.Error) and (e.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATE):
            return True
    return False


def is_write_conflict(exc: BaseException) -> bool:
    """A unique violation that escaped the command's retries: another writer got there first."""
    chain = _chain(exc)
    if not any(isinstance(e, persistence.IntegrityError | psycopg.IntegrityError) for e in chain):
        return False
    driver = [e for e in chain if isinstance(e, psycopg.IntegrityError)]
    # eventsourcing raises its own IntegrityError (no driver cause) for a version conflict.
    return not driver or isinstance(driver[0], psycopg.errors.UniqueViolation)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        body = problem_body(exc.status, exc.code, exc.detail, **exc.extra)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, RejectionReplayed):
        body = replayed_problem(exc.rejection)
        headers["Idempotent-Replayed"] = "true"
    elif isinstance(exc, DomainError | ApplicationError):
        body = problem_for(exc)
        if isinstance(exc, ServiceUnavailable | ConcurrencyConflict | RequestInProgress):
            headers["Retry-After"] = RETRY_AFTER
    elif is_unavailable(exc):
        log.warning("database_unavailable", path=request.url.path, exc_info=exc)
        body = problem_body(503, ServiceUnavailable.code, UNAVAILABLE_DETAIL)
        return problem_response(body, {"Retry-After": RETRY_AFTER})
    elif is_write_conflict(exc):
        body = problem_body(409, ConcurrencyConflict.code, CONFLICT_DETAIL)
        headers["Retry-After"] = RETRY_AFTER
    elif isinstance(exc, PositionBeyondHead):
        body = problem_body(400, exc.code, str(exc), field="min_position", head=exc.head)
    elif isinstance(exc, ReadModelBehind):
        body = problem_body(503, exc.code, str(exc), projection=exc.projection, reached=exc.reached)
        headers["Retry-After"] = RETRY_AFTER
    elif isinstance(exc, ValidationException):
        body = _validation_problem(exc)
    elif isinstance(exc, HTTPException):
        body = _http_problem(exc)
    elif isinstance(exc, UnicodeDecodeError):
        # msgspec raises this (not a DecodeError) for invalid UTF-8 inside a JSON string.
        body = problem_body(400, "malformed_json", "the request body is not valid UTF-8")
    else:
        log.exception("unhandled_error", path=request.url.path)
        body = problem_body(500, "internal_error", "an unexpected error occurred")
        return problem_response(body)
    log.info("request_rejected", status=body["status"], code=body["code"], path=request.url.path)
    return problem_response(body, headers or None)


def _http_problem(exc: HTTPException) -> dict[str, Any]:
    status = exc.status_code
    detail = str(exc.detail)
    if status == 413:
        return problem_body(413, "payload_too_large", "the request body is too large")
    if status == 400 and (
        isinstance(exc.__cause__, SerializationException) or "malformed" in detail.lower()
    ):
        # Litestar re-raises the body's decode error as a ClientException caused by it.
        return problem_body(400, "malformed_json", detail)
    if status == 404:
        return problem_body(404, "not_found", "no such resource")
    if status == 405:
        return problem_body(405, "method_not_allowed", detail)
    if status == 415:
        return problem_body(415, "unsupported_media_type", detail)
    if status >= 500:
        log.error("http_error", status=status, detail=detail)
        return problem_body(status, "internal_error", "an unexpected error occurred")
    return problem_body(status, "bad_request", detail)
