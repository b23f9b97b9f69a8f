"""Roles (多身份), the agent downline, and ownership (客户归属) with staff handover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.agent_network import MAX_AGENT_DEPTH, agent_chain, closes_cycle, load_network
from application.app import Membercore
from application.context import CommandContext
from application.customers import CustomerCommand, changed
from application.kernel import Command, Decision, Outcome, handles
from application.loaders import load_customer, many, optional
from application.program import program_rules
from domain.customer import Customer
from domain.errors import AgentCycle, FieldProblem, InvalidInput
from domain.staff import StaffActivity, staff_activity_id
from domain.values import optional_text, parse_role

__all__ = ["MAX_AGENT_DEPTH", "agent_chain"]  # kept importable from here


def _required(value: str | None, name: str, problem: str) -> None:
    if not optional_text(value, field=name):
        raise InvalidInput([FieldProblem(name, problem)])


# -- roles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddRole(CustomerCommand):
    """Add a role of the program; one held already records nothing."""

    operation = "AddRole"
    role: str
    channel: str | None = None

    def __post_init__(self) -> None:
        parse_role(self.role, field="role")


@dataclass(frozen=True)
class EndRole(CustomerCommand):
    """End a role the customer holds (404 ``role_not_held``)."""

    operation = "EndRole"
    role: str
    reason: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        parse_role(self.role, field="role")


@handles(AddRole)
def add_role(app: Membercore, cmd: AddRole, ctx: CommandContext) -> Decision:
    code = parse_role(cmd.role, field="role")
    if code not in program_rules(app).roles:
        raise InvalidInput([FieldProblem("role", f"role {code!r} is not in the program")])
    via = optional_text(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    customer.add_role(code, actor=ctx.actor, at=app.clock(), channel=via)
    return changed(customer, detail={"roles": sorted(customer.roles)})


@handles(EndRole)
def end_role(app: Membercore, cmd: EndRole, ctx: CommandContext) -> Decision:
    code = parse_role(cmd.role, field="role")
    via = optional_text(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    customer.end_role(code, reason=cmd.reason, actor=ctx.actor, at=app.clock(), channel=via)
    return changed(customer, detail={"roles": sorted(customer.roles)})


# -- the agent downline -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetParentAgent(CustomerCommand):
    """Place an agent under ``parent_id`` in the downline tree (None detaches it); a cycle is
    refused (409 ``agent_cycle``). Both must hold the ``agent`` or ``partner`` role.

    Placing under a parent loads the tenant's ``AgentNetwork`` first, then reads the chain, and
    saves the network with this agent's change: of two concurrent re-parentings one conflicts
    and is decided again on the new chain, so together they cannot close a cycle
    (application/agent_network.py). Detaching cannot make a cycle and is not serialised.
    """

    operation = "SetParentAgent"
    parent_id: UUID | None


AGENT_ROLES = frozenset({"agent", "partner"})


@handles(SetParentAgent)
def set_parent_agent(app: Membercore, cmd: SetParentAgent, ctx: CommandContext) -> Decision:
    at, parent_id = app.clock(), cmd.parent_id
    network = load_network(app, at) if parent_id is not None else None
    customer = load_customer(app, cmd.customer_id)
    if parent_id is not None:
        if closes_cycle(app, cmd.customer_id, parent_id):
            raise AgentCycle(cmd.customer_id, parent_id)
        parent = load_customer(app, parent_id)
        parent.require_active()
        if not AGENT_ROLES & set(parent.roles):
            raise InvalidInput(
                [FieldProblem("parent_id", "the parent holds no agent or partner role")]
            )
    if not AGENT_ROLES & set(customer.roles):
        raise InvalidInput([FieldProblem("customer_id", "holds no agent or partner role")])
    others: list[Aggregate] = []
    if customer.set_parent_agent(parent_id, actor=ctx.actor, at=at) and network is not None:
        assert parent_id is not None
        network.reparent(cmd.customer_id, parent_id, at=at)
        others.append(network)
    detail = {"parent_id": str(parent_id) if parent_id else None}
    return changed(customer, *others, detail=detail)


# -- ownership --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignOwner(CustomerCommand):
    """Make ``owner`` (a staff id) the customer's owner; the current owner records nothing."""

    operation = "AssignOwner"
    owner: str
    reason: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        _required(self.owner, "owner", "must not be empty")


@dataclass(frozen=True)
class EndOwner(CustomerCommand):
    """End the owner relationship, recording who ended it (``by``); a burst by one staff member
    raises an alert event (the seed's warning about staff deleting customers before they
    leave). A customer without an owner records nothing."""

    operation = "EndOwner"
    by: str
    reason: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        _required(self.by, "by", "name the staff member ending the relationship")


@handles(AssignOwner)
def assign_owner(app: Membercore, cmd: AssignOwner, ctx: CommandContext) -> Decision:
    staff = optional_text(cmd.owner, field="owner")
    assert staff is not None  # checked by the command
    via = optional_text(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    customer.assign_owner(staff, reason=cmd.reason, actor=ctx.actor, at=app.clock(), channel=via)
    return changed(customer, detail={"owner": customer.owner})


def _staff_activity(app: Membercore, staff_id: str, at: datetime) -> StaffActivity:
    activity = optional(app, staff_activity_id(staff_id), StaffActivity)
    return activity or StaffActivity.start(staff_id, at=at)


@handles(EndOwner)
def end_owner(app: Membercore, cmd: EndOwner, ctx: CommandContext) -> Decision:
    staff = optional_text(cmd.by, field="by")
    assert staff is not None  # checked by the command
    alerts = program_rules(app).staff_alerts
    via = optional_text(cmd.channel, field="channel")
    at = app.clock()
    customer = load_customer(app, cmd.customer_id)
    ended = customer.end_owner(by=staff, reason=cmd.reason, actor=ctx.actor, at=at, channel=via)
    others: list[Aggregate] = []
    alert = False
    if ended is not None:
        activity = _staff_activity(app, staff, at)
        alert = activity.record_removals(
            1, threshold=alerts.owner_removals, window_minutes=alerts.window_minutes, at=at
        )
        others.append(activity)
    return changed(customer, *others, detail={"ended_owner": ended, "alert_raised": alert})


# -- handover -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandOverCustomers(Command):
    """Move every customer of a leaving employee to another (员工离职转让), in one transaction.

    The candidates come from the owner index (``app.owners``, the profiles brought to the log
    head); each customer's own stream decides: one no longer owned by ``staff_id`` (or merged
    away, or erased) is skipped and reported. A handover that moves nobody records nothing.
    """

    operation = "HandOverCustomers"
    scope: ClassVar[tuple[str, ...]] = ("staff_id",)
    staff_id: str
    to_staff_id: str

    def __post_init__(self) -> None:
        source = optional_text(self.staff_id, field="staff_id")
        target = optional_text(self.to_staff_id, field="to_staff_id")
        if not source or not target or source == target:
            raise InvalidInput([FieldProblem("to_staff_id", "must name another staff member")])


@handles(HandOverCustomers)
def hand_over_customers(app: Membercore, cmd: HandOverCustomers, ctx: CommandContext) -> Decision:
    # Both checked by the command: neither is None.
    source = optional_text(cmd.staff_id, field="staff_id") or ""
    target = optional_text(cmd.to_staff_id, field="to_staff_id") or ""
    at = app.clock()
    candidates = app.owners.owned_by(source)
    found = many(app, candidates)
    moved: list[Customer] = []
    skipped: list[UUID] = []
    for customer_id in candidates:
        customer = found.get(customer_id)
        if (
            not isinstance(customer, Customer)
            or customer.owner != source
            or customer.erased
            or customer.merged_into
        ):
            skipped.append(customer_id)
            continue
        customer.assign_owner(target, reason="handover", actor=ctx.actor, at=at)
        moved.append(customer)
    body: dict[str, Any] = {
        "from_staff_id": source,
        "to_staff_id": target,
        "moved": len(moved),
        "customer_ids": [str(c.id) for c in moved],
        "skipped": [str(c) for c in skipped],
    }
    return Decision(Outcome.DONE, body, save=moved, position=0)
