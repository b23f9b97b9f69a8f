"""What a merge moves of the source's assets, and what its undo gives back: pure decisions over
the aggregates the application read in one go (``Holdings``).

Identity claims: the source's pass to the survivor (a value both held: the source lets go), and
back on undo.

Points: every account of the source (one per point type of the program; opened if need be, and
closed while merged) sends what its lots still have free, and its debt, to the survivor's account
of the same type, as lots with their original dates (transfer id ``merge:<merge_id>``). Undo
sends back what is still left of exactly those lots, and of that debt; what the survivor spent of
them meanwhile stays spent. Points the survivor earns after the merge stay with the survivor.

Levels: the source's qualifying entries move to the survivor's membership of each group the
survivor sits on once the merge is done (``merge:<merge_id>:<entry id>`` there, the negation
``merged-out:...`` on the source), effective at their original times. Undo gives back what is
left of them: the moved entries, net of the refunds of the orders they carry that followed the
merge onto the survivor (``unmerge:...`` on the survivor, ``returned:...`` on the source).

Benefits: the source's grants in force are granted to the survivor too; undo revokes the copies.

Routed orders (placed for the survivor after the merge through an identity the undo gives back):
their points, qualification and the order itself (``Order.Reassigned``) go back to the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from domain.agent_network import AgentNetwork
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.loyalty import LevelGroupRules, LoyaltyRules
from domain.merge import AssetMove, Merge, MergePlan, absorb, merge_away, without_parent_agent
from domain.order import Order
from domain.points_account import PointsAccount
from domain.values import Identity

# Kinds of ``AssetMove`` a merge records, by participant.
CLAIM, CLAIM_SHARED = "identity_claim", "identity_claim_shared"
POINTS, POINTS_IN = "points_account", "points_account_in"
LEVELS, LEVELS_OUT = "level_membership", "level_membership_out"
BENEFITS = "benefit_account"
# A shared value re-added on undo may exceed the program's max_customers: it was held before.
NO_LIMIT = 1 << 30

# Tags of the entries merges count (``<tag>:<merge id>:<entry id>``), each carrying on the
# entry it moves: ``merge`` on the survivor and ``merged-out`` on the source when merging,
# ``unmerge`` on the survivor and ``returned`` on the source when undoing.
TRANSFER_TAGS = ("merge", "merged-out", "returned", "unmerge")
UUID_LEN = 36


@dataclass
class Holdings:
    """The aggregates a merge or its undo may change, read together (missing ones absent).
    ``claim_ids``: the claim id of each identity involved (a keyed hash the tenant computes).
    Accounts and memberships opened by a decision are added, so each is changed once."""

    claim_ids: dict[Identity, UUID]
    claims: dict[UUID, IdentityClaim] = field(default_factory=dict)
    accounts: dict[UUID, PointsAccount] = field(default_factory=dict)
    memberships: dict[UUID, LevelMembership] = field(default_factory=dict)
    benefits: dict[UUID, BenefitAccount] = field(default_factory=dict)
    orders: dict[UUID, Order] = field(default_factory=dict)

    def account(self, customer_id: UUID, point_type: str) -> PointsAccount | None:
        return self.accounts.get(PointsAccount.id_for(customer_id, point_type))

    def account_or_open(self, customer_id: UUID, point_type: str, at: datetime) -> PointsAccount:
        account = self.account(customer_id, point_type)
        if account is None:
            account = PointsAccount.open(customer_id, point_type, at=at)
            self.accounts[account.id] = account
        return account

    def membership(self, customer_id: UUID, group: str) -> LevelMembership | None:
        return self.memberships.get(LevelMembership.id_for(customer_id, group))

    def membership_or_open(
        self, customer_id: UUID, group: LevelGroupRules, rules: LoyaltyRules, at: datetime
    ) -> LevelMembership:
        membership = self.membership(customer_id, group.code)
        if membership is None:
            membership = LevelMembership.open(
                customer_id, group, at=at, program_version=rules.version
            )
            self.memberships[membership.id] = membership
        return membership

    def benefit_account(self, customer_id: UUID) -> BenefitAccount | None:
        return self.benefits.get(BenefitAccount.id_for(customer_id))


# -- merge ----------------------------------------------------------------------------------------


def decide_merge(
    survivor: Customer,
    source: Customer,
    plan: MergePlan,
    merge_id: UUID,
    rules: LoyaltyRules,
    held: Holdings,
    *,
    reason: str,
    actor: str,
    at: datetime,
    network: AgentNetwork | None = None,
    closes_cycle: bool = False,
) -> tuple[Merge, list[Aggregate]]:
    """Merge ``source`` into ``survivor`` as ``merge_id``: the survivor absorbs the plan, the
    source is merged away, every asset moves, and the ``Merge`` records the moves. A parent
    agent the plan gives is taken on the tenant's ``network`` (read before the chain that
    found whether it ``closes_cycle``; then it is not taken). Returns the ``Merge`` and every
    aggregate changed, in the order they are saved."""
    taken: list[Aggregate] = []
    parent = plan.parent_agent_id
    if parent is not None and (network is None or closes_cycle):
        plan = without_parent_agent(plan)
    elif parent is not None and network is not None:
        network.reparent(survivor.id, parent, at=at)
        taken.append(network)
    moved = merge_moves(survivor, source, plan, merge_id, rules, held, at)
    absorb(survivor, source.id, merge_id, plan, actor=actor, at=at)
    merge_away(source, survivor.id, merge_id, actor=actor, at=at)
    merge = Merge.record(
        merge_id=merge_id,
        survivor_id=survivor.id,
        source_id=source.id,
        reason=reason,
        moves=[move for _, move in moved],
        actor=actor,
        at=at,
    )
    return merge, [survivor, source, merge, *taken, *(aggregate for aggregate, _ in moved)]


def merge_moves(
    survivor: Customer,
    source: Customer,
    plan: MergePlan,
    merge_id: UUID,
    rules: LoyaltyRules,
    held: Holdings,
    at: datetime,
) -> list[tuple[Aggregate, AssetMove]]:
    """Every asset of the source moved to the survivor: the aggregates changed, each with the
    ``AssetMove`` the ``Merge`` records so that its undo can reverse it."""
    return [
        *_claims_move(survivor, source, merge_id, held, at),
        *_points_move(survivor, source, merge_id, rules, held, at),
        *_levels_move(survivor, source, plan, merge_id, rules, held, at),
        *_benefits_move(survivor, source, merge_id, held, at),
    ]


def _claims_move(
    survivor: Customer, source: Customer, merge_id: UUID, held: Holdings, at: datetime
) -> list[tuple[Aggregate, AssetMove]]:
    out: list[tuple[Aggregate, AssetMove]] = []
    for identity in source.identities:
        claim = held.claims.get(held.claim_ids[identity])
        if claim is None:
            continue
        if survivor.id in claim.holders:  # a shared value both held: the source lets go
            claim.remove_holder(source.id, at=at)
            out.append((claim, AssetMove(CLAIM_SHARED, claim.id)))
        elif claim.transfer(source.id, survivor.id, merge_id=merge_id, at=at):
            out.append((claim, AssetMove(CLAIM, claim.id)))
    return out


def _points_move(
    survivor: Customer,
    source: Customer,
    merge_id: UUID,
    rules: LoyaltyRules,
    held: Holdings,
    at: datetime,
) -> list[tuple[Aggregate, AssetMove]]:
    out: list[tuple[Aggregate, AssetMove]] = []
    for point_type in rules.point_types:
        # Every account of the source is written (opened if need be) and closed, so an order
        # for the source racing the merge conflicts with it instead of earning on a merged-away
        # account; its retry follows the merge.
        giving = held.account_or_open(source.id, point_type, at)
        taking = held.account_or_open(survivor.id, point_type, at)
        giving.transfer_out(f"merge:{merge_id}", taking, at=at, closes=True)
        out.append((giving, AssetMove(POINTS, giving.id)))
        if taking.pending_events:
            out.append((taking, AssetMove(POINTS_IN, taking.id)))
    return out


def _levels_move(
    survivor: Customer,
    source: Customer,
    plan: MergePlan,
    merge_id: UUID,
    rules: LoyaltyRules,
    held: Holdings,
    at: datetime,
) -> list[tuple[Aggregate, AssetMove]]:
    tz = ZoneInfo(rules.timezone)
    out: list[tuple[Aggregate, AssetMove]] = []
    for group in rules.level_groups.values():
        giving = held.membership(source.id, group.code)
        # A group moves when the survivor sits on its ladder once the merge is done (the
        # source's roles come along first), as an order counts only on the ladders of its
        # buyer's roles. Otherwise it stays with the source, counting for nobody while merged
        # away, and nothing of it is there to undo.
        if giving is None or not rules.on_group(group.code, (*survivor.roles, *plan.roles)):
            continue
        entries = [(e, c) for e, c in giving.counted.items() if c.value]
        if not entries:
            continue
        taking = held.membership_or_open(survivor.id, group, rules, at)
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
        out.append((taking, AssetMove(LEVELS, taking.id)))
        out.append((giving, AssetMove(LEVELS_OUT, giving.id)))
    return out


def _benefits_move(
    survivor: Customer, source: Customer, merge_id: UUID, held: Holdings, at: datetime
) -> list[tuple[Aggregate, AssetMove]]:
    """The source's direct grants still in force are granted to the survivor too (same code,
    start and end; grant id ``<grant_id>@merge:<merge_id>``). The source's redemptions stay its
    own: quota use is per customer."""
    giving = held.benefit_account(source.id)
    if giving is None:
        return []
    in_force = [g for g in giving.grants.values() if g.ends is None or g.ends > at]
    if not in_force:
        return []
    taking = held.benefit_account(survivor.id) or BenefitAccount.open(survivor.id, at=at)
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
    return [(taking, AssetMove(BENEFITS, taking.id))]


# -- entries and the orders they name -------------------------------------------------------------


def origin(entry_id: str) -> str:
    """The entry a transfer entry carries on, through any number of merges and undos: an
    order's ``order:<channel>:<order id>``, a refund's ``refund:...``, or another entry."""
    while True:
        tag, _, rest = entry_id.partition(":")
        if tag not in TRANSFER_TAGS or len(rest) <= UUID_LEN or rest[UUID_LEN] != ":":
            return entry_id
        entry_id = rest[UUID_LEN + 1 :]


def order_ids_named(entry_ids: Iterable[str]) -> dict[UUID, str]:
    """The ids of the orders ``entry_ids`` may name (``order:<channel>:<order id>``, as orders
    count them), each with its entry. A channel may hold ``:``, so every split is a candidate:
    only a real order answers (``orders_named``)."""
    candidates: dict[UUID, str] = {}
    for entry_id in entry_ids:
        tag, _, rest = entry_id.partition(":")
        if tag != "order":
            continue
        for n, ch in enumerate(rest):
            if ch == ":":
                candidates[Order.id_for(rest[:n], rest[n + 1 :])] = entry_id
    return candidates


def orders_named(entry_ids: Iterable[str], orders: dict[UUID, Order]) -> dict[str, Order]:
    """The orders among ``entry_ids`` (read into ``orders``), by entry id."""
    found: dict[str, Order] = {}
    for order_uuid, entry_id in order_ids_named(entry_ids).items():
        order = orders.get(order_uuid)
        if order is not None and order_key(order) == entry_id:
            found[entry_id] = order
    return found


def order_key(order: Order) -> str:
    """The entry id an order counted under (its lot id)."""
    return f"order:{order.channel}:{order.order_id}"


def refund_keys(order: Order) -> set[str]:
    """The entry ids the refunds of ``order`` counted under."""
    return {f"refund:{order.channel}:{order.order_id}:{r}" for r in order.refunds}
