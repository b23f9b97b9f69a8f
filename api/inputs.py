"""Exact inputs, checked in one place before a handler runs.

``check_request`` is the app's ``before_request`` hook: every path parameter is held to its
pattern (a NUL byte or kilobytes never reach storage), and a JSON body is decoded strictly
against the route's schema (``1e3``, ``1000.0`` and ``"1000"`` are not integers) with the
decoded value handed on to Litestar, so the body is parsed once. Instants are bounded by
``Strict.__post_init__`` (``check_instants``) so that every time zone can represent them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.utils.scope.state import ScopeState

from api.errors import ApiError, bad_request
from projections.queries import PositionBeyondHead

# Instants are stored with their offset and shown in the tenant's zone: years 1000-8999 in UTC
# stay representable (and four-digit) under any offset up to ±14 hours.
INSTANT_MIN = datetime(1000, 1, 1, tzinfo=UTC)
INSTANT_MAX = datetime(9000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
INSTANT_RULE = "must be an instant from 1000-01-01 to 8999-12-31 (UTC)"

_CLIENT_ID = r"[A-Za-z0-9._:-]{1,128}"
_CODE = r"[a-z][a-z0-9_]{0,31}"
# Every path parameter not named below: any printable text up to 128 characters. Customer and
# merge ids are then parsed by their route (not a UUID: 404, as for an unknown one).
_ANY = r"[^\x00-\x1f\x7f-\x9f]{1,128}"
PATH_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "point_type": _CODE,
        "group": _CODE,
        "code": _CODE,
        "role": _CODE,
        "channel": r"[A-Za-z0-9._:-]{1,64}",
        "order_id": _CLIENT_ID,
        "hold_id": _CLIENT_ID,
        "redemption_id": _CLIENT_ID,
        "override_id": _CLIENT_ID,
        "grant_id": _CLIENT_ID,
    }.items()
}
_DEFAULT_PATTERN = re.compile(_ANY)
# A query value: printable text (tabs and line breaks allowed, as in a reason) up to 1024.
_QUERY_VALUE = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]{0,1024}")

# Content types a JSON body may be sent with; none at all is taken as JSON too.
_JSON_TYPE = re.compile(r"^application/(?:[a-z0-9.+-]+\+)?json\s*(?:;.*)?$", re.IGNORECASE)

_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"`([^`]+)`")
# "Expected `str`, got `int`" is a type error; "Expected `str` of length <= 256" or
# "Expected `array` of length >= 1" is a value of the right type breaking a constraint.
_TYPE_MISMATCH = re.compile(r"^Expected `[^`]*`(?:, got `[^`]*`)?$")


# -- instants ----------------------------------------------------------------------------------


def instant_problem(value: datetime) -> str | None:
    """Why ``value`` is out of range, or None. A naive value is read as UTC."""
    at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return None if INSTANT_MIN <= at <= INSTANT_MAX else INSTANT_RULE
    except OverflowError:
        return INSTANT_RULE


def bounded_instant(value: datetime, field: str) -> datetime:
    """``value`` itself when in range; 400 ``invalid_value`` naming ``field`` otherwise."""
    reason = instant_problem(value)
    if reason is not None:
        raise bad_request("invalid_value", f"{field} {reason}", field=field)
    return value


def bounded_instant_text(raw: str, field: str) -> str:
    """``raw`` itself unless it is an instant (or a bare date) out of range: then 400. Text
    that does not parse is left to the parser of the route, which knows the tenant's zone."""
    try:
        value = (
            datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
            if len(raw) == 10
            else datetime.fromisoformat(raw)
        )
    except ValueError:
        return raw
    if value.tzinfo is not None or len(raw) == 10:
        bounded_instant(value, field)
    return raw


@cache
def _instant_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields if _is_instant(f.type))


def _is_instant(tp: msgspec.inspect.Type) -> bool:
    if isinstance(tp, msgspec.inspect.UnionType):
        return any(isinstance(t, msgspec.inspect.DateTimeType) for t in tp.types)
    return isinstance(tp, msgspec.inspect.DateTimeType)


def check_instants(obj: msgspec.Struct) -> None:
    """Raise ValueError (a 400 naming the field, through msgspec) for an instant out of range."""
    for name in _instant_fields(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, datetime) and instant_problem(value) is not None:
            raise ValueError(f"`{name}` {INSTANT_RULE}")


def require_reachable(app: Any, position: int | None) -> None:
    """For reads from the event store (always current): a ``min_position`` beyond the log's head
    can never be met, so it is refused as the read-model routes refuse it."""
    if position:
        head = app.recorder.max_notification_id() or 0
        if position > head:
            raise PositionBeyondHead(position, head)


# -- problems ----------------------------------------------------------------------------------


def validation_problem(error: msgspec.ValidationError) -> dict[str, Any]:
    """msgspec's message as a stable code plus the offending field (a path into the body)."""
    text = str(error)
    match = _AT.search(text)
    path = match.group("path") if match else ""
    message = text[: match.start()] if match else text
    named = _NAMED.search(message)
    if "unknown field" in message or "missing required field" in message:
        code = "unknown_field" if "unknown field" in message else "missing_field"
        field = _join(path, named.group(1)) if named else path
    elif message.startswith("`") and named:
        # A ``__post_init__`` check names its own field first.
        code, field = "invalid_value", _join(path, named.group(1))
    elif _TYPE_MISMATCH.match(message):
        code, field = "invalid_type", path
    else:
        code, field = "invalid_value", path
    field = field.replace("[...]", "")
    detail = message + (f" (at {field})" if field else "")
    return {
        "type": f"urn:membercore:problem:{code}",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "code": code,
        "field": field or None,
    }


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def _problem_error(body: dict[str, Any]) -> ApiError:
    extra = {k: v for k, v in body.items() if k not in _PROBLEM_KEYS}
    return ApiError(body["status"], body["code"], body["detail"], **extra)


# -- the hook ----------------------------------------------------------------------------------


def check_path_params(params: dict[str, Any]) -> None:
    for name, value in params.items():
        if not isinstance(value, str):
            continue
        pattern = PATH_PATTERNS.get(name, _DEFAULT_PATTERN)
        if not pattern.fullmatch(value):
            raise bad_request(
                "invalid_path_parameter",
                f"path parameter {name} must match {pattern.pattern}",
                field=name,
            )


def check_query_params(params: Any) -> None:
    for name, value in params.multi_items():
        if isinstance(value, str) and not _QUERY_VALUE.fullmatch(value):
            raise bad_request(
                "invalid_parameter",
                f"query parameter {name} must be printable text of at most 1024 characters",
                field=name,
            )


@cache
def _body_type(handler: HTTPRouteHandler) -> tuple[Any, bool] | None:
    """The type a route's JSON body decodes to, and whether the body may be absent."""
    field = handler.parsed_data_field
    if field is None:
        return None
    return field.annotation, field.is_optional or field.has_default


def decode_body(body: bytes, target: Any) -> Any:
    """``body`` as ``target``, strictly; 400 with a stable code for anything else."""
    try:
        value = msgspec.json.decode(body, type=target, strict=True)
    except msgspec.ValidationError as e:
        raise _problem_error(validation_problem(e)) from e
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise bad_request("malformed_json", f"the body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise bad_request("malformed_json", "the body is nested too deeply") from e
    # A route that checks its items one by one (a batch) refuses such an item alone.
    if b"u0000" in body and not getattr(target, "checks_items", False):
        path = nul_path(msgspec.to_builtins(value))
        if path is not None:
            raise bad_request("invalid_value", f"{path} must not contain NUL", field=path)
    return value


def nul_path(value: Any, path: str = "") -> str | None:
    """Where a string in ``value`` holds NUL (which PostgreSQL text cannot store), or None."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = nul_path(k, path) or nul_path(v, _join(path, str(k)))
            if found is not None:
                return found
    elif isinstance(value, list):
        for n, v in enumerate(value):
            found = nul_path(v, f"{path}[{n}]")
            if found is not None:
                return found
    return None


async def check_request(request: Request[Any, Any, Any]) -> None:
    """The app's ``before_request``: path parameters, then the JSON body (see module doc)."""
    check_path_params(request.path_params)
    check_query_params(request.query_params)
    handler = request.route_handler
    if not isinstance(handler, HTTPRouteHandler):
        return
    expected = _body_type(handler)
    if expected is None:
        return
    target, optional = expected
    body = await request.body()
    if not body:
        if optional:
            return
        raise bad_request("missing_body", "this route needs a JSON body")
    content_type = request.headers.get("content-type")
    if content_type is not None and not _JSON_TYPE.match(content_type):
        raise ApiError(
            415, "unsupported_media_type", f"the body must be application/json, not {content_type}"
        )
    # Litestar's JSON extractor returns this value as it is; its later conversion to the same
    # type passes it through unchanged.
    ScopeState.from_scope(request.scope).json = decode_body(body, target)
