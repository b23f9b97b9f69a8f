"""Level rules by example: windows, assessment modes, refunds, warnings, overrides, events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from domain.errors import InvalidInput, LevelNotFound
from domain.level_membership import LevelMembership
from domain.levels import add_months, next_assessment, window_at
from domain.loyalty import Assessment, LevelGroupRules, LevelRules, Window
from infrastructure.eventstore import MsgspecMapper

SH = ZoneInfo("Asia/Shanghai")
LEVELS = (LevelRules("normal", "普通", 0), LevelRules("gold", "黄金", 1000),
          LevelRules("platinum", "白金", 3000))  # fmt: skip


def group(window: Window, assessment: Assessment) -> LevelGroupRules:
    return LevelGroupRules("consumer", "会员", "consumer", "spend", window, assessment, LEVELS)


def member(g: LevelGroupRules, at: datetime) -> LevelMembership:
    return LevelMembership.open(uuid4(), g, at=at, program_version=1)


def earn(m: LevelMembership, g: LevelGroupRules, value: int, at: datetime, **kw: Any) -> None:
    m.qualify(g, SH, entry_id=kw.get("entry_id", str(uuid4())), value=value,
              effective_at=kw.get("effective_at", at), at=at, program_version=1)  # fmt: skip


def assess(m: LevelMembership, g: LevelGroupRules, as_of: datetime) -> list[str]:
    return [type(e).__name__ for e in m.assess(g, SH, as_of=as_of, at=as_of, program_version=1)]


def test_a_rolling_window_holds_the_last_days_up_to_and_including_now() -> None:
    t = datetime(2025, 5, 31, 12, tzinfo=UTC)
    bounds = window_at(Window("rolling_days", days=30), t, SH)

    assert bounds.holds(t)
    assert bounds.holds(t - timedelta(days=30) + timedelta(microseconds=1))
    assert not bounds.holds(t - timedelta(days=30))


def test_a_calendar_year_window_starts_at_the_local_new_year_in_shanghai() -> None:
    bounds = window_at(Window("calendar", period="year"), datetime(2025, 1, 1, tzinfo=SH), SH)

    assert bounds.lo == datetime(2025, 1, 1, tzinfo=SH)
    assert not bounds.holds(datetime(2024, 12, 31, 15, 59, 59, tzinfo=UTC))  # 23:59:59 local


def test_anniversary_assessments_fall_each_period_after_since_clamped_to_month_end() -> None:
    a = Assessment("anniversary", "month")
    since = datetime(2025, 1, 31, 15, tzinfo=SH)

    first = next_assessment(a, since, since, SH)
    second = next_assessment(a, first, since, SH)

    assert (first, second) == (datetime(2025, 2, 28, tzinfo=SH), datetime(2025, 3, 31, tzinfo=SH))
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)


def test_an_upgrade_happens_as_soon_as_the_value_reaches_a_threshold() -> None:
    g = group(Window("lifetime"), Assessment("calendar", "year"))
    at = datetime(2025, 3, 1, tzinfo=UTC)
    m = member(g, at)
    earn(m, g, 999, at)
    earn(m, g, 1, at + timedelta(hours=1))

    assert (m.level, m.since) == ("gold", at + timedelta(hours=1))


def test_one_step_downgrades_one_level_and_recompute_to_what_the_value_reaches() -> None:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    levels = {}
    for mode in ("one_step", "recompute"):
        g = group(Window("rolling_days", days=30), Assessment("rolling", downgrade=mode))
        m = member(g, at)
        earn(m, g, 3500, at)
        # The first local day start whose 30-day window no longer holds the entry.
        assert assess(m, g, datetime(2025, 4, 1, tzinfo=SH))[0] == "Downgraded"
        levels[mode] = m.level

    assert levels == {"one_step": "gold", "recompute": "normal"}


def test_a_calendar_year_end_in_shanghai_downgrades_at_local_midnight_not_utc() -> None:
    g = group(Window("calendar", period="year"), Assessment("calendar", "year"))
    m = member(g, datetime(2024, 6, 1, tzinfo=UTC))
    earn(m, g, 1500, datetime(2024, 6, 1, tzinfo=UTC))  # gold, kept by 2024 through 2025

    before = assess(m, g, datetime(2025, 12, 31, 15, 59, tzinfo=UTC))  # 23:59 local
    at_midnight = assess(m, g, datetime(2025, 12, 31, 16, 0, tzinfo=UTC))  # 00:00 local

    assert "Downgraded" not in before
    assert at_midnight == ["Downgraded"]
    assert (m.level, m.since) == ("normal", datetime(2026, 1, 1, tzinfo=SH))


def test_a_refund_drops_to_what_the_value_still_supports_never_above_the_current() -> None:
    g = group(Window("lifetime"), Assessment("calendar", "year"))
    at = datetime(2025, 3, 1, tzinfo=UTC)
    m = member(g, at)
    earn(m, g, 3200, at)
    earn(m, g, -300, at + timedelta(days=1), effective_at=at)  # returns count at the order's time
    assert m.level == "gold"
    earn(m, g, -2500, at + timedelta(days=2), effective_at=at)
    assert m.level == "normal"


def test_a_refund_of_last_years_order_takes_away_the_level_this_year_kept() -> None:
    g = group(Window("calendar", period="year"), Assessment("calendar", "year"))
    t2024 = datetime(2024, 6, 1, tzinfo=UTC)
    m = member(g, t2024)
    earn(m, g, 1200, t2024, entry_id="order:1")
    assess(m, g, datetime(2025, 1, 10, tzinfo=UTC))
    earn(m, g, -50, datetime(2025, 2, 1, tzinfo=UTC))  # a 2025 return: 2024 still supports gold
    assert m.level == "gold"
    earn(m, g, -400, datetime(2025, 2, 2, tzinfo=UTC), effective_at=t2024)
    assert m.level == "normal"


def test_a_downgrade_warning_is_recorded_once_per_assessment_date() -> None:
    g = group(Window("calendar", period="year"), Assessment("calendar", "year", warning_days=30))
    m = member(g, datetime(2025, 3, 1, tzinfo=UTC))
    earn(m, g, 1500, datetime(2025, 3, 1, tzinfo=UTC))
    assess(m, g, datetime(2025, 12, 1, tzinfo=UTC))  # 31 days ahead: no warning yet
    assert assess(m, g, datetime(2026, 1, 1, tzinfo=UTC)) == ["Assessed"]  # 2025 keeps gold

    m2 = member(g, datetime(2024, 3, 1, tzinfo=UTC))
    earn(m2, g, 1500, datetime(2024, 3, 1, tzinfo=UTC))
    assess(m2, g, datetime(2025, 1, 5, tzinfo=UTC))
    first = assess(m2, g, datetime(2025, 12, 5, tzinfo=UTC))
    second = assess(m2, g, datetime(2025, 12, 6, tzinfo=UTC))

    assert first == ["DowngradeWarned"]
    assert second == []
    events = [e for e in m2.collect_events() if isinstance(e, LevelMembership.DowngradeWarned)]
    assert (events[0].assessment_at, events[0].gap) == (datetime(2026, 1, 1, tzinfo=SH), 1000)


def test_an_override_is_the_level_until_its_end_then_the_computed_level_applies() -> None:
    g = group(Window("lifetime"), Assessment("calendar", "year"))
    at = datetime(2025, 3, 1, tzinfo=UTC)
    m = member(g, at)
    until = at + timedelta(days=10)
    m.set_override(g, override_id="o1", level="platinum", until=until, reason="vip",
                   actor="ops", at=at, program_version=1)  # fmt: skip

    assert m.level_at(at + timedelta(days=9)) == "platinum"
    assert m.level_at(until) == "normal"
    assert assess(m, g, until) == ["OverrideEnded"]
    assert (m.level, m.since) == ("normal", until)


def test_an_override_needs_a_level_of_the_ladder_and_an_end_in_the_future() -> None:
    g = group(Window("lifetime"), Assessment("calendar", "year"))
    at = datetime(2025, 3, 1, tzinfo=UTC)
    m = member(g, at)
    with pytest.raises(LevelNotFound):
        m.set_override(g, override_id="o1", level="diamond", until=at + timedelta(days=1),
                       reason="x", actor="ops", at=at, program_version=1)  # fmt: skip
    with pytest.raises(InvalidInput):
        m.set_override(g, override_id="o1", level="gold", until=at, reason="x", actor="ops",
                       at=at, program_version=1)  # fmt: skip


def test_every_level_event_round_trips_through_the_mapper() -> None:
    g = group(Window("rolling_days", days=30), Assessment("rolling", warning_days=5))
    at = datetime(2025, 3, 1, tzinfo=UTC)
    m = member(g, at)
    earn(m, g, 3500, at)
    earn(m, g, -100, at + timedelta(hours=1))
    later = at + timedelta(hours=2)
    m.set_override(g, override_id="o1", level="gold", until=at + timedelta(days=2),
                   reason="vip", actor="ops", at=later, program_version=1)  # fmt: skip
    m.end_override(override_id="o1", actor="ops", at=at + timedelta(hours=3))
    assess(m, g, at + timedelta(days=28))
    assess(m, g, at + timedelta(days=40))
    events = m.collect_events()
    mapper = MsgspecMapper()
    kinds = {type(e) for e in events}

    assert kinds == {
        LevelMembership.Opened, LevelMembership.Qualified, LevelMembership.Upgraded,
        LevelMembership.Downgraded, LevelMembership.Assessed, LevelMembership.OverrideSet,
        LevelMembership.OverrideEnded, LevelMembership.DowngradeWarned,
    }  # fmt: skip
    for e in events:
        assert mapper.to_domain_event(mapper.to_stored_event(e)) == e
