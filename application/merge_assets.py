"""Merge participants for the loyalty assets: points accounts, level memberships, benefits.

Points: every account of the source (one per point type of the program; opened if need be, and
closed while merged) sends what its lots still have free, and its debt, to the survivor's account
of the same type, as lots with their original dates (``PointsAccount.TransferredOut``/
``TransferredIn``, transfer id ``merge:<merge_id>``). Undo sends back what is still left of
exactly those lots, and of that debt; what the survivor spent of them meanwhile stays spent. The
source's open holds are released first (a merged-away account takes no capture), so held points
move too. Points the survivor earns after the merge stay with the survivor (the orders name it).

Levels: the source's qualifying entries move to the survivor's membership of each group the
survivor sits on once the merge is done (``merge:<merge_id>:<entry id>`` there, the negation
``merged-out:...`` on the source), effective at their original times, so the survivor may
upgrade at once and the source drops to nothing. Undo gives back what is left of them: the moved
entries, net of the refunds of the orders they carry that followed the merge onto the survivor
(``unmerge:...`` on the survivor, ``returned:...`` on the source), and re-runs the assessment
like a refund. A group the survivor will not sit on stays with the source (docs/identity.md).

Routed orders (placed for the survivor after the merge through an identity the undo gives back):
their points and qualification go back to the source, and so does the order itself
(``Order.Reassigned``, reason ``undo:<merge_id>``), so its later refunds reverse there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from application.app import Membercore
from application.levels import load_membership, zone
from application.program import loyalty_rules
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.level_membership import Counted, LevelMembership
from domain.loyalty import LoyaltyRules
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
    to the source: found through the survivor's open points lots (what is spent is spent) and
    through the qualifying entries its level memberships counted since the merge."""
    claims = {app.claim_id(i) for i in undo_plan.identities}
    if not claims:
        return []
    rules = loyalty_rules(app)
    candidates: dict[UUID, Order | None] = {}
    for point_type in rules.point_types:
        holder = _account(app, PointsAccount.id_for(merge.survivor_id, point_type))
        for channel, order_id in holder.lot_orders.values() if holder else ():
            order_uuid = Order.id_for(channel, order_id)
            if order_uuid not in candidates:
                candidates[order_uuid] = _order(app, order_uuid)
    for group in rules.level_groups:
        membership = load_membership(app, merge.survivor_id, group)
        since = [
            origin(e)
            for e, c in (membership.counted.items() if membership else ())
            if c.recorded_at >= merge.created_on
        ]
        candidates |= {o.id: o for o in orders_named(app, since).values()}
    return [
        o
        for o in candidates.values()
        if o is not None and o.customer_id == merge.survivor_id and o.identity_claim_id in claims
    ]


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


# Tags of the entries merges count (``<tag>:<merge id>:<entry id>``), each carrying on the
# entry it moves: ``merge`` on the survivor and ``merged-out`` on the source when merging,
# ``unmerge`` on the survivor and ``returned`` on the source when undoing.
TRANSFER_TAGS = ("merge", "merged-out", "returned", "unmerge")
UUID_LEN = 36


def origin(entry_id: str) -> str:
    """The entry a transfer entry carries on, through any number of merges and undos: an
    order's ``order:<channel>:<order id>``, a refund's ``refund:...``, or another entry."""
    while True:
        tag, _, rest = entry_id.partition(":")
        if tag not in TRANSFER_TAGS or len(rest) <= UUID_LEN or rest[UUID_LEN] != ":":
            return entry_id
        entry_id = rest[UUID_LEN + 1 :]


def orders_named(app: Membercore, entry_ids: Iterable[str]) -> dict[str, Order]:
    """The orders among ``entry_ids`` (``order:<channel>:<order id>``, as orders count them),
    by entry id. A channel may hold ``:``, so every split is tried: only a real order answers."""
    candidates: dict[UUID, str] = {}
    for entry_id in entry_ids:
        tag, _, rest = entry_id.partition(":")
        if tag != "order":
            continue
        for n, ch in enumerate(rest):
            if ch == ":":
                candidates[Order.id_for(rest[:n], rest[n + 1 :])] = entry_id
    found: dict[str, Order] = {}
    for order_uuid, order in app.get_many(candidates).items():  # one query on PostgreSQL
        entry_id = candidates[order_uuid]
        if isinstance(order, Order) and order_key(order) == entry_id:
            found[entry_id] = order
    return found


def order_key(order: Order) -> str:
    """The entry id an order counted under (its lot id, application/orders.py)."""
    return f"order:{order.channel}:{order.order_id}"


def refund_keys(order: Order) -> set[str]:
    """The entry ids the refunds of ``order`` counted under (application/orders.py)."""
    return {f"refund:{order.channel}:{order.order_id}:{r}" for r in order.refunds}


def _group_moves(rules: LoyaltyRules, group: str, survivor: Customer, plan: MergePlan) -> bool:
    """A group's qualification moves when the survivor sits on the ladder once the merge is
    done (the source's roles come along first), as an order counts only on the ladders of
    roles its buyer holds. Otherwise it stays with the source, counting for nobody while
    merged away, and nothing of it is there to undo."""
    return rules.on_group(group, (*survivor.roles, *plan.roles))


class LevelMemberships:
    kind = "level_membership"
    source_kind = "level_membership_out"

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
            if giving is None or not _group_moves(rules, group.code, survivor, plan):
                continue
            entries = [(e, c) for e, c in giving.counted.items() if c.value]
            if not entries:
                continue
            taking = load_membership(app, survivor.id, group.code) or LevelMembership.open(
                survivor.id, group, at=at, program_version=rules.version
            )
            # Moved, not copied: the source's value drops to nothing (its level with it), so
            # nothing stale shows on the merged-away id and the undo gives back what is left.
            # Each side moves its level once, by the net of what moved.
            for holder, tag, sign in ((taking, "merge", 1), (giving, "merged-out", -1)):
                holder.qualify_all(
                    group,
                    tz,
                    [(f"{tag}:{merge_id}:{e}", sign * c.value, c.effective_at) for e, c in entries],
                    at=at,
                    program_version=rules.version,
                    reason="merge",
                )
            out.append((taking, AssetMove(self.kind, taking.id)))
            out.append((giving, AssetMove(self.source_kind, giving.id)))
        return out

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        """What is left of what the merge moved goes back: each moved entry, net of every
        refund of the moved orders that followed the merge onto the survivor since."""
        rules = loyalty_rules(app)
        tz = zone(rules)
        loaded: dict[UUID, LevelMembership] = {}
        for move in moves:
            if move.kind != self.kind:
                continue
            holder: LevelMembership = app.repository.get(move.aggregate_id)
            group = rules.level_groups.get(holder.group)
            if group is None:
                continue
            giving = load_membership(app, merge.source_id, group.code) or LevelMembership.open(
                merge.source_id, group, at=at, program_version=rules.version
            )
            left = self._left(app, merge, holder, giving)
            holder.qualify_all(
                group,
                tz,
                [(f"unmerge:{merge.id}:{e}", -c.value, c.effective_at) for e, c, _ in left],
                at=at,
                program_version=rules.version,
                reason="merge",
            )
            giving.qualify_all(
                group,
                tz,
                [
                    (f"returned:{merge.id}:{e}", c.value, c.effective_at)
                    for e, c, back in left
                    if back
                ],
                at=at,
                program_version=rules.version,
                reason="merge",
            )
            loaded[holder.id] = holder
            loaded[giving.id] = giving
        self._routed_back(app, merge, undo_plan, at, loaded)
        return [m for m in loaded.values() if m.pending_events]

    @staticmethod
    def _left(
        app: Membercore, merge: Merge, holder: LevelMembership, giving: LevelMembership
    ) -> list[tuple[str, Counted, bool]]:
        """(entry id, the entry, goes to the source) for each entry the survivor gives up:
        the merge's own entries, then the refunds of the orders they carry that followed the
        merge onto the survivor (netted: they go to the source too).

        Merges recorded while merges still copied (``merge:<id>:<n>``; the source kept its
        entries) give up their entries and send the source only the refunds' netting."""
        prefix = f"merge:{merge.id}:"
        moved = [e for e in holder.counted if e.startswith(prefix)]
        if not moved:
            return []
        copied = not any(e.startswith(f"merged-out:{merge.id}:") for e in giving.counted)
        carried = list(giving.counted) if copied else [e[len(prefix) :] for e in moved]
        refunds: set[str] = set()
        for order in orders_named(app, {origin(e) for e in carried}).values():
            refunds |= refund_keys(order)
        followed = [
            e
            for e, c in holder.counted.items()
            if not e.startswith(prefix)
            and c.recorded_at >= merge.created_on
            and origin(e) in refunds
        ]
        left = [(e[len(prefix) :], holder.counted[e], not copied) for e in moved]
        left += [(e, holder.counted[e], True) for e in followed]
        return [(e, c, back) for e, c, back in left if c.value]

    @staticmethod
    def _routed_back(
        app: Membercore,
        merge: Merge,
        undo_plan: UndoPlan,
        at: datetime,
        memberships: dict[UUID, LevelMembership],
    ) -> None:
        """The qualification of orders routed through the source's identities after the merge
        leaves the survivor and counts for the source again (like their unspent points): what
        each counted on the survivor, net of its refunds."""
        rules = loyalty_rules(app)
        tz = zone(rules)
        for order in routed_orders(app, merge, undo_plan):
            keys = {order_key(order)} | refund_keys(order)
            for group in rules.level_groups.values():
                mid = LevelMembership.id_for(merge.survivor_id, group.code)
                holder = memberships.get(mid) or load_membership(app, merge.survivor_id, group.code)
                if holder is None:
                    continue
                memberships[mid] = holder
                value = sum(c.value for e, c in holder.counted.items() if origin(e) in keys)
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
                        reason="merge",
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


class RoutedOrders:
    """Orders move with nothing on merge (they keep naming the customer they were placed for;
    refunds follow the merge). On undo, each routed order is reassigned to the source, which
    gets its points and qualification back (above): a later refund then reverses there, not on
    the survivor."""

    kind = "order"

    def move(
        self,
        app: Membercore,
        source: Customer,
        survivor: Customer,
        plan: MergePlan,
        merge_id: UUID,
        at: datetime,
    ) -> list[tuple[Aggregate, AssetMove]]:
        return []

    def undo(
        self,
        app: Membercore,
        merge: Merge,
        moves: Sequence[AssetMove],
        undo_plan: UndoPlan,
        at: datetime,
    ) -> list[Aggregate]:
        out: list[Aggregate] = []
        for order in routed_orders(app, merge, undo_plan):
            order.reassign(merge.source_id, reason=f"undo:{merge.id}", at=at)
            out.append(order)
        return out


ASSET_PARTICIPANTS = (PointsAccounts(), LevelMemberships(), BenefitGrants(), RoutedOrders())
