"""When a lot of points expires, and when a pending lot becomes available.

Pure functions of the point type's ``Expiry`` rule, the earning instant and the tenant's time
zone (a ``zoneinfo.ZoneInfo``): calendar arithmetic happens on *local* dates, and the instant
returned is the local start of a day (00:00) converted to UTC, so daylight-saving changes move
the UTC instant, never the local day. A lot is valid strictly before its ``expires_at``: at
that instant it is expired (``expires_at <= t``), one microsecond earlier it is not.

Modes (docs/points.md has worked examples):

* ``never``: no expiry (None).
* ``rolling_days`` (``days``): valid through the end of the ``days``-th local day after the
  earning day, i.e. expires at 00:00 local of ``earning date + days + 1``.
* ``end_of_period`` (``period`` month|quarter|year, ``periods``): expires at 00:00 local at the
  start of the period that follows the earning period by ``periods + 1`` (``periods`` = 0: at
  the end of the earning period).
* ``yearly_clearing`` (``month``, ``day``, 年度清零): expires at the first local
  ``(month, day)`` 00:00 strictly after the earning instant: every lot earned before that date
  is cleared on it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from domain.loyalty import Expiry

MONTHS_PER_PERIOD = {"month": 1, "quarter": 3, "year": 12}


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of the local ``day``, in UTC.

    ``fold=0``: when midnight is ambiguous (clocks fall back at 00:00) the first occurrence is
    the start of the day; when it does not exist (clocks spring forward at 00:00) the standard
    offset places it at the transition instant, which is again the first instant of that day.
    """
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def period_start(day: date, period: str) -> date:
    """The first day of the calendar ``period`` (month|quarter|year) holding ``day``."""
    if period == "month":
        return date(day.year, day.month, 1)
    if period == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if period == "year":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown period {period!r}")


def expires_at(expiry: Expiry, earned_at: datetime, tz: tzinfo) -> datetime | None:
    """When a lot earned at ``earned_at`` (aware) expires under ``expiry``: an aware UTC
    datetime, or None for ``never``."""
    if earned_at.tzinfo is None:
        raise ValueError("earned_at must be timezone-aware")
    local_day = earned_at.astimezone(tz).date()
    if expiry.mode == "never":
        return None
    if expiry.mode == "rolling_days":
        return local_midnight(local_day + timedelta(days=expiry.days + 1), tz)
    if expiry.mode == "end_of_period":
        start = period_start(local_day, expiry.period)
        months = MONTHS_PER_PERIOD[expiry.period] * (expiry.periods + 1)
        return local_midnight(_add_months(start, months), tz)
    if expiry.mode == "yearly_clearing":
        local_year = earned_at.astimezone(tz).year
        for year in (local_year, local_year + 1):
            clearing = local_midnight(date(year, expiry.month, expiry.day), tz)
            if clearing > earned_at:
                return clearing
        raise AssertionError("unreachable: next year's clearing is after any instant this year")
    raise ValueError(f"unknown expiry mode {expiry.mode!r}")


def active_at(pending_days: int, earned_at: datetime) -> datetime:
    """When a lot earned at ``earned_at`` becomes available: exactly ``pending_days`` days
    (of 24 hours) later; at once when 0."""
    if pending_days < 0:
        raise ValueError("pending_days must be >= 0")
    return earned_at + timedelta(days=pending_days)
