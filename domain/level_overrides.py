"""Manual overrides of a level membership: a level laid over the computed one until an end date
(replacing an override in force), or ended early.

A mixin of :class:`~domain.level_membership.LevelMembership`, whose events and state it uses."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.errors import (
    ClientIdReused,
    FieldProblem,
    InvalidInput,
    LevelNotFound,
    OverrideNotFound,
)
from domain.levels import Override
from domain.loyalty import LevelGroupRules


class LevelOverrides:
    """``set_override`` and ``end_override``."""

    # What the methods use of LevelMembership (declared for the type checker only).
    if TYPE_CHECKING:
        customer_id: UUID
        group: str
        now: datetime
        overrides: dict[str, Override]
        override_notes: dict[str, tuple[str, str]]
        current_override: str | None
        OverrideSet: type[Any]
        OverrideEnded: type[Any]

        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def set_override(
        self,
        group: LevelGroupRules,
        *,
        override_id: str,
        level: str,
        until: datetime,
        reason: str,
        actor: str,
        at: datetime,
        program_version: int,
    ) -> bool:
        """Lay ``level`` over the computed level until ``until`` (replacing an override in
        force). False if ``override_id`` was set before with the same level, end and reason (a
        replay: nothing recorded); set before with others: ``ClientIdReused``."""
        known = self.overrides.get(override_id)
        if known is not None:
            if (known.level, known.until) != (level, until) or (
                self.override_notes[override_id][0] != reason
            ):
                raise ClientIdReused("override_id", override_id)
            return False
        if group.level(level) is None:
            raise LevelNotFound(group.code, level)
        t = max(at, self.now)
        problems: list[FieldProblem] = []
        if until <= t:
            problems.append(FieldProblem("until", "must be later than now"))
        if not reason.strip():
            problems.append(FieldProblem("reason", "a reason is required"))
        if problems:
            raise InvalidInput(problems)
        self.trigger_event(
            self.OverrideSet,
            customer_id=self.customer_id,
            group=self.group,
            override_id=override_id,
            level=level,
            until=until,
            reason=reason,
            actor=actor,
            program_version=program_version,
            timestamp=t,
        )
        return True

    def end_override(self, *, override_id: str, actor: str, at: datetime) -> bool:
        """End the override now; False if it already ended or expired (nothing recorded)."""
        if override_id not in self.overrides:
            raise OverrideNotFound(self.group, override_id)
        t = max(at, self.now)
        o = self.overrides[override_id]
        if override_id != self.current_override or not o.in_force(t):
            return False
        self.trigger_event(
            self.OverrideEnded,
            customer_id=self.customer_id,
            group=self.group,
            override_id=override_id,
            reason="ended",
            ended_at=t,
            actor=actor,
            timestamp=t,
        )
        return True
