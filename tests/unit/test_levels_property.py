"""The level is a pure function of history: the aggregate agrees with ``domain.levels.level_of``.

Generated histories mix positive and negative (refund) qualifying entries, back-dated entries,
repeated entry ids, overrides set (replacing one in force) and ended, assessment runs (some with
an ``as_of`` behind the clock) and clock advances, on every window and assessment mode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.level_membership import LevelMembership
from domain.levels import Assess, EndOverride, Entry, SetOverride, Step, level_of
from domain.loyalty import Assessment, LevelGroupRules, LevelRules, Window

T0 = datetime(2024, 12, 20, 9, 30, tzinfo=UTC)
LEVELS = (
    LevelRules("normal", "普通", 0),
    LevelRules("gold", "黄金", 1000),
    LevelRules("platinum", "白金", 3000),
)
WINDOWS = st.sampled_from(
    [
        Window("rolling_days", days=30),
        Window("rolling_days", days=365),
        Window("calendar", period="month"),
        Window("calendar", period="year"),
        Window("lifetime"),
    ]
)
ASSESSMENTS = st.builds(
    Assessment,
    mode=st.sampled_from(["rolling", "anniversary", "calendar"]),
    period=st.sampled_from(["month", "quarter", "year"]),
    downgrade=st.sampled_from(["one_step", "recompute"]),
    warning_days=st.sampled_from([0, 7, 30]),
)
GROUPS = st.builds(
    LevelGroupRules,
    code=st.just("consumer"),
    name=st.just("会员"),
    role=st.just("consumer"),
    basis=st.just("spend"),
    window=WINDOWS,
    assessment=ASSESSMENTS,
    levels=st.just(LEVELS),
)
ZONES = st.sampled_from([ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC"), ZoneInfo("America/New_York")])

HOURS = st.one_of(st.integers(0, 72), st.integers(0, 72), st.integers(0, 24 * 120))
ADVANCE = HOURS.map(lambda h: timedelta(hours=h))
ENTRY = st.tuples(
    st.just("entry"),
    st.sampled_from([f"o{n}" for n in range(40)]),  # some ids repeat
    st.one_of(st.integers(1, 3500), st.integers(-3500, 3500)),
    st.one_of(st.just(0), HOURS, st.integers(0, 24 * 400)).map(lambda h: timedelta(hours=h)),
)
SET = st.tuples(
    st.just("set"),
    st.sampled_from(["ov1", "ov2", "ov3"]),
    st.sampled_from(["normal", "gold", "platinum", "diamond"]),
    st.integers(-2, 24 * 90).map(lambda h: timedelta(hours=h)),  # until after now (mostly)
)
END = st.tuples(st.just("end"), st.sampled_from(["ov1", "ov2", "ov3", "ov9"]))
ASSESS = st.tuples(
    st.just("assess"), st.integers(0, 24 * 3).map(lambda h: timedelta(hours=h))
)  # as_of behind the clock by that much
ACTIONS = st.lists(
    st.tuples(ADVANCE, st.one_of(ENTRY, ENTRY, ENTRY, SET, END, ASSESS, ASSESS)),
    min_size=20,
    max_size=60,
)


def _replayed(events: list[Any]) -> LevelMembership:
    aggregate: Any = None
    for e in events:
        aggregate = e.mutate(aggregate)
    assert isinstance(aggregate, LevelMembership)
    return aggregate


@given(group=GROUPS, tz=ZONES, actions=ACTIONS, probes=st.lists(st.integers(0, 10**6)))
def test_the_aggregates_level_equals_the_pure_function_of_its_history(
    group: LevelGroupRules, tz: ZoneInfo, actions: list[Any], probes: list[int]
) -> None:
    m = LevelMembership.open(uuid4(), group, at=T0, program_version=1)
    events: list[Any] = list(m.collect_events())
    history: list[Step] = []
    now = T0
    for advance, action in actions:
        now += advance
        step: Step
        try:
            if action[0] == "entry":
                _, entry_id, value, back = action
                step = Entry(entry_id, value, now - back, now)
                history.append(step)
                m.qualify(
                    group,
                    tz,
                    entry_id=entry_id,
                    value=value,
                    effective_at=now - back,
                    at=now,
                    program_version=1,
                )
            elif action[0] == "set":
                _, override_id, level, ahead = action
                history.append(SetOverride(override_id, level, now + ahead, now))
                m.set_override(
                    group,
                    override_id=override_id,
                    level=level,
                    until=now + ahead,
                    reason="goodwill",
                    actor="ops",
                    at=now,
                    program_version=1,
                )
            elif action[0] == "end":
                history.append(EndOverride(action[1], now))
                m.end_override(override_id=action[1], actor="ops", at=now)
            else:
                history.append(Assess(now - action[1], now))
                m.assess(group, tz, as_of=now - action[1], at=now, program_version=1)
        except DomainError:
            pass  # rejected: nothing recorded; the reference ignores the same step
        events += m.collect_events()

        expected = level_of(group, tz, T0, history, now)
        assert m.level_at(now) == expected
        assert m.level == expected or m.override is not None
        assert _replayed(events).level_at(now) == expected

    replayed = _replayed(events)
    span = max((now - T0).total_seconds(), 1)
    for probe in probes:
        t = T0 + timedelta(seconds=span * probe / 10**6)
        assert replayed.level_at(t) == level_of(group, tz, T0, history, t), t
