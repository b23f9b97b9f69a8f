"""Levels on several ladders: qualifying entries, overrides, the assessment job, and reads.

One ``LevelMembership`` per customer per level group of the program (docs/levels.md). Orders and
refunds call ``qualify`` and save the aggregates it returns in their own transaction; the
assessment job (``assess_levels``) runs the downgrades due; overrides are commands of their own.
Every decision is made by the aggregate with the group's rules of the program version in force
and the tenant's time zone, both passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.application import AggregateNotFoundError

from application.app import Membercore
from application.context import CommandContext
from application.merges import load_customer
from application.program import loyalty_rules
from domain.customer import Customer
from domain.errors import (
    FieldProblem,
    InvalidInput,
    LevelGroupNotFound,
    OverrideNotFound,
    RoleNotHeld,
)
from domain.level_membership import LevelMembership
from domain.levels import rank_of, threshold_of
from domain.loyalty import LevelGroupRules, LoyaltyRules

SCAN_BATCH = 5000


@dataclass(frozen=True)
class LevelOutcome:
    """What a qualifying entry did. ``aggregates`` changed and are NOT saved: the caller saves
    them in its own transaction. ``changes``: one ``{"group", "from", "to"}`` per group whose
    level moved (``from`` None: the membership was opened by this entry)."""

    aggregates: list[LevelMembership]
    changes: list[dict[str, Any]]


def zone(rules: LoyaltyRules) -> ZoneInfo:
    return ZoneInfo(rules.timezone)


def load_membership(app: Membercore, customer_id: UUID, group: str) -> LevelMembership | None:
    try:
        membership: LevelMembership = app.repository.get(LevelMembership.id_for(customer_id, group))
    except AggregateNotFoundError:
        return None
    return membership


def qualify(
    app: Membercore,
    customer_id: UUID,
    roles: Collection[str],
    loyalty: LoyaltyRules,
    amounts: Mapping[str, int],
    *,
    entry_id: str,
    effective_at: datetime,
    at: datetime,
    load: Callable[[UUID], Any] | None = None,
) -> LevelOutcome:
    """Count one qualifying entry (``amounts``: basis → signed value) on every level group of
    ``loyalty`` whose basis is in ``amounts`` and whose role the customer holds, opening the
    membership at the first level where there is none. An ``entry_id`` already counted is
    ignored. Negative values (refunds) re-run the assessment at once. ``load``: where the
    caller already read the memberships (by id; None for one that does not exist)."""
    tz = zone(loyalty)
    aggregates: list[LevelMembership] = []
    changes: list[dict[str, Any]] = []
    for group in loyalty.level_groups.values():
        if group.basis not in amounts or not loyalty.on_group(group.code, roles):
            continue
        if load is None:
            membership = load_membership(app, customer_id, group.code)
        else:
            loaded = load(LevelMembership.id_for(customer_id, group.code))
            membership = loaded if isinstance(loaded, LevelMembership) else None
        before: str | None = None
        if membership is None:
            membership = LevelMembership.open(
                customer_id, group, at=at, program_version=loyalty.version
            )
        else:
            before = membership.level
        membership.qualify(
            group,
            tz,
            entry_id=entry_id,
            value=amounts[group.basis],
            effective_at=effective_at,
            at=at,
            program_version=loyalty.version,
        )
        if membership.pending_events:
            aggregates.append(membership)
        if membership.level != before:
            changes.append({"group": group.code, "from": before, "to": membership.level})
    return LevelOutcome(aggregates, changes)


def current_levels(app: Membercore, customer_id: UUID, at: datetime) -> dict[str, str]:
    """Group code → level code in force at ``at`` (override included), for the groups of the
    program in force at ``at`` the customer is on."""
    rules = loyalty_rules(app, at)
    out: dict[str, str] = {}
    for code in rules.level_groups:
        membership = load_membership(app, customer_id, code)
        if membership is not None and membership.created_on <= at:
            out[code] = membership.level_at(at)
    return out


# -- overrides ----------------------------------------------------------------------------------


@dataclass
class LevelCommandResult:
    """The outcome of an override command (``run_command``'s result shape)."""

    detail: dict[str, Any]
    position: int
    status: int = 200
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return dict(self.detail)


def parse_instant(rules: LoyaltyRules, raw: str, *, field: str) -> datetime:
    """RFC 3339 with an offset, or a bare ``YYYY-MM-DD``: the start of that day in the tenant's
    time zone (400 ``invalid_input`` otherwise)."""
    value: datetime | None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=zone(rules))
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        reason = "must be an RFC 3339 time with an offset, or a date YYYY-MM-DD"
        raise InvalidInput([FieldProblem(field, reason)])
    return value


def _group(rules: LoyaltyRules, code: str) -> LevelGroupRules:
    group = rules.level_groups.get(code)
    if group is None:
        raise LevelGroupNotFound(code)
    return group


def _member(
    app: Membercore, customer_id: UUID, rules: LoyaltyRules, group: LevelGroupRules
) -> Customer:
    customer = load_customer(app, customer_id)
    customer.require_active()
    if not rules.on_group(group.code, customer.roles):
        raise RoleNotHeld(group.role)
    return customer


def _override_body(
    customer_id: UUID, membership: LevelMembership, override_id: str
) -> dict[str, Any]:
    o = membership.overrides[override_id]
    reason, actor = membership.override_notes[override_id]
    return {
        "customer_id": str(customer_id),
        "group": membership.group,
        "override_id": override_id,
        "level": o.level,
        "until": o.until.isoformat(),
        "reason": reason,
        "actor": actor,
        "set_at": o.set_at.isoformat(),
        "ended_at": o.ended_at.isoformat() if o.ended_at else None,
        "level_now": membership.level,
    }


def set_level_override(
    app: Membercore,
    customer_id: UUID,
    group_code: str,
    *,
    override_id: str,
    level: str,
    until: str,
    reason: str,
    ctx: CommandContext,
) -> LevelCommandResult:
    """SetLevelOverride: ``level`` is the customer's level on the ladder until ``until``
    (replacing an override in force). 201; the same ``override_id`` again changes nothing."""

    def attempt(first: bool) -> LevelCommandResult:
        at = app.clock()
        rules = loyalty_rules(app, at)
        group = _group(rules, group_code)
        end = parse_instant(rules, until, field="until")
        _member(app, customer_id, rules, group)
        membership = load_membership(app, customer_id, group.code)
        if membership is None:
            membership = LevelMembership.open(
                customer_id, group, at=at, program_version=rules.version
            )
        membership.set_override(
            group,
            override_id=override_id,
            level=level,
            until=end,
            reason=reason,
            actor=ctx.actor,
            at=at,
            program_version=rules.version,
        )
        return _save(
            app, ctx, membership, _override_body(customer_id, membership, override_id), 201
        )

    return app.retrying(attempt)


def end_level_override(
    app: Membercore, customer_id: UUID, group_code: str, override_id: str, ctx: CommandContext
) -> LevelCommandResult:
    """EndLevelOverride: the computed level applies again from now. 200; ending an override
    that already ended (or expired) changes nothing."""

    def attempt(first: bool) -> LevelCommandResult:
        at = app.clock()
        rules = loyalty_rules(app, at)
        group = _group(rules, group_code)
        load_customer(app, customer_id)
        membership = load_membership(app, customer_id, group.code)
        if membership is None:
            raise OverrideNotFound(group.code, override_id)
        membership.end_override(override_id=override_id, actor=ctx.actor, at=at)
        return _save(
            app, ctx, membership, _override_body(customer_id, membership, override_id), 200
        )

    return app.retrying(attempt)


def _save(
    app: Membercore,
    ctx: CommandContext,
    membership: LevelMembership,
    detail: dict[str, Any],
    status: int,
) -> LevelCommandResult:
    if not membership.pending_events:
        return LevelCommandResult(detail, app.last_position_of(membership.id), status)
    recordings = app.save(membership, side_effect=ctx.complete(status, detail))
    return LevelCommandResult(detail, recordings[-1].notification.id, status, ctx.idempotent)


# -- reads --------------------------------------------------------------------------------------


def level_status(app: Membercore, customer_id: UUID, now: datetime) -> list[dict[str, Any]]:
    """Per level group the customer is on: the level, since when, the qualifying value in the
    window, the next level and the gap to it, and what keeps the current level by the next
    assessment (GET /v1/customers/{id}/levels). A ladder the customer's roles put them on but
    that nothing has counted on yet shows its entry level with ``since`` null, so a new member
    sees the gap to the first upgrade too."""
    customer = load_customer(app, customer_id)
    rules = loyalty_rules(app, now)
    tz = zone(rules)
    out: list[dict[str, Any]] = []
    for group in rules.level_groups.values():
        membership = load_membership(app, customer_id, group.code)
        if membership is not None:
            out.append(_status(group, tz, membership, now))
        elif _may_join(customer) and rules.on_group(group.code, customer.roles):
            out.append(_not_joined(customer_id, rules, group, tz, now))
    return out


def _may_join(customer: Customer) -> bool:
    return not customer.erased and customer.merged_into is None


def _not_joined(
    customer_id: UUID, rules: LoyaltyRules, group: LevelGroupRules, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    # An unsaved membership at the entry level: what the first qualifying entry would open.
    entry = LevelMembership.open(customer_id, group, at=now, program_version=rules.version)
    return {**_status(group, tz, entry, now), "since": None, "keep": None}


def _status(
    group: LevelGroupRules, tz: ZoneInfo, m: LevelMembership, now: datetime
) -> dict[str, Any]:
    level = m.level_at(now)
    value = m.value_at(group, tz, now)
    bounds = m.window(group, tz, now)
    rank = rank_of(group, level)
    next_level = None
    if rank + 1 < len(group.levels):
        up = group.levels[rank + 1]
        next_level = {
            "code": up.code,
            "name": up.name,
            "threshold": up.threshold,
            "gap": max(0, up.threshold - value),
        }
    keep = None
    by = m.next_assessment_at(group, tz)
    if by is not None:
        threshold = threshold_of(group, m.base_level)
        kept = m.kept_value(group, tz, by)
        keep = {
            "level": m.base_level,
            "threshold": threshold,
            "by": by.isoformat(),
            "value": kept,
            "gap": max(0, threshold - kept),
        }
    o = m.override
    override = None
    if o is not None and o.in_force(now):
        reason, actor = m.override_notes[o.override_id]
        override = {
            "override_id": o.override_id,
            "level": o.level,
            "until": o.until.isoformat(),
            "reason": reason,
            "actor": actor,
            "set_at": o.set_at.isoformat(),
            "computed_level": m.base_level,
        }
    lv = group.level(level)
    return {
        "group": group.code,
        "name": group.name,
        "level": level,
        "level_name": lv.name if lv is not None else level,
        "since": _since(m, level).isoformat(),
        "qualifying_value": value,
        "window": {
            "mode": group.window.mode,
            "basis": group.basis,
            "from": bounds.lo.isoformat() if bounds.lo is not None else None,
            "to": now.isoformat(),
        },
        "next_level": next_level,
        "keep": keep,
        "override": override,
    }


def _since(m: LevelMembership, level: str) -> datetime:
    """Since when ``level`` is in force: the recorded ``since``, or the end date of an override
    that has expired without its end recorded yet."""
    o = m.override
    if level != m.level and o is not None:
        return o.until
    return m.since


# -- the assessment job -------------------------------------------------------------------------


@dataclass
class AssessmentReport:
    """What one run of the assessment job did."""

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
            "position": self.position,
        }


def all_memberships(app: Membercore) -> Iterator[UUID]:
    """Every level membership of the tenant, from the log (openings only, by topic)."""
    start = 0
    while True:
        notes = app.recorder.select_notifications(
            start=start,
            limit=SCAN_BATCH,
            topics=[LevelMembership.Opened.TOPIC],
            inclusive_of_start=False,
        )
        for note in notes:
            yield UUID(str(note.originator_id))
        if len(notes) < SCAN_BATCH:
            return
        start = notes[-1].id


def assess_levels(
    app: Membercore, as_of: datetime, membership_ids: Iterable[UUID] | None = None
) -> AssessmentReport:
    """Run every assessment due by ``as_of`` (no later than now), end expired overrides and
    record downgrade warnings, membership by membership (each saved on its own, retried on a
    concurrent writer). Idempotent: assessments already run are not run again, so a second run
    (or a concurrent one) records nothing. ``membership_ids``: the candidates (a read model's
    due list); None: every membership of the tenant."""
    report = AssessmentReport(as_of)
    ids = all_memberships(app) if membership_ids is None else membership_ids
    for membership_id in ids:
        report.checked += 1
        recorded = _assess_with_retries(app, membership_id, as_of)
        if recorded:
            report.changed += 1
            report.events += len(recorded[0])
            report.position = max(report.position, recorded[1])
            for name in recorded[0]:
                report.by_type[name] = report.by_type.get(name, 0) + 1
    return report


def _assess_with_retries(
    app: Membercore, membership_id: UUID, as_of: datetime
) -> tuple[list[str], int] | None:
    def attempt(first: bool) -> tuple[list[str], int] | None:
        return _assess_one(app, membership_id, as_of)

    return app.retrying(attempt)


def _assess_one(
    app: Membercore, membership_id: UUID, as_of: datetime
) -> tuple[list[str], int] | None:
    try:
        membership: LevelMembership = app.repository.get(membership_id)
    except AggregateNotFoundError:
        return None
    at = app.clock()
    rules = loyalty_rules(app, at)
    group = rules.level_groups.get(membership.group)
    if group is None:
        return None  # the ladder left the program: nothing to assess against
    events = membership.assess(
        group, zone(rules), as_of=as_of, at=at, program_version=rules.version
    )
    if not events:
        return None
    recordings = app.save(membership)
    return [type(e).__name__ for e in events], recordings[-1].notification.id


def run_due_level_assessments(app: Membercore, now: datetime) -> AssessmentReport:
    """The scheduled form of the job (for a worker's scheduler): everything due by ``now``."""
    return assess_levels(app, now)
