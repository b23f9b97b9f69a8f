"""Levels on a ladder: windows, assessment dates, and the level as a pure function of history.

A membership's level is decided by three kinds of input, taken in processing order with the
time each was processed (docs/levels.md):

- qualifying entries (signed values of the group's basis, each with an effective time);
- manual overrides set and ended (an overlay with an end date: never a hidden floor);
- assessment runs (``as_of``): downgrades happen only there, at scheduled instants.

``level_of`` folds such a history from scratch, naively; ``LevelMembership`` (the aggregate)
keeps the same state incrementally and must agree with it (a hypothesis property checks it).
The helpers here (windows, schedules) are shared by both.

Times: every datetime is timezone-aware; calendar arithmetic happens in the tenant's ``tz``.
A window is half-open ``[lo, hi)`` (``lo`` None: no lower bound). The window *at* an instant
``t`` holds the entries effective up to and including ``t``; an assessment at ``T`` judges the
window as it stood just before ``T`` (``window_at(T - 1µs)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from domain.loyalty import Assessment, LevelGroupRules, Window

TICK = timedelta(microseconds=1)
MONTHS = {"month": 1, "quarter": 3, "year": 12}
# An assessment run covering more scheduled instants than this is cut short (the next run
# continues from where it stopped): a long-idle rolling group is caught up over a few runs.
MAX_INSTANTS_PER_RUN = 3660


# -- calendar ----------------------------------------------------------------------------------


def add_months(d: date, months: int) -> date:
    """``d`` moved by whole months, the day clamped to the end of a shorter month."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    next_first = date(year + (month == 12), month % 12 + 1, 1)
    last = (next_first - timedelta(days=1)).day
    return date(year, month, min(d.day, last))


def period_start(d: date, period: str) -> date:
    """The first day of the calendar ``period`` (month, quarter, year) holding ``d``."""
    if period == "year":
        return date(d.year, 1, 1)
    if period == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    return date(d.year, d.month, 1)


def day_start(d: date, tz: tzinfo) -> datetime:
    """The instant the local day ``d`` starts in ``tz``."""
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def local_date(t: datetime, tz: tzinfo) -> date:
    return t.astimezone(tz).date()


# -- windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """A half-open interval ``[lo, hi)`` of effective times (``lo`` None: unbounded)."""

    lo: datetime | None
    hi: datetime

    def holds(self, t: datetime) -> bool:
        return (self.lo is None or t >= self.lo) and t < self.hi


def window_at(window: Window, t: datetime, tz: tzinfo) -> Bounds:
    """The window at instant ``t``: rolling ``(t - days, t]``, the local calendar period
    holding ``t`` (up to ``t``), or everything up to ``t``."""
    hi = t + TICK
    if window.mode == "rolling_days":
        return Bounds(t - timedelta(days=window.days) + TICK, hi)
    if window.mode == "calendar":
        return Bounds(day_start(period_start(local_date(t, tz), window.period), tz), hi)
    return Bounds(None, hi)


def assessed_window(window: Window, instant: datetime, tz: tzinfo) -> Bounds:
    """The window an assessment at ``instant`` judges: the one that closes at it."""
    return window_at(window, instant - TICK, tz)


def value_in(entries: Iterable[tuple[datetime, int]], bounds: Bounds) -> int:
    """Sum of the signed values whose effective time falls in ``bounds``."""
    return sum(v for e, v in entries if bounds.holds(e))


# -- assessment schedule -----------------------------------------------------------------------


def next_assessment(
    assessment: Assessment, after: datetime, since: datetime, tz: tzinfo
) -> datetime:
    """The first scheduled assessment instant strictly after ``after``.

    rolling: every local day start; calendar: each local ``period`` start; anniversary: the
    local day start of the date ``n`` periods after the local date of ``since`` (n >= 1; a
    day missing in a shorter month is its last day).
    """
    if assessment.mode == "rolling":
        d = local_date(after, tz)
        start = day_start(d, tz)
        return start if start > after else day_start(d + timedelta(days=1), tz)
    months = MONTHS[assessment.period]
    if assessment.mode == "calendar":
        first = period_start(local_date(after, tz), assessment.period)
        start = day_start(first, tz)
        return start if start > after else day_start(add_months(first, months), tz)
    origin = local_date(since, tz)
    # Jump close to ``after``, then step: never more than a few iterations.
    elapsed = (local_date(after, tz).year - origin.year) * 12 + (
        local_date(after, tz).month - origin.month
    )
    n = max(1, elapsed // months - 1)
    while True:
        instant = day_start(add_months(origin, n * months), tz)
        if instant > after:
            return instant
        n += 1


# -- ladder steps ------------------------------------------------------------------------------


def rank_of(group: LevelGroupRules, code: str) -> int:
    """The position of ``code`` on the ladder; -1 for a level the ladder no longer has (any
    qualified level is then an upgrade, and no assessment can go lower)."""
    for n, lv in enumerate(group.levels):
        if lv.code == code:
            return n
    return -1


def threshold_of(group: LevelGroupRules, code: str) -> int:
    level = group.level(code)
    return level.threshold if level is not None else 0


def downgrade_to(group: LevelGroupRules, code: str, value: int) -> str:
    """Where an assessment that found ``value`` below the threshold of ``code`` takes it."""
    if group.assessment.downgrade == "recompute":
        return group.qualified(value).code
    rank = rank_of(group, code)
    return group.levels[max(rank - 1, 0)].code


# -- the reference: the level as a pure function of history ------------------------------------


@dataclass(frozen=True)
class Entry:
    """A qualifying entry: ``value`` of the group's basis (signed), effective at
    ``effective_at``, processed at ``at``. An ``entry_id`` already seen is ignored."""

    entry_id: str
    value: int
    effective_at: datetime
    at: datetime


@dataclass(frozen=True)
class SetOverride:
    override_id: str
    level: str
    until: datetime
    at: datetime


@dataclass(frozen=True)
class EndOverride:
    override_id: str
    at: datetime


@dataclass(frozen=True)
class Assess:
    """An assessment run: every scheduled instant up to ``min(as_of, at)`` not run yet."""

    as_of: datetime
    at: datetime


Step = Entry | SetOverride | EndOverride | Assess


@dataclass(frozen=True)
class Override:
    override_id: str
    level: str
    until: datetime
    set_at: datetime
    ended_at: datetime | None = None

    def in_force(self, t: datetime) -> bool:
        end = self.until if self.ended_at is None else min(self.until, self.ended_at)
        return self.set_at <= t < end


@dataclass
class _Ref:
    base: str
    since: datetime
    basis: datetime
    now: datetime
    assessed: datetime | None = None
    entries: list[tuple[datetime, int]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    overrides: dict[str, Override] = field(default_factory=dict)
    current: str | None = None
    timeline: list[tuple[datetime, str]] = field(default_factory=list)


def level_of(
    group: LevelGroupRules, tz: tzinfo, opened_at: datetime, history: Sequence[Step], at: datetime
) -> str:
    """The level in force at ``at`` of a membership opened at ``opened_at`` (at the first
    level) after ``history`` (processing order; a step processed before the previous one is
    taken as processed at that one's time). Steps processed after ``at`` are not seen.

    Written from scratch on purpose (full entry list, every sum recomputed): the aggregate is
    the incremental version, and the property test compares the two.
    """
    s = _Ref(group.levels[0].code, opened_at, opened_at, opened_at)
    s.timeline.append((opened_at, s.base))
    for step in history:
        t = max(step.at, s.now)
        if t > at:
            break
        s.now = t
        if isinstance(step, Entry):
            _ref_entry(group, tz, s, step, t)
        elif isinstance(step, SetOverride):
            if step.override_id not in s.overrides and step.until > t and group.level(step.level):
                if s.current is not None:
                    s.overrides[s.current] = _ended(s.overrides[s.current], t)
                s.overrides[step.override_id] = Override(
                    step.override_id, step.level, step.until, t
                )
                s.current = step.override_id
        elif isinstance(step, EndOverride):
            if step.override_id == s.current:
                s.overrides[s.current] = _ended(s.overrides[s.current], t)
                s.current = None
        else:
            _ref_assess(group, tz, s, min(step.as_of, t), t)
    base = s.base
    for when, code in s.timeline:
        if when <= at:
            base = code
    for o in s.overrides.values():
        if o.in_force(at):
            return o.level
    return base


def _ended(o: Override, t: datetime) -> Override:
    if o.ended_at is not None:
        return o
    return Override(o.override_id, o.level, o.until, o.set_at, t)


def _ref_entry(group: LevelGroupRules, tz: tzinfo, s: _Ref, step: Entry, t: datetime) -> None:
    if step.entry_id in s.ids:
        return
    s.ids.add(step.entry_id)
    s.entries.append((min(step.effective_at, t), step.value))
    now_value = value_in(s.entries, window_at(group.window, t, tz))
    if step.value > 0:
        q = group.qualified(now_value).code
        if rank_of(group, q) > rank_of(group, s.base):
            s.base, s.since, s.basis = q, t, t
            s.timeline.append((t, q))
    elif step.value < 0:
        basis_value = value_in(s.entries, window_at(group.window, s.basis, tz))
        supported = max(
            rank_of(group, group.qualified(now_value).code),
            rank_of(group, group.qualified(basis_value).code),
        )
        if supported < rank_of(group, s.base):
            s.base, s.since = group.levels[supported].code, t
            s.timeline.append((t, s.base))


def _ref_assess(
    group: LevelGroupRules, tz: tzinfo, s: _Ref, through: datetime, t: datetime
) -> None:
    # A downgrade dates ``since`` from the assessment instant (the anniversary schedule counts
    # from there) but is in force from when the run processed it.
    for _ in range(MAX_INSTANTS_PER_RUN):
        after = s.since if s.assessed is None else max(s.assessed, s.since)
        instant = next_assessment(group.assessment, after, s.since, tz)
        if instant > through:
            return
        s.assessed = instant
        if rank_of(group, s.base) <= 0:
            continue
        value = value_in(s.entries, assessed_window(group.window, instant, tz))
        s.basis = instant - TICK
        if value < threshold_of(group, s.base):
            s.base, s.since = downgrade_to(group, s.base, value), instant
            s.timeline.append((t, s.base))
