"""Roles (多身份), the agent downline, and ownership (客户归属) with staff handover."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from application.agent_network import MAX_AGENT_DEPTH, agent_chain, closes_cycle, load_network
from application.app import Membercore
from application.context import CommandContext
from application.customers import Changed, save_changes
from application.merges import load_customer
from application.program import program_rules
from domain.errors import AgentCycle, FieldProblem, InvalidInput
from domain.staff import StaffActivity, staff_activity_id
from domain.values import optional_text, parse_role

__all__ = ["MAX_AGENT_DEPTH", "agent_chain"]  # kept importable from here

HANDOVER_CHUNK = 200


def add_role(
    app: Membercore,
    customer_id: UUID,
    role: str,
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    rules = program_rules(app)
    code = parse_role(role, field="role")
    if code not in rules.roles:
        raise InvalidInput([FieldProblem("role", f"role {code!r} is not in the program")])
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        customer.add_role(code, actor=ctx.actor, at=app.clock(), channel=via)
        return save_changes(app, ctx, customer, detail={"roles": sorted(customer.roles)})

    return app.retrying(attempt)


def end_role(
    app: Membercore,
    customer_id: UUID,
    role: str,
    reason: str | None,
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    code = parse_role(role, field="role")
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        customer.end_role(code, reason=reason, actor=ctx.actor, at=app.clock(), channel=via)
        return save_changes(app, ctx, customer, detail={"roles": sorted(customer.roles)})

    return app.retrying(attempt)


def set_parent_agent(
    app: Membercore, customer_id: UUID, parent_id: UUID | None, ctx: CommandContext
) -> Changed:
    """Place an agent under ``parent_id`` in the downline tree; a cycle is refused (409).

    Both must hold the ``agent`` or ``partner`` role. Placing under a parent loads the tenant's
    ``AgentNetwork`` first, then reads the chain, and saves the network with this agent's change:
    of two concurrent re-parentings one conflicts and retries on the new chain, so together they
    cannot close a cycle (application/agent_network.py). Detaching (``None``) cannot make a
    cycle and is not serialised.
    """

    def attempt(first: bool) -> Changed:
        at = app.clock()
        network = load_network(app, at) if parent_id is not None else None
        customer = load_customer(app, customer_id)
        if parent_id is not None:
            if closes_cycle(app, customer_id, parent_id):
                raise AgentCycle(customer_id, parent_id)
            parent = load_customer(app, parent_id)
            parent.require_active()
            if not ({"agent", "partner"} & set(parent.roles)):
                raise InvalidInput(
                    [FieldProblem("parent_id", "the parent holds no agent or partner role")]
                )
        if not ({"agent", "partner"} & set(customer.roles)):
            raise InvalidInput([FieldProblem("customer_id", "holds no agent or partner role")])
        others: list[Aggregate] = []
        if customer.set_parent_agent(parent_id, actor=ctx.actor, at=at) and network is not None:
            assert parent_id is not None
            network.reparent(customer_id, parent_id, at=at)
            others.append(network)
        detail = {"parent_id": str(parent_id) if parent_id else None}
        return save_changes(app, ctx, customer, *others, detail=detail)

    return app.retrying(attempt)


def assign_owner(
    app: Membercore,
    customer_id: UUID,
    owner: str,
    reason: str | None,
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    staff = optional_text(owner, field="owner")
    if not staff:
        raise InvalidInput([FieldProblem("owner", "must not be empty")])
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        customer.assign_owner(staff, reason=reason, actor=ctx.actor, at=app.clock(), channel=via)
        return save_changes(app, ctx, customer, detail={"owner": customer.owner})

    return app.retrying(attempt)


def _staff_activity(app: Membercore, staff_id: str, at: Any) -> StaffActivity:
    try:
        activity: StaffActivity = app.repository.get(staff_activity_id(staff_id))
    except AggregateNotFoundError:
        activity = StaffActivity.start(staff_id, at=at)
    return activity


def end_owner(
    app: Membercore,
    customer_id: UUID,
    by: str,
    reason: str | None,
    ctx: CommandContext,
    *,
    channel: str | None = None,
) -> Changed:
    """End the owner relationship, recording who ended it; a burst by one staff raises an alert
    event (the seed's warning about staff deleting customers before they leave)."""
    staff = optional_text(by, field="by")
    if not staff:
        raise InvalidInput([FieldProblem("by", "name the staff member ending the relationship")])
    alerts = program_rules(app).staff_alerts
    via = optional_text(channel, field="channel")

    def attempt(first: bool) -> Changed:
        at = app.clock()
        customer = load_customer(app, customer_id)
        ended = customer.end_owner(by=staff, reason=reason, actor=ctx.actor, at=at, channel=via)
        others: list[Aggregate] = []
        alert = False
        if ended is not None:
            activity = _staff_activity(app, staff, at)
            alert = activity.record_removals(
                1, threshold=alerts.owner_removals, window_minutes=alerts.window_minutes, at=at
            )
            others.append(activity)
        detail = {"ended_owner": ended, "alert_raised": alert}
        return save_changes(app, ctx, customer, *others, detail=detail)

    return app.retrying(attempt)


@dataclass(frozen=True)
class Handover:
    from_staff: str
    to_staff: str
    moved: tuple[UUID, ...]
    skipped: tuple[UUID, ...]
    position: int
    status: int = 200
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "from_staff_id": self.from_staff,
            "to_staff_id": self.to_staff,
            "moved": len(self.moved),
            "customer_ids": [str(c) for c in self.moved],
            "skipped": [str(c) for c in self.skipped],
        }


def handover(
    app: Membercore,
    from_staff: str,
    to_staff: str,
    owned_by: Callable[[str], Sequence[UUID]],
    ctx: CommandContext,
) -> Handover:
    """Move every customer of a leaving employee to another (员工离职转让).

    ``owned_by`` lists candidates from the read model (caught up by the caller); each customer's
    own stream decides: one no longer owned by ``from_staff`` is skipped and reported. Saved in
    chunks; a retry after a crash moves the rest and skips what moved already.
    """
    source = optional_text(from_staff, field="staff_id")
    target = optional_text(to_staff, field="to_staff_id")
    if not source or not target or source == target:
        raise InvalidInput([FieldProblem("to_staff_id", "must name another staff member")])
    moved: list[UUID] = []
    skipped: list[UUID] = []
    position = 0
    completed = False
    candidates = list(owned_by(source))
    for start in range(0, len(candidates), HANDOVER_CHUNK):
        chunk = candidates[start : start + HANDOVER_CHUNK]
        last = start + HANDOVER_CHUNK >= len(candidates)
        saved_at, completed = _handover_chunk(app, chunk, source, target, ctx, moved, skipped, last)
        position = max(position, saved_at)
    return Handover(source, target, tuple(moved), tuple(skipped), position, 200, completed)


def _handover_chunk(
    app: Membercore,
    chunk: Sequence[UUID],
    source: str,
    target: str,
    ctx: CommandContext,
    moved: list[UUID],
    skipped: list[UUID],
    last: bool,
) -> tuple[int, bool]:
    """Save one chunk; returns its position and whether it stored the command's response."""

    def attempt(first: bool) -> tuple[int, bool]:
        at = app.clock()
        changed: list[Aggregate] = []
        here_moved: list[UUID] = []
        here_skipped: list[UUID] = []
        for customer_id in chunk:
            customer = load_customer(app, customer_id)
            if customer.owner != source or customer.erased or customer.merged_into:
                here_skipped.append(customer_id)
                continue
            customer.assign_owner(target, reason="handover", actor=ctx.actor, at=at)
            changed.append(customer)
            here_moved.append(customer_id)
        if not changed:
            skipped.extend(here_skipped)
            return 0, False
        body = Handover(source, target, (*moved, *here_moved), (*skipped, *here_skipped), 0)
        effect = ctx.complete(200, body.body()) if last else None
        recordings = app.save(*changed, side_effect=effect)
        moved.extend(here_moved)
        skipped.extend(here_skipped)
        return recordings[-1].notification.id, effect is not None

    return app.retrying(attempt)
