"""LevelMembership: one customer's place on one ladder (level group).

The level is decided as ``domain.levels.level_of`` says (docs/levels.md): upgrades when a
qualifying entry lifts the window's value over a higher threshold, downgrades only at scheduled
assessments (or at once, capped at the current level, when a negative entry takes away what
supported it), and a manual override laid over the computed level until its end date.

Commands take the group's rules and the tenant's ``tz`` as arguments: the rules in force are
the caller's business (the program version is recorded on the events). A command processed
with an ``at`` before the membership's last one is taken as processed at that one's time.

This module holds the aggregate (events, state, queries, qualifying entries); the scheduled
assessments and warnings (``domain.level_assessments``) and the manual overrides
(``domain.level_overrides``) are mixins in their own modules, and the level arithmetic is
``domain.levels``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import ClassVar, NamedTuple
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.copying import ContainerCopies
from domain.level_assessments import LevelAssessments
from domain.level_overrides import LevelOverrides
from domain.levels import (
    TICK,
    Bounds,
    Override,
    rank_of,
    value_in,
    window_at,
)
from domain.loyalty import LevelGroupRules

LEVEL_NAMESPACE = UUID("0d3f8e0c-7b1a-5c55-a0f4-5a2b6f9d8e31")


class Counted(NamedTuple):
    """One qualifying entry as counted: ``value`` effective at ``effective_at``, recorded at
    ``recorded_at``."""

    effective_at: datetime
    value: int
    recorded_at: datetime


class LevelMembership(LevelAssessments, LevelOverrides, ContainerCopies, Aggregate):
    """``level`` is the level in force after the last event (override included), ``since``
    when it started; ``base_level``/``base_since`` the computed level beneath any override."""

    TOPIC: ClassVar[str] = "membercore.LevelMembership"

    class Created(Aggregate.Created):
        TOPIC = "membercore.LevelMembership.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.LevelMembership.Event"

    class Opened(Created):
        """The customer joined the ladder ``group`` at its first level ``level``. v1."""

        TOPIC = "membercore.LevelMembership.Opened"
        customer_id: UUID
        group: str
        level: str
        program_version: int

    class Qualified(Event):
        """A qualifying entry counted: ``value`` (signed) of the group's basis, effective at
        ``effective_at`` (never after the event's own time). v1."""

        TOPIC = "membercore.LevelMembership.Qualified"
        entry_id: str
        value: int
        effective_at: datetime
        program_version: int

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate.entry_ids.add(self.entry_id)
            aggregate.entries.append((self.effective_at, self.value))
            aggregate.counted[self.entry_id] = Counted(
                self.effective_at, self.value, self.timestamp
            )

    class Upgraded(Event):
        """The window's ``value`` reached ``to_level``'s threshold. ``check_at``: when the
        assessment job should next look at the membership. v1."""

        TOPIC = "membercore.LevelMembership.Upgraded"
        customer_id: UUID
        group: str
        from_level: str
        to_level: str
        value: int
        program_version: int
        check_at: datetime | None

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate.basis_at = self.timestamp
            aggregate._set_base(self.to_level, self.timestamp, self.timestamp, self.check_at)

    class Downgraded(Event):
        """The level went down: at the assessment of ``assessment_at`` (``reason``
        ``assessment``), or at once because a negative entry left ``value`` short
        (``reason`` ``refund``, ``assessment_at`` None). v1."""

        TOPIC = "membercore.LevelMembership.Downgraded"
        customer_id: UUID
        group: str
        from_level: str
        to_level: str
        reason: str
        value: int
        assessment_at: datetime | None
        program_version: int
        check_at: datetime | None

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            since = self.timestamp
            if self.assessment_at is not None:
                since = self.assessment_at
                aggregate.assessed_through = self.assessment_at
                aggregate.basis_at = self.assessment_at - TICK
            aggregate._set_base(self.to_level, since, self.timestamp, self.check_at)

    class Assessed(Event):
        """Assessments up to ``through`` ran and kept ``level`` (``value``: the window judged
        at ``through``). v1."""

        TOPIC = "membercore.LevelMembership.Assessed"
        through: datetime
        level: str
        value: int
        program_version: int
        check_at: datetime | None

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate.assessed_through = self.through
            aggregate.basis_at = self.through - TICK
            aggregate.check_at = self.check_at

    class OverrideSet(Event):
        """A manual override: the level is ``level`` until ``until`` (exclusive), whatever the
        computed level; ``reason`` and ``actor`` say why and who. v1."""

        TOPIC = "membercore.LevelMembership.OverrideSet"
        customer_id: UUID
        group: str
        override_id: str
        level: str
        until: datetime
        reason: str
        actor: str
        program_version: int

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate._end_current(self.timestamp)
            aggregate.overrides[self.override_id] = Override(
                self.override_id, self.level, self.until, self.timestamp
            )
            aggregate.override_notes[self.override_id] = (self.reason, self.actor)
            aggregate.current_override = self.override_id
            aggregate._refresh(self.timestamp)

    class OverrideEnded(Event):
        """The override ended: ``reason`` ``ended`` (by ``actor``) or ``expired`` (its end date
        passed; ``ended_at`` is that date). v1."""

        TOPIC = "membercore.LevelMembership.OverrideEnded"
        customer_id: UUID
        group: str
        override_id: str
        reason: str
        ended_at: datetime
        actor: str

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate._end_current(self.ended_at)
            aggregate._refresh(self.ended_at)

    class DowngradeWarned(Event):
        """Ahead of the assessment at ``assessment_at``, the window holds ``value``: short of
        ``threshold`` (by ``gap``), which keeps ``level``; without more it becomes
        ``to_level``. Recorded once per assessment date. v1."""

        TOPIC = "membercore.LevelMembership.DowngradeWarned"
        customer_id: UUID
        group: str
        assessment_at: datetime
        level: str
        to_level: str
        value: int
        threshold: int
        gap: int
        program_version: int
        check_at: datetime | None

        def apply(self, aggregate: LevelMembership) -> None:
            aggregate._tick(self.timestamp)
            aggregate.warned_for = self.assessment_at
            aggregate.check_at = self.check_at

    def __init__(self, customer_id: UUID, group: str, level: str, program_version: int) -> None:
        self.customer_id = customer_id
        self.group = group
        self.level = level
        self.since: datetime = self.created_on
        self.base_level = level
        self.base_since: datetime = self.created_on
        self.basis_at: datetime = self.created_on
        self.assessed_through: datetime | None = None
        self.check_at: datetime | None = None
        self.now: datetime = self.created_on
        self.entries: list[tuple[datetime, int]] = []
        self.entry_ids: set[str] = set()
        # Every entry by its id, in the order counted: merges move entries by id and their
        # undo finds the refunds that followed them (domain/merge_undo.py).
        self.counted: dict[str, Counted] = {}
        self.overrides: dict[str, Override] = {}
        self.override_notes: dict[str, tuple[str, str]] = {}
        self.current_override: str | None = None
        self.warned_for: datetime | None = None
        # Computed-level changes, by the time they took effect (for ``level_at``).
        self.timeline: list[tuple[datetime, str]] = [(self.created_on, level)]

    # -- state helpers (used by apply; no rules here) -------------------------------------------

    @staticmethod
    def id_for(customer_id: UUID, group: str) -> UUID:
        return uuid5(LEVEL_NAMESPACE, f"{customer_id}:{group}")

    def _tick(self, t: datetime) -> None:
        self.now = max(self.now, t)

    def _set_base(
        self, code: str, since: datetime, effective: datetime, check_at: datetime | None
    ) -> None:
        self.base_level, self.base_since, self.check_at = code, since, check_at
        self.warned_for = None
        self.timeline.append((effective, code))
        self._refresh(since)

    def _end_current(self, t: datetime) -> None:
        if self.current_override is None:
            return
        o = self.overrides[self.current_override]
        self.overrides[o.override_id] = Override(o.override_id, o.level, o.until, o.set_at, t)
        self.current_override = None

    def _refresh(self, t: datetime) -> None:
        """The level in force now: the current override's while it lasts, else the computed."""
        o = self.override
        level = o.level if o is not None and o.in_force(self.now) else self.base_level
        if level != self.level:
            self.level, self.since = level, t

    # -- queries --------------------------------------------------------------------------------

    @property
    def override(self) -> Override | None:
        return self.overrides[self.current_override] if self.current_override else None

    def level_at(self, t: datetime) -> str:
        """The level in force at ``t`` as recorded (an override expired by then no longer
        counts even if its end is not recorded yet)."""
        for o in self.overrides.values():
            if o.in_force(t):
                return o.level
        base = self.timeline[0][1]
        for when, code in self.timeline:
            if when <= t:
                base = code
        return base

    def value_at(self, group: LevelGroupRules, tz: tzinfo, t: datetime) -> int:
        return value_in(self.entries, window_at(group.window, t, tz))

    def window(self, group: LevelGroupRules, tz: tzinfo, t: datetime) -> Bounds:
        return window_at(group.window, t, tz)

    # -- commands -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, customer_id: UUID, group: LevelGroupRules, *, at: datetime, program_version: int
    ) -> LevelMembership:
        return cls._create(
            cls.Opened,
            id=cls.id_for(customer_id, group.code),
            timestamp=at,
            customer_id=customer_id,
            group=group.code,
            level=group.levels[0].code,
            program_version=program_version,
        )

    def qualify(
        self,
        group: LevelGroupRules,
        tz: tzinfo,
        *,
        entry_id: str,
        value: int,
        effective_at: datetime,
        at: datetime,
        program_version: int,
        reason: str = "refund",
    ) -> bool:
        """Count a qualifying entry and move the level as it says; False if ``entry_id`` was
        counted already (nothing recorded). ``reason``: what a downgrade at once records (a
        refund, or a merge taking qualification away)."""
        if not self._count(entry_id, value, effective_at, at, program_version):
            return False
        self._follow(group, tz, value, at, program_version, reason)
        return True

    def qualify_all(
        self,
        group: LevelGroupRules,
        tz: tzinfo,
        entries: Iterable[tuple[str, int, datetime]],
        *,
        at: datetime,
        program_version: int,
        reason: str,
    ) -> None:
        """Count several entries ``(entry id, value, effective at)`` (those not counted yet),
        then move the level once, as their net says: a merge moving an order and its refund
        together shows no upgrade and downgrade that cancel out."""
        net = sum(
            value
            for entry_id, value, effective_at in entries
            if self._count(entry_id, value, effective_at, at, program_version)
        )
        self._follow(group, tz, net, at, program_version, reason)

    def _count(
        self, entry_id: str, value: int, effective_at: datetime, at: datetime, version: int
    ) -> bool:
        if entry_id in self.entry_ids:
            return False
        t = max(at, self.now)
        self.trigger_event(
            self.Qualified,
            entry_id=entry_id,
            value=value,
            effective_at=min(effective_at, t),
            program_version=version,
            timestamp=t,
        )
        return True

    def _follow(
        self,
        group: LevelGroupRules,
        tz: tzinfo,
        value: int,
        at: datetime,
        program_version: int,
        reason: str,
    ) -> None:
        """The level after counting ``value``: up at once when it qualifies higher; down at
        once, for a negative one, only below what the assessment basis still supports."""
        t = max(at, self.now)
        now_value = self.value_at(group, tz, t)
        rank = rank_of(group, self.base_level)
        if value > 0:
            q = group.qualified(now_value)
            if rank_of(group, q.code) > rank:
                self.trigger_event(
                    self.Upgraded,
                    customer_id=self.customer_id,
                    group=self.group,
                    from_level=self.base_level,
                    to_level=q.code,
                    value=now_value,
                    program_version=program_version,
                    check_at=self._check_at(group, tz, base=q.code, since=t),
                    timestamp=t,
                )
        elif value < 0:
            basis_value = self.value_at(group, tz, self.basis_at)
            supported = max(
                rank_of(group, group.qualified(now_value).code),
                rank_of(group, group.qualified(basis_value).code),
            )
            if supported < rank:
                to_level = group.levels[supported].code
                self.trigger_event(
                    self.Downgraded,
                    customer_id=self.customer_id,
                    group=self.group,
                    from_level=self.base_level,
                    to_level=to_level,
                    reason=reason,
                    value=max(now_value, basis_value),
                    assessment_at=None,
                    program_version=program_version,
                    check_at=self._check_at(group, tz, base=to_level, since=t),
                    timestamp=t,
                )
