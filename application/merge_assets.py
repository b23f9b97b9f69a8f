"""Merge participants for the loyalty assets: points accounts, level memberships, benefits.

Points: every account of the source (one per point type of the program; opened if need be, and
closed while merged) sends what its lots still have free, and its debt, to the survivor's account
of the same type, as lots with their
original dates (``PointsAccount.TransferredOut``/``TransferredIn``, transfer id
``merge:<merge_id>``). Undo sends back what is still left of exactly those lots, and of that
debt; what the survivor spent of them meanwhile stays spent. Held points stay where the hold was
made. Points the survivor earns after the merge stay with the survivor (the orders name it).

Levels: the source's qualifying entries count again on the survivor's membership of each group
(entry ids ``merge:<merge_id>:<n>``), effective at their original times, so the survivor may
upgrade at once. Undo counts them back out (``unmerge:<merge_id>:<n>``), which re-runs the
assessment like a refund.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from application.app import Membercore
from application.levels import load_membership, zone
from application.program import loyalty_rules
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.level_membership import LevelMembership
from domain.merge import AssetMove, Merge, MergePlan, UndoPlan
from domain.order import Order
from domain.points_account import PointsAccount


def _account(app: Membercore, account_id: UUID) -> PointsAccount | None:
    try:
        account: PointsAccount = app.repository.get(account_id)
    except AggregateNotFoundError:
        return None
    return account


def _account_of(app: Membercore, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
    account = _account(app, PointsAccount.id_for(customer_id, point_type))
    return account or PointsAccount.open(customer_id, point_type, at=at)


def routed_orders(app: Membercore, merge: Merge, undo_plan: UndoPlan) -> list[Order]:
    """Orders placed for the survivor after the merge through an identity the undo gives back
    to the source, found through the survivor's open points lots (what is spent is spent)."""
    claims = {app.claim_id(i) for i in undo_plan.identities}
    if not claims:
        return []
    found: dict[UUID, Order] = {}
    for point_type in loyalty_rules(app).point_types:
        holder = _account(app, PointsAccount.id_for(merge.survivor_id, point_type))
        for channel, order_id in holder.lot_orders.values() if holder else ():
            order = _order(app, Order.id_for(channel, order_id))
            if (
                order is not None
                and order.customer_id == merge.survivor_id
                and order.identity_claim_id in claims
            ):
                found[order.id] = order
    return list(found.values())


def _order(app: Membercore, order_id: UUID) -> Order | None:
    try:
        order: Order = app.repository.get(order_id)
    except AggregateNotFoundError:
        return None
    return order


class PointsAccounts:
    kind = "points_account"
    arrived_kind = "points_account_in"

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
        for point_type in loyalty_rules(app).point_types:
            # Every account of the source is written (opened if need be) and closed, so an
            # order for the source racing the merge conflicts with it instead of earning on a
            # merged-away account; its retry follows the merge.
            giving = _account_of(app, source.id, point_type, at)
            taking = _account_of(app, survivor.id, point_type, at)
            giving.transfer_out(f"merge:{merge_id}", taking, at=at, closes=True)
            out.append((giving, AssetMove(self.kind, giving.id)))
            if taking.pending_events:
                out.append((taking, AssetMove(self.arrived_kind, taking.id)))
        return out

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        transfer = f"merge:{merge.id}"
        routed = {(o.channel, o.order_id) for o in routed_orders(app, merge, undo_plan)}
        out: list[Aggregate] = []
        for move in moves:
            if move.kind != self.kind:
                continue
            giving_back = _account(app, move.aggregate_id)
            if giving_back is None:
                continue
            holder = _account_of(app, merge.survivor_id, giving_back.point_type, at)
            holder.transfer_out(
                f"unmerge:{merge.id}",
                giving_back,
                at=at,
                lot_ids=(
                    *holder.arrived.get(transfer, ()),
                    *(lot for lot, order in holder.lot_orders.items() if order in routed),
                ),
                debt=holder.arrived_debt.get(transfer, 0),
                reopens=True,
            )
            out.extend((holder, giving_back))
        return out


def _entries(membership: LevelMembership) -> list[tuple[datetime, int]]:
    return [(t, v) for t, v in membership.entries if v]


class LevelMemberships:
    kind = "level_membership"

    def move(
        self,
        app: Membercore,
        source: Customer,
        survivor: Customer,
        plan: MergePlan,
        merge_id: UUID,
        at: datetime,
    ) -> list[tuple[Aggregate, AssetMove]]:
        rules = loyalty_rules(app)
        tz = zone(rules)
        out: list[tuple[Aggregate, AssetMove]] = []
        for group in rules.level_groups.values():
            giving = load_membership(app, source.id, group.code)
            if giving is None or not _entries(giving):
                continue
            taking = load_membership(app, survivor.id, group.code) or LevelMembership.open(
                survivor.id, group, at=at, program_version=rules.version
            )
            for n, (effective_at, value) in enumerate(_entries(giving)):
                taking.qualify(
                    group,
                    tz,
                    entry_id=f"merge:{merge_id}:{n}",
                    value=value,
                    effective_at=effective_at,
                    at=at,
                    program_version=rules.version,
                )
            out.append((taking, AssetMove(self.kind, taking.id)))
        return out

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        rules = loyalty_rules(app)
        tz = zone(rules)
        loaded: dict[UUID, LevelMembership] = {}
        for move in moves:
            holder: LevelMembership = app.repository.get(move.aggregate_id)
            group = rules.level_groups.get(holder.group)
            giving = load_membership(app, merge.source_id, holder.group)
            if group is None or giving is None:
                continue
            for n, (effective_at, value) in enumerate(_entries(giving)):
                holder.qualify(
                    group,
                    tz,
                    entry_id=f"unmerge:{merge.id}:{n}",
                    value=-value,
                    effective_at=effective_at,
                    at=at,
                    program_version=rules.version,
                )
            loaded[holder.id] = holder
            loaded[giving.id] = giving
        self._routed_back(app, merge, undo_plan, at, loaded)
        return [m for m in loaded.values() if m.pending_events]

    @staticmethod
    def _routed_back(
        app: Membercore,
        merge: Merge,
        undo_plan: UndoPlan,
        at: datetime,
        memberships: dict[UUID, LevelMembership],
    ) -> None:
        """The qualification of orders routed through the source's identities after the merge
        leaves the survivor and counts for the source again (like their unspent points)."""
        rules = loyalty_rules(app)
        tz = zone(rules)
        for order in routed_orders(app, merge, undo_plan):
            earned = order.earned()
            amounts = {"spend": order.amount - order.refunded_total}
            amounts |= {pt: n - order.points_reversed.get(pt, 0) for pt, n in earned.items()}
            for group in rules.level_groups.values():
                value = amounts.get(group.basis, 0)
                if not value:
                    continue
                for customer_id, sign, tag in (
                    (merge.survivor_id, -1, "unmerge-out"),
                    (merge.source_id, 1, "unmerge-in"),
                ):
                    mid = LevelMembership.id_for(customer_id, group.code)
                    if mid not in memberships:
                        memberships[mid] = load_membership(
                            app, customer_id, group.code
                        ) or LevelMembership.open(
                            customer_id, group, at=at, program_version=rules.version
                        )
                    memberships[mid].qualify(
                        group,
                        tz,
                        entry_id=f"{tag}:{merge.id}:{order.id}",
                        value=sign * value,
                        effective_at=order.placed_at,
                        at=at,
                        program_version=rules.version,
                    )


def _benefits(app: Membercore, customer_id: UUID) -> BenefitAccount | None:
    try:
        account: BenefitAccount = app.repository.get(BenefitAccount.id_for(customer_id))
    except AggregateNotFoundError:
        return None
    return account


class BenefitGrants:
    """The source's direct grants still in force are granted to the survivor too (same code,
    start and end; grant id ``<grant_id>@merge:<merge_id>``); undo revokes those copies. The
    source's redemptions stay its own: quota use is per customer."""

    kind = "benefit_account"

    def move(
        self,
        app: Membercore,
        source: Customer,
        survivor: Customer,
        plan: MergePlan,
        merge_id: UUID,
        at: datetime,
    ) -> list[tuple[Aggregate, AssetMove]]:
        giving = _benefits(app, source.id)
        if giving is None:
            return []
        in_force = [g for g in giving.grants.values() if g.ends is None or g.ends > at]
        if not in_force:
            return []
        taking = _benefits(app, survivor.id) or BenefitAccount.open(survivor.id, at=at)
        for g in in_force:
            taking.grant(
                f"{g.grant_id}@merge:{merge_id}",
                g.code,
                valid_from=g.valid_from,
                until=g.until if g.revoked_at is None else g.ends,
                reason=f"merge of {source.id}",
                actor="merge",
                at=at,
            )
        return [(taking, AssetMove(self.kind, taking.id))]

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        out: list[Aggregate] = []
        suffix = f"@merge:{merge.id}"
        for move in moves:
            holder: BenefitAccount = app.repository.get(move.aggregate_id)
            for grant_id in [g for g in holder.grants if g.endswith(suffix)]:
                holder.revoke(grant_id, reason=f"undo of merge {merge.id}", actor="merge", at=at)
            if holder.pending_events:
                out.append(holder)
        return out


ASSET_PARTICIPANTS = (PointsAccounts(), LevelMemberships(), BenefitGrants())
