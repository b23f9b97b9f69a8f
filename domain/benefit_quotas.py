"""What a benefit account keeps (direct grants, redemptions) and the pure rules over them: the
local calendar period a time falls in (weeks start on Monday), how much of a quota is used, and
through what sources a benefit is held. Times and the time zone are passed in."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from domain.loyalty import QUOTA_PERIODS, BenefitRules


def _local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def period_key(at: datetime, period: str, tz: tzinfo) -> str:
    """The local calendar period ``at`` falls in: ``2026-03-05`` (day), ``2026-W10`` (ISO week,
    Monday first), ``2026-03`` (month), ``2026-Q1`` (quarter), ``2026`` (year), ``lifetime``."""
    d = _local_date(at, tz)
    if period == "day":
        return d.isoformat()
    if period == "week":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{d.year:04d}-{d.month:02d}"
    if period == "quarter":
        return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    if period == "year":
        return f"{d.year:04d}"
    if period == "lifetime":
        return "lifetime"
    raise ValueError(f"unknown quota period {period!r} (one of {', '.join(QUOTA_PERIODS)})")


def _first_day(d: date, period: str) -> date:
    if period == "day":
        return d
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    if period == "year":
        return date(d.year, 1, 1)
    raise ValueError(f"unknown quota period {period!r}")


def _next_first_day(first: date, period: str) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    n = first.month - 1 + months
    return date(first.year + n // 12, n % 12 + 1, 1)


def period_bounds(at: datetime, period: str, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The local start (inclusive) and end (exclusive) of the period ``at`` falls in, as aware
    datetimes in ``tz``; ``(None, None)`` for ``lifetime``."""
    if period == "lifetime":
        return None, None
    first = _first_day(_local_date(at, tz), period)
    end = _next_first_day(first, period)
    return datetime.combine(first, time.min, tzinfo=tz), datetime.combine(end, time.min, tzinfo=tz)


@dataclass(frozen=True)
class Grant:
    """A direct grant: held from ``valid_from`` (inclusive) until ``until`` (exclusive, None: no
    end), or until it was revoked (``revoked_at``, exclusive)."""

    grant_id: str
    code: str
    valid_from: datetime
    until: datetime | None
    reason: str
    actor: str
    granted_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    @property
    def source(self) -> str:
        return f"grant:{self.grant_id}"

    @property
    def ends(self) -> datetime | None:
        """When holding ends: the earlier of ``until`` and the revocation."""
        if self.revoked_at is None:
            return self.until
        if self.until is None:
            return self.revoked_at
        return min(self.until, self.revoked_at)

    def valid_at(self, at: datetime) -> bool:
        ends = self.ends
        return self.valid_from <= at and (ends is None or at < ends)


@dataclass(frozen=True)
class Redemption:
    """One use of a benefit; ``seq`` counts the account's redemptions from 1."""

    seq: int
    redemption_id: str
    code: str
    source: str
    period_key: str
    at: datetime
    program_version: int
    note: str | None
    actor: str


def used_in_period(
    redemptions: Iterable[Redemption], code: str, period: str, tz: tzinfo, at: datetime
) -> int:
    """How many redemptions of ``code`` fall in the local period ``at`` falls in.

    Re-keys each redemption by its time under the current period and time zone (not its stored
    key), so a program that changes the period or the zone counts by the rule now in force.
    """
    key = period_key(at, period, tz)
    return sum(1 for r in redemptions if r.code == code and period_key(r.at, period, tz) == key)


@dataclass(frozen=True)
class QuotaUse:
    count: int
    period: str
    used: int
    period_key: str
    resets_at: datetime | None

    @property
    def remaining(self) -> int:
        return max(self.count - self.used, 0)


def quota_use(
    benefit: BenefitRules, redemptions: Iterable[Redemption], tz: tzinfo, at: datetime
) -> QuotaUse | None:
    """The quota of ``benefit`` at ``at`` and how much of it is used (None: unlimited)."""
    if benefit.quota_count is None:
        return None
    period = benefit.quota_period
    used = used_in_period(redemptions, benefit.code, period, tz, at)
    _, end = period_bounds(at, period, tz)
    return QuotaUse(benefit.quota_count, period, used, period_key(at, period, tz), end)


def default_until(valid_from: datetime, validity_days: int | None) -> datetime | None:
    """A direct grant without an explicit end lasts ``validity_days`` (None: no end)."""
    return None if validity_days is None else valid_from + timedelta(days=validity_days)


@dataclass(frozen=True)
class Holding:
    """Why a customer holds a benefit at a moment: its sources, level ones first, then grants
    ending soonest first; ``valid_until``: when the last source ends (None: no known end)."""

    code: str
    sources: tuple[str, ...]
    valid_until: datetime | None


def holding(
    grants: Iterable[Grant], code: str, at: datetime, level_sources: Sequence[str] = ()
) -> Holding | None:
    """Whether and through what ``code`` is held at ``at``: the given level sources, and the
    direct grants of ``code`` valid then (None: not held)."""
    valid = sorted(
        (g for g in grants if g.code == code and g.valid_at(at)),
        key=lambda g: (g.ends is None, g.ends or g.valid_from, g.grant_id),
    )
    sources = (*sorted(level_sources), *(g.source for g in valid))
    if not sources:
        return None
    if level_sources or any(g.ends is None for g in valid):
        return Holding(code, sources, None)
    return Holding(code, sources, max(g.ends for g in valid if g.ends is not None))
