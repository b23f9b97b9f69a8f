"""The level assessment job: every assessment due by ``as_of`` runs, expired overrides end and
downgrade warnings are recorded, one ``AssessLevelMembership`` command per membership found due.

Which memberships are due comes from the write side's due index (``Membercore.due``): those
with an assessment, a warning or an override's end due by ``as_of``. Each membership then runs
what *it* says is due: it records how far its assessments ran (``Assessed.through``,
``Downgraded.assessment_at``), so running the job twice, or in two processes at once, records
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from application.app import Membercore
from application.context import CommandContext
from application.instants import require_offset
from application.kernel import Caller, Command, Decision, Outcome, execute, handles
from application.levels.qualification import zone
from application.loaders import optional
from application.program import loyalty_rules
from domain.level_membership import LevelMembership

JOB = Caller("job:assess-levels")


@dataclass
class AssessmentReport:
    """What one run of the job did; ``position``: the log position of its last event (the
    log's head when it recorded nothing)."""

    as_of: datetime
    checked: int = 0
    changed: int = 0
    events: int = 0
    position: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "checked": self.checked,
            "changed": self.changed,
            "events": self.events,
            "by_type": dict(sorted(self.by_type.items())),
        }


@dataclass(frozen=True)
class AssessLevelMembership(Command):
    """Run what is due by ``as_of`` on one membership; nothing due (done by an earlier or a
    concurrent run, or its ladder left the program): nothing is written."""

    operation = "AssessLevelMembership"
    membership_id: UUID
    as_of: datetime


@handles(AssessLevelMembership)
def assess_membership(app: Membercore, cmd: AssessLevelMembership, ctx: CommandContext) -> Decision:
    m = optional(app, cmd.membership_id, LevelMembership)
    at = app.clock()
    rules = loyalty_rules(app, at)
    group = rules.level_groups.get(m.group) if m is not None else None
    if m is None or group is None:
        return Decision(Outcome.DONE, {"events": []})
    events = m.assess(group, zone(rules), as_of=cmd.as_of, at=at, program_version=rules.version)
    return Decision(Outcome.DONE, {"events": [type(e).__name__ for e in events]}, save=(m,))


@dataclass(frozen=True)
class AssessLevels(Command):
    """The job at ``as_of``; what falls due after now waits for a later run."""

    operation = "AssessLevels"
    as_of: datetime

    def __post_init__(self) -> None:
        require_offset(self.as_of, field="as_of")


@handles(AssessLevels)
def assess_levels(app: Membercore, cmd: AssessLevels, ctx: CommandContext) -> Decision:
    report = run_level_assessments(app, cmd.as_of)
    return Decision(Outcome.DONE, report.body(), position=report.position)


def run_level_assessments(app: Membercore, as_of: datetime) -> AssessmentReport:
    """The job over the memberships the due index finds due by ``as_of`` (never after now)."""
    return assess_due(app, as_of, app.due.memberships(min(as_of, app.clock())))


def assess_due(
    app: Membercore, as_of: datetime, membership_ids: Iterable[UUID]
) -> AssessmentReport:
    """The job over ``membership_ids`` (those found due by ``as_of``), each its own command."""
    report = AssessmentReport(as_of)
    for membership_id in dict.fromkeys(membership_ids):
        report.checked += 1
        done = execute(app, AssessLevelMembership(membership_id, as_of), JOB)
        recorded: list[str] = done.body["events"]
        if recorded:
            report.changed += 1
            report.events += len(recorded)
            report.position = max(report.position, done.position)
            for name in recorded:
                report.by_type[name] = report.by_type.get(name, 0) + 1
    if report.position == 0:
        report.position = app.recorder.max_notification_id() or 0
    return report
