"""MergeCustomers and UndoMerge: one path for manual and rule-driven merges, and their undo.

Every asset type joins the merge as a ``MergeParticipant``: given the source and the survivor it
returns the aggregates it changed (saved in the merge's one transaction) and an ``AssetMove`` per
aggregate, kept on the ``Merge`` record, from which its ``undo`` reverses exactly that.
Identity claims are the first participant; points, levels, wallet and commission ledgers plug
in the same way (docs/identity.md).

The customer's own state moves on the survivor's ``Absorbed`` event (the merge plan): identities,
fields, roles, the newest consent decision per purpose and channel, and the source's parent agent
and referrer when the survivor has none. A parent agent that would close a cycle (the source's
parent sits in the survivor's downline) is not taken; taking one saves the tenant's
``AgentNetwork`` too, so the merge serialises with concurrent re-parentings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from application.agent_network import closes_cycle, load_network
from application.app import Membercore
from application.context import CommandContext
from application.program import program_rules
from domain.customer import Customer, IdentityClaim
from domain.errors import CustomerNotFound, MergeNotFound, MergeNotUndoable
from domain.merge import (
    AssetMove,
    Merge,
    MergePlan,
    UndoPlan,
    absorb,
    give_back,
    merge_away,
    plan_merge,
    plan_undo,
    restore,
    without_parent_agent,
)
from domain.values import Identity

NO_LIMIT = 1 << 30


class MergeParticipant(Protocol):
    """An asset type's part in merges. ``kind`` names its ``AssetMove`` entries."""

    kind: str

    def move(
        self,
        app: Membercore,
        source: Customer,
        survivor: Customer,
        plan: MergePlan,
        merge_id: UUID,
        at: datetime,
    ) -> list[tuple[Aggregate, AssetMove]]: ...

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]: ...


class IdentityClaims:
    """The source's identity claims pass to the survivor, and back on undo."""

    kind = "identity_claim"
    shared_kind = "identity_claim_shared"

    def move(
        self,
        app: Membercore,
        source: Customer,
        survivor: Customer,
        plan: MergePlan,
        merge_id: UUID,
        at: datetime,
    ) -> list[tuple[Aggregate, AssetMove]]:
        out: list[tuple[Aggregate, AssetMove]] = []
        for identity in source.identities:
            claim = _claim(app, identity)
            if claim is None:
                continue
            if survivor.id in claim.holders:  # a shared value both held: the source lets go
                claim.remove_holder(source.id, at=at)
                out.append((claim, AssetMove(self.shared_kind, claim.id)))
            elif claim.transfer(source.id, survivor.id, merge_id=merge_id, at=at):
                out.append((claim, AssetMove(self.kind, claim.id)))
        return out

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        returned = {app.claim_id(i) for i in undo_plan.identities}
        out: list[Aggregate] = []
        for move in moves:
            claim: IdentityClaim = app.repository.get(move.aggregate_id)
            if move.kind == self.shared_kind:
                if claim.add_holder(merge.source_id, limit=NO_LIMIT, at=at):
                    out.append(claim)
            elif claim.id in returned and claim.transfer(
                merge.survivor_id, merge.source_id, merge_id=merge.id, at=at
            ):
                out.append(claim)
        return out


# Asset types register here (points, levels, wallet, commissions as they are built).
PARTICIPANTS: list[MergeParticipant] = [IdentityClaims()]


def participants() -> list[MergeParticipant]:
    """Every participant: identity claims, then the loyalty assets."""
    # The asset modules import this one (load_customer): resolved on first use, not at import.
    from application.merge_assets import ASSET_PARTICIPANTS

    return [*PARTICIPANTS, *ASSET_PARTICIPANTS]


def _claim(app: Membercore, identity: Identity) -> IdentityClaim | None:
    try:
        claim: IdentityClaim = app.repository.get(app.claim_id(identity))
    except AggregateNotFoundError:
        return None
    return claim


def load_customer(app: Membercore, customer_id: UUID) -> Customer:
    try:
        customer: object = app.repository.get(customer_id)
    except AggregateNotFoundError:
        raise CustomerNotFound(customer_id) from None
    if not isinstance(customer, Customer):
        raise CustomerNotFound(customer_id)
    return customer


def merged_into(app: Membercore, customer_id: UUID) -> str | None:
    """The customer ``customer_id`` was merged into, for reads of a merged-away id (404
    ``customer_not_found`` for no customer)."""
    into = load_customer(app, customer_id).merged_into
    return str(into) if into is not None else None


@dataclass(frozen=True)
class MergeResult:
    merge_id: UUID
    survivor_id: UUID
    source_id: UUID
    moves: tuple[AssetMove, ...]
    position: int
    status: int = 201
    completed: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "merge_id": str(self.merge_id),
            "survivor_id": str(self.survivor_id),
            "source_id": str(self.source_id),
            "moved": _count(self.moves),
        }


def _count(moves: Sequence[AssetMove]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in moves:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return counts


def merge_customers(
    app: Membercore,
    survivor_id: UUID,
    source_id: UUID,
    ctx: CommandContext,
    *,
    reason: str = "manual",
) -> MergeResult:
    """Merge ``source_id`` into ``survivor_id`` in one transaction, recorded as ``merge_id``."""
    merge_id = ctx.new_id()
    rules = program_rules(app)

    def attempt(first: bool) -> MergeResult:
        at = app.clock()
        survivor = load_customer(app, survivor_id)
        source = load_customer(app, source_id)
        plan = plan_merge(survivor, source, rules)
        changed: list[Aggregate] = []
        moves: list[AssetMove] = []
        parent = plan.parent_agent_id
        if parent is not None:
            network = load_network(app, at)  # before the chain is read: see agent_network.py
            if closes_cycle(app, survivor.id, parent):
                plan = without_parent_agent(plan)
            else:
                network.reparent(survivor.id, parent, at=at)
                changed.append(network)
        for participant in participants():
            for aggregate, move in participant.move(app, source, survivor, plan, merge_id, at):
                changed.append(aggregate)
                moves.append(move)
        absorb(survivor, source.id, merge_id, plan, actor=ctx.actor, at=at)
        merge_away(source, survivor.id, merge_id, actor=ctx.actor, at=at)
        merge = Merge.record(
            merge_id=merge_id,
            survivor_id=survivor.id,
            source_id=source.id,
            reason=reason,
            moves=moves,
            actor=ctx.actor,
            at=at,
        )
        result = MergeResult(merge_id, survivor.id, source.id, tuple(moves), 0)
        recordings = app.save(
            survivor, source, merge, *changed, side_effect=ctx.complete(201, result.body())
        )
        position = recordings[-1].notification.id
        return MergeResult(
            merge_id, survivor.id, source.id, tuple(moves), position, 201, ctx.idempotent
        )

    return app.retrying(attempt)


def load_merge(app: Membercore, merge_id: UUID) -> Merge:
    try:
        merge: object = app.repository.get(merge_id)
    except AggregateNotFoundError:
        raise MergeNotFound(merge_id) from None
    if not isinstance(merge, Merge):
        raise MergeNotFound(merge_id)
    return merge


def undo_merge(app: Membercore, merge_id: UUID, ctx: CommandContext) -> MergeResult:
    """Reverse a merge exactly: what it moved goes back; later changes of the survivor stay."""

    def attempt(first: bool) -> MergeResult:
        at = app.clock()
        merge = load_merge(app, merge_id)
        if merge.undone:
            raise MergeNotUndoable(f"merge {merge_id} was already undone")
        survivor = load_customer(app, merge.survivor_id)
        source = load_customer(app, merge.source_id)
        undo_plan = plan_undo(survivor, merge_id)
        changed: list[Aggregate] = []
        for participant in participants():
            mine = [m for m in merge.moves if m.kind.startswith(participant.kind)]
            changed.extend(participant.undo(app, merge, mine, undo_plan, at))
        give_back(survivor, merge_id, undo_plan, actor=ctx.actor, at=at)
        shared = {m.aggregate_id for m in merge.moves if m.kind == IdentityClaims.shared_kind}
        kept_shared = tuple(i for i in source.identities if app.claim_id(i) in shared)
        restore(source, merge_id, (*undo_plan.identities, *kept_shared), actor=ctx.actor, at=at)
        merge.undo(actor=ctx.actor, at=at)
        result = MergeResult(merge_id, survivor.id, source.id, merge.moves, 0, 200)
        recordings = app.save(
            merge, survivor, source, *changed, side_effect=ctx.complete(200, result.body())
        )
        position = recordings[-1].notification.id
        return MergeResult(
            merge_id, survivor.id, source.id, merge.moves, position, 200, ctx.idempotent
        )

    return app.retrying(attempt)
