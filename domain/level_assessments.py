"""Scheduled assessments of a level membership: each assessment instant of the group's schedule
judges the window's value against the current level's threshold (kept, or a downgrade as
``domain.levels.downgrade_to`` says), an override past its end date ends, and a warning goes out
``warning_days`` ahead of an assessment the window, as known now, falls short of.

A mixin of :class:`~domain.level_membership.LevelMembership`, whose events and state it uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.levels import (
    MAX_INSTANTS_PER_RUN,
    Override,
    assessed_window,
    downgrade_to,
    next_assessment,
    rank_of,
    threshold_of,
    value_in,
)
from domain.loyalty import LevelGroupRules


@dataclass(frozen=True)
class Warning:
    """What a downgrade warning says: at ``assessment_at`` the level ``level`` needs
    ``threshold``; the window then holds ``value`` so far (``gap`` short)."""

    assessment_at: datetime
    level: str
    to_level: str
    value: int
    threshold: int
    gap: int


class LevelAssessments:
    """``assess``, ``warning`` and when the assessment job should next look (``_check_at``)."""

    # What the methods use of LevelMembership (declared for the type checker only).
    if TYPE_CHECKING:
        customer_id: UUID
        group: str
        base_level: str
        base_since: datetime
        assessed_through: datetime | None
        warned_for: datetime | None
        now: datetime
        entries: list[tuple[datetime, int]]
        OverrideEnded: type[Any]
        Downgraded: type[Any]
        Assessed: type[Any]
        DowngradeWarned: type[Any]

        @property
        def pending_events(self) -> list[Any]: ...
        @property
        def override(self) -> Override | None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def next_assessment_at(self, group: LevelGroupRules, tz: tzinfo) -> datetime | None:
        """The next scheduled assessment that could change the computed level (None at the
        bottom of the ladder: there is nothing to lose)."""
        if rank_of(group, self.base_level) <= 0:
            return None
        after = self.base_since
        if self.assessed_through is not None:
            after = max(after, self.assessed_through)
        return next_assessment(group.assessment, after, self.base_since, tz)

    def kept_value(self, group: LevelGroupRules, tz: tzinfo, instant: datetime) -> int:
        """The value the assessment at ``instant`` would judge, from the entries known now."""
        return value_in(self.entries, assessed_window(group.window, instant, tz))

    def _check_at(
        self,
        group: LevelGroupRules,
        tz: tzinfo,
        *,
        base: str | None = None,
        since: datetime | None = None,
        assessed: datetime | None = None,
        warned: datetime | None = None,
    ) -> datetime | None:
        """When the assessment job should next look, in the state an event is about to make
        (the current one for what it leaves unchanged): ``warning_days`` before the next
        assessment, or the assessment itself once warned for it; None at the bottom."""
        base = self.base_level if base is None else base
        since = self.base_since if since is None else since
        assessed = self.assessed_through if assessed is None else assessed
        if warned is None and base is None:
            warned = self.warned_for  # a level change forgets the warnings of the old level
        if rank_of(group, base) <= 0:
            return None
        after = since if assessed is None else max(since, assessed)
        nxt = next_assessment(group.assessment, after, since, tz)
        return nxt if warned == nxt else nxt - timedelta(days=group.assessment.warning_days)

    def assess(
        self,
        group: LevelGroupRules,
        tz: tzinfo,
        *,
        as_of: datetime,
        at: datetime,
        program_version: int,
    ) -> list[Any]:
        """Run every scheduled assessment up to ``min(as_of, at)`` not run yet, end an override
        whose end date has passed, and warn ahead of the next assessment. Returns the events
        recorded (none: nothing was due)."""
        t = max(at, self.now)
        through = min(as_of, t)
        before = len(self.pending_events)
        o = self.override
        if o is not None and o.until <= through:
            self.trigger_event(
                self.OverrideEnded,
                customer_id=self.customer_id,
                group=self.group,
                override_id=o.override_id,
                reason="expired",
                ended_at=o.until,
                actor="system",
                timestamp=t,
            )
        kept: tuple[datetime, int] | None = None
        for _ in range(MAX_INSTANTS_PER_RUN):
            after = self.base_since
            if kept is not None:
                after = max(after, kept[0])
            elif self.assessed_through is not None:
                after = max(after, self.assessed_through)
            instant = next_assessment(group.assessment, after, self.base_since, tz)
            if instant > through or rank_of(group, self.base_level) <= 0:
                break
            value = self.kept_value(group, tz, instant)
            if value >= threshold_of(group, self.base_level):
                kept = (instant, value)
                continue
            kept = None
            to_level = downgrade_to(group, self.base_level, value)
            self.trigger_event(
                self.Downgraded,
                customer_id=self.customer_id,
                group=self.group,
                from_level=self.base_level,
                to_level=to_level,
                reason="assessment",
                value=value,
                assessment_at=instant,
                program_version=program_version,
                check_at=self._check_at(group, tz, base=to_level, since=instant, assessed=instant),
                timestamp=t,
            )
        if kept is not None:
            self.trigger_event(
                self.Assessed,
                through=kept[0],
                level=self.base_level,
                value=kept[1],
                program_version=program_version,
                check_at=self._check_at(group, tz, assessed=kept[0]),
                timestamp=t,
            )
        warning = self.warning(group, tz, through)
        if warning is not None and warning.assessment_at != self.warned_for:
            self.trigger_event(
                self.DowngradeWarned,
                customer_id=self.customer_id,
                group=self.group,
                assessment_at=warning.assessment_at,
                level=warning.level,
                to_level=warning.to_level,
                value=warning.value,
                threshold=warning.threshold,
                gap=warning.gap,
                program_version=program_version,
                check_at=self._check_at(group, tz, warned=warning.assessment_at),
                timestamp=t,
            )
        return list(self.pending_events[before:])

    def warning(self, group: LevelGroupRules, tz: tzinfo, t: datetime) -> Warning | None:
        """The first scheduled assessment within ``warning_days`` after ``t`` whose window, as
        known now, falls short of the current level (none while an override covers it)."""
        horizon = t + timedelta(days=group.assessment.warning_days)
        after = max(t, self.base_since)
        if rank_of(group, self.base_level) <= 0:
            return None
        for _ in range(MAX_INSTANTS_PER_RUN):
            instant = next_assessment(group.assessment, after, self.base_since, tz)
            if instant > horizon:
                return None
            o = self.override
            covered = o is not None and o.in_force(instant)
            value = self.kept_value(group, tz, instant)
            threshold = threshold_of(group, self.base_level)
            if value < threshold and not covered:
                return Warning(
                    instant,
                    self.base_level,
                    downgrade_to(group, self.base_level, value),
                    value,
                    threshold,
                    threshold - value,
                )
            after = instant
        return None
