"""Instants a command or query names in text: RFC 3339 with an offset, or a bare ``YYYY-MM-DD``
meaning the start of that day in the tenant's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from domain.errors import FieldProblem, InvalidInput

# Every time zone can show these (years 1000-8999 in UTC, offsets up to ±14 hours), as the API
# holds them (api/inputs.py).
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
RULE = "must be an RFC 3339 time with an offset, or a date YYYY-MM-DD (1000-01-01 to 8999-12-31)"


def iso(value: datetime | None) -> str | None:
    """An instant as an answer shows it (RFC 3339), or None."""
    return value.isoformat() if value is not None else None


def require_offset(value: datetime, *, field: str) -> None:
    """An instant without an offset names no moment: 400 ``invalid_input`` on ``field``."""
    if value.tzinfo is None:
        raise InvalidInput([FieldProblem(field, "must carry a time zone offset")])


def parse_instant(raw: str, tz: tzinfo, *, field: str) -> datetime:
    """``raw`` as an aware datetime (400 ``invalid_input`` on ``field`` otherwise). A bare date
    is the local midnight in ``tz``; an offset with seconds (events keep minutes) becomes UTC."""
    value: datetime | None
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time.min, tzinfo=tz)
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    offset = value.utcoffset() if value is not None else None
    if value is None or offset is None or not _in_range(value):
        raise InvalidInput([FieldProblem(field, RULE)])
    if offset.seconds % 60 or offset.microseconds:
        value = value.astimezone(UTC)
    return value


def _in_range(value: datetime) -> bool:
    try:
        return EARLIEST <= value <= LATEST
    except OverflowError:
        return False
