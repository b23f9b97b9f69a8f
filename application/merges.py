"""MergeCustomers and UndoMerge: one path for manual and rule-driven merges, and their undo.

Each handler reads what the command may change in bulk (``application.merge_assets``), the
domain decides (``domain.merge`` plans what the survivor takes and gives back,
``domain.merge_moves`` and ``domain.merge_undo`` move the assets and record each move on the
``Merge``), and the kernel saves it all in one transaction.

A merge's id is derived from the client's id when it has one (``ctx.new_id``): the same request
again finds its ``Merge`` and is answered again, nothing written, even after the merged pair
changed; another pair under that id is ``idempotency_key_reused``.

A parent agent the survivor takes from the source is placed on the tenant's ``AgentNetwork``,
read before the chain that checks it closes no cycle, so the merge serialises with concurrent
re-parentings (``application.agent_network``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from application.agent_network import closes_cycle, load_network
from application.app import Membercore
from application.context import CommandContext
from application.kernel import Caller, Command, Decision, Outcome, execute, handles
from application.loaders import load_merge, many
from application.merge_assets import merge_holdings, undo_holdings, undo_reads
from application.program import loyalty_rules, program_rules
from domain.customer import Customer
from domain.errors import CustomerNotFound
from domain.merge import AssetMove, Merge, plan_merge, plan_undo
from domain.merge_moves import decide_merge
from domain.merge_undo import decide_undo


@dataclass(frozen=True)
class MergeCustomers(Command):
    """Merge ``source_customer_id`` into ``customer_id`` (the survivor), in one transaction.
    ``reason``: ``manual``, or ``identity:<type>`` when registration merges by an identity
    rule; ``merge_id``: the id to record it under (default: ``ctx.new_id()``)."""

    operation = "MergeCustomers"
    scope: ClassVar[tuple[str, ...]] = ("customer_id",)
    customer_id: UUID
    source_customer_id: UUID
    reason: str = "manual"
    merge_id: UUID | None = None


@dataclass(frozen=True)
class UndoMerge(Command):
    """Reverse a merge exactly: what it moved goes back; later changes of the survivor stay
    (409 ``merge_not_undoable`` once undone, or while the survivor is merged on or erased)."""

    operation = "UndoMerge"
    scope: ClassVar[tuple[str, ...]] = ("merge_id",)
    merge_id: UUID


def merge_answer(merge: Merge) -> dict[str, Any]:
    return {
        "merge_id": str(merge.id),
        "survivor_id": str(merge.survivor_id),
        "source_id": str(merge.source_id),
        "moved": _count(merge.moves),
    }


def _count(moves: Sequence[AssetMove]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in moves:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return counts


def _saved_up_to(app: Membercore, merge: Merge) -> int:
    """A position at or after the merge's whole save (its record is not its last event)."""
    streams = {merge.id, merge.survivor_id, merge.source_id, *(m.aggregate_id for m in merge.moves)}
    return max(app.last_position_of(i) for i in streams)


def _customers(found: dict[UUID, Any], *ids: UUID) -> list[Customer]:
    out: list[Customer] = []
    for customer_id in ids:
        customer = found.get(customer_id)
        if not isinstance(customer, Customer):
            raise CustomerNotFound(customer_id)
        out.append(customer)
    return out


@handles(MergeCustomers)
def merge_customers(app: Membercore, cmd: MergeCustomers, ctx: CommandContext) -> Decision:
    at = app.clock()
    merge_id = cmd.merge_id or ctx.new_id()
    found = many(app, (merge_id, cmd.customer_id, cmd.source_customer_id))
    existing = found.get(merge_id)
    if isinstance(existing, Merge):
        existing.repeated(cmd.customer_id, cmd.source_customer_id)
        answer = merge_answer(existing)
        return Decision(Outcome.CREATED, answer, position=_saved_up_to(app, existing))
    survivor, source = _customers(found, cmd.customer_id, cmd.source_customer_id)
    plan = plan_merge(survivor, source, program_rules(app))
    network, cycle = None, False
    if plan.parent_agent_id is not None:
        network = load_network(app, at)  # before the chain is read: see agent_network.py
        cycle = closes_cycle(app, survivor.id, plan.parent_agent_id)
    rules = loyalty_rules(app)
    held = merge_holdings(app, survivor, source, rules)
    merge, changed = decide_merge(
        survivor,
        source,
        plan,
        merge_id,
        rules,
        held,
        reason=cmd.reason,
        actor=ctx.actor,
        at=at,
        network=network,
        closes_cycle=cycle,
    )
    return Decision(Outcome.CREATED, merge_answer(merge), save=changed)


@handles(UndoMerge)
def undo_merge(app: Membercore, cmd: UndoMerge, ctx: CommandContext) -> Decision:
    at = app.clock()
    merge = load_merge(app, cmd.merge_id)
    merge.require_undoable()
    rules = loyalty_rules(app)
    found = many(app, [merge.survivor_id, merge.source_id, *undo_reads(merge, rules)])
    survivor, source = _customers(found, merge.survivor_id, merge.source_id)
    plan = plan_undo(survivor, merge.id)
    held = undo_holdings(app, found, merge, source, plan, rules)
    changed = decide_undo(merge, plan, survivor, source, rules, held, actor=ctx.actor, at=at)
    return Decision(Outcome.DONE, merge_answer(merge), save=changed)


def merge_now(
    app: Membercore, survivor_id: UUID, source_id: UUID, ctx: CommandContext, *, reason: str
) -> UUID:
    """Run ``MergeCustomers`` at once as ``ctx.new_id()`` (committed before this returns): the
    registration merges the customers its identities name, then decides again."""
    merge_id = ctx.new_id()
    cmd = MergeCustomers(survivor_id, source_id, reason, merge_id)
    execute(app, cmd, Caller(ctx.actor))
    return merge_id
