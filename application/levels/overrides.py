"""Level overrides: ``SetLevelOverride`` lays a level over the computed one until an end date,
``EndLevelOverride`` lets the computed level apply again from now.

The membership decides (``LevelMembership.set_override`` / ``end_override``) with the group's
rules of the program in force now; the kernel saves and answers. The same ``override_id`` with
the same request again is answered again by the membership (nothing written); with another
request it is ``idempotency_key_reused``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from application.app import Membercore
from application.context import CommandContext
from application.instants import parse_instant
from application.kernel import Command, Decision, Outcome, handles
from application.levels.qualification import zone
from application.loaders import load_customer, membership
from application.program import loyalty_rules
from domain.errors import LevelGroupNotFound, OverrideNotFound, RoleNotHeld
from domain.level_membership import LevelMembership
from domain.loyalty import LevelGroupRules, LoyaltyRules


@dataclass(frozen=True)
class OverrideCommand(Command):
    """A command on one customer's membership of one level group."""

    scope: ClassVar[tuple[str, ...]] = ("customer_id", "group")
    customer_id: UUID
    group: str


@dataclass(frozen=True)
class SetLevelOverride(OverrideCommand):
    """``level`` is the customer's level on the ladder until ``until`` (RFC 3339 with an
    offset, or a date: the start of that day in the tenant's zone), replacing an override in
    force; ``reason`` and the caller are recorded (404 ``level_group_not_found``, 404
    ``role_not_held``, 400 ``level_not_found``, 400 for an end not in the future)."""

    operation = "SetLevelOverride"
    client_id = "override_id"
    override_id: str
    level: str
    until: str
    reason: str


@dataclass(frozen=True)
class EndLevelOverride(OverrideCommand):
    """End the override now: the computed level applies again. Ending one that already ended
    or expired changes nothing (404 ``level_override_not_found`` for an unknown one). The
    ``reason`` is part of the request (a retry must repeat it); the event records who ended
    it."""

    operation = "EndLevelOverride"
    scope = ("customer_id", "group", "override_id")
    override_id: str
    reason: str | None = None


def _group(rules: LoyaltyRules, code: str) -> LevelGroupRules:
    group = rules.level_groups.get(code)
    if group is None:
        raise LevelGroupNotFound(code)
    return group


def _override_body(customer_id: UUID, m: LevelMembership, override_id: str) -> dict[str, Any]:
    o = m.overrides[override_id]
    reason, actor = m.override_notes[override_id]
    return {
        "customer_id": str(customer_id),
        "group": m.group,
        "override_id": override_id,
        "level": o.level,
        "until": o.until.isoformat(),
        "reason": reason,
        "actor": actor,
        "set_at": o.set_at.isoformat(),
        "ended_at": o.ended_at.isoformat() if o.ended_at else None,
        "level_now": m.level,
    }


@handles(SetLevelOverride)
def set_level_override(app: Membercore, cmd: SetLevelOverride, ctx: CommandContext) -> Decision:
    at = app.clock()
    rules = loyalty_rules(app, at)
    group = _group(rules, cmd.group)
    until = parse_instant(cmd.until, zone(rules), field="until")
    customer = load_customer(app, cmd.customer_id)
    customer.require_active()
    if not rules.on_group(group.code, customer.roles):
        raise RoleNotHeld(group.role)
    m = membership(app, cmd.customer_id, group.code) or LevelMembership.open(
        cmd.customer_id, group, at=at, program_version=rules.version
    )
    recorded = m.set_override(
        group,
        override_id=cmd.override_id,
        level=cmd.level,
        until=until,
        reason=cmd.reason,
        actor=ctx.actor,
        at=at,
        program_version=rules.version,
    )
    # Not recorded: the membership knew the override id and answered the same request again.
    outcome = Outcome.CREATED if recorded else Outcome.DONE
    body = _override_body(cmd.customer_id, m, cmd.override_id)
    # Decided on an active customer: a merge taking it away meanwhile makes it decide again.
    return Decision(outcome, body, save=(m,), unchanged=(customer,), position_of=m.id)


@handles(EndLevelOverride)
def end_level_override(app: Membercore, cmd: EndLevelOverride, ctx: CommandContext) -> Decision:
    at = app.clock()
    group = _group(loyalty_rules(app, at), cmd.group)
    load_customer(app, cmd.customer_id)
    m = membership(app, cmd.customer_id, group.code)
    if m is None:
        raise OverrideNotFound(group.code, cmd.override_id)
    m.end_override(override_id=cmd.override_id, actor=ctx.actor, at=at)
    body = _override_body(cmd.customer_id, m, cmd.override_id)
    return Decision(Outcome.DONE, body, save=(m,), position_of=m.id)
