"""What an undo gives back: exactly what the merge moved (its ``AssetMove`` entries), and what
orders routed through an identity it returns brought the survivor since (docs/identity.md).

Pure: the application reads the merge's aggregates (``Holdings``), then the orders
``undo_order_ids`` names, and ``decide_undo`` changes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from domain.customer import Customer
from domain.level_membership import Counted, LevelMembership
from domain.loyalty import LoyaltyRules
from domain.merge import AssetMove, Merge, UndoPlan, give_back, restore
from domain.merge_moves import (
    BENEFITS,
    CLAIM,
    CLAIM_SHARED,
    LEVELS,
    NO_LIMIT,
    POINTS,
    Holdings,
    order_ids_named,
    order_key,
    orders_named,
    origin,
    refund_keys,
)
from domain.order import Order
from domain.values import Identity


def decide_undo(
    merge: Merge,
    plan: UndoPlan,
    survivor: Customer,
    source: Customer,
    rules: LoyaltyRules,
    held: Holdings,
    *,
    actor: str,
    at: datetime,
) -> list[Aggregate]:
    """Undo ``merge`` by ``plan`` (``plan_undo``): the survivor gives back what it took, the
    source is restored, and every asset moved goes back. Returns what changed, the merge first."""
    changed = undo_moves(merge, plan, rules, held, at)
    give_back(survivor, merge.id, plan, actor=actor, at=at)
    identities = (*plan.identities, *kept_shared(merge, source, held))
    restore(source, merge.id, identities, actor=actor, at=at)
    merge.undo(actor=actor, at=at)
    return [merge, survivor, source, *changed]


def undo_order_ids(merge: Merge, plan: UndoPlan, rules: LoyaltyRules, held: Holdings) -> set[UUID]:
    """The orders an undo must read, once its other aggregates are read: those that may have
    been routed through an identity it gives back (on the survivor's open lots and its entries
    since the merge), and those the moved entries carry (their refunds follow the merge)."""
    wanted = set(_routed_candidates(merge, plan, rules, held))
    for move in merge.moves:
        holder = held.memberships.get(move.aggregate_id) if move.kind == LEVELS else None
        if holder is not None:
            giving = held.membership(merge.source_id, holder.group)
            wanted |= set(order_ids_named(_carried(merge, holder, giving)))
    return wanted


def _since(merge: Merge, membership: LevelMembership | None) -> list[str]:
    counted = membership.counted.items() if membership else ()
    return [origin(e) for e, c in counted if c.recorded_at >= merge.created_on]


def _carried(merge: Merge, holder: LevelMembership, giving: LevelMembership | None) -> set[str]:
    """The entries the merge's own entries on ``holder`` carry (their origins). Merges recorded
    while merges still copied (``merge:<id>:<n>``, no ``merged-out`` on the source) carry
    every entry the source kept."""
    prefix = f"merge:{merge.id}:"
    moved = [e[len(prefix) :] for e in holder.counted if e.startswith(prefix)]
    if not moved:
        return set()
    counted = giving.counted if giving else {}
    copied = not any(e.startswith(f"merged-out:{merge.id}:") for e in counted)
    return {origin(e) for e in (counted if copied else moved)}


def _routed_candidates(
    merge: Merge, plan: UndoPlan, rules: LoyaltyRules, held: Holdings
) -> list[UUID]:
    """The orders that may be routed: on the survivor's open points lots (what is spent is
    spent) and named by the entries its memberships counted since the merge."""
    if not plan.identities:
        return []
    wanted: dict[UUID, None] = {}
    for point_type in rules.point_types:
        account = held.account(merge.survivor_id, point_type)
        for channel, order_id in account.lot_orders.values() if account else ():
            wanted[Order.id_for(channel, order_id)] = None
    for group in rules.level_groups:
        since = _since(merge, held.membership(merge.survivor_id, group))
        wanted |= dict.fromkeys(order_ids_named(since))
    return list(wanted)


def routed_orders(merge: Merge, plan: UndoPlan, rules: LoyaltyRules, held: Holdings) -> list[Order]:
    """Orders placed for the survivor after the merge through an identity the undo gives back
    to the source (read into ``held.orders`` after ``undo_order_ids``)."""
    claims = {held.claim_ids[i] for i in plan.identities}
    found = (held.orders.get(o) for o in _routed_candidates(merge, plan, rules, held))
    return [
        o
        for o in found
        if o is not None and o.customer_id == merge.survivor_id and o.identity_claim_id in claims
    ]


def undo_moves(
    merge: Merge, plan: UndoPlan, rules: LoyaltyRules, held: Holdings, at: datetime
) -> list[Aggregate]:
    """What the undo changes to give back exactly what the merge moved (and the routed
    orders' share), in the order the participants run."""
    # Found once, before anything changes: every participant gives back the same orders.
    routed = routed_orders(merge, plan, rules, held)
    mine = {kind: [m for m in merge.moves if m.kind.startswith(kind)] for kind in _KINDS}
    return [
        *_claims_back(merge, mine[CLAIM], plan, held, at),
        *_points_back(merge, mine[POINTS], routed, held, at),
        *_levels_back(merge, mine[LEVELS], routed, rules, held, at),
        *_benefits_back(merge, mine[BENEFITS], held, at),
        *_orders_back(merge, routed, at),
    ]


_KINDS = (CLAIM, POINTS, LEVELS, BENEFITS)


def kept_shared(merge: Merge, source: Customer, held: Holdings) -> tuple[Identity, ...]:
    """The source's identities whose shared claim it let go in the merge: held again."""
    shared = {m.aggregate_id for m in merge.moves if m.kind == CLAIM_SHARED}
    return tuple(i for i in source.identities if held.claim_ids[i] in shared)


def _claims_back(
    merge: Merge, moves: Sequence[AssetMove], plan: UndoPlan, held: Holdings, at: datetime
) -> list[Aggregate]:
    returned = {held.claim_ids[i] for i in plan.identities}
    out: list[Aggregate] = []
    for move in moves:
        claim = held.claims[move.aggregate_id]
        if move.kind == CLAIM_SHARED:
            if claim.add_holder(merge.source_id, limit=NO_LIMIT, at=at):
                out.append(claim)
        elif claim.id in returned and claim.transfer(
            merge.survivor_id, merge.source_id, merge_id=merge.id, at=at
        ):
            out.append(claim)
    return out


def _points_back(
    merge: Merge, moves: Sequence[AssetMove], routed: Sequence[Order], held: Holdings, at: datetime
) -> list[Aggregate]:
    transfer = f"merge:{merge.id}"
    routed_keys = {(o.channel, o.order_id) for o in routed}
    out: list[Aggregate] = []
    for move in moves:
        if move.kind != POINTS:
            continue
        giving_back = held.accounts.get(move.aggregate_id)
        if giving_back is None:
            continue
        holder = held.account_or_open(merge.survivor_id, giving_back.point_type, at)
        holder.transfer_out(
            f"unmerge:{merge.id}",
            giving_back,
            at=at,
            lot_ids=(
                *holder.arrived.get(transfer, ()),
                *(lot for lot, order in holder.lot_orders.items() if order in routed_keys),
            ),
            debt=holder.arrived_debt.get(transfer, 0),
            reopens=True,
        )
        out.extend((holder, giving_back))
    return out


def _levels_back(
    merge: Merge,
    moves: Sequence[AssetMove],
    routed: Sequence[Order],
    rules: LoyaltyRules,
    held: Holdings,
    at: datetime,
) -> list[Aggregate]:
    """What is left of what the merge moved goes back: each moved entry, net of every refund
    of the moved orders that followed the merge onto the survivor since; then the routed
    orders' qualification (re-running the assessment like a refund)."""
    tz = ZoneInfo(rules.timezone)
    touched: dict[UUID, LevelMembership] = {}
    for move in moves:
        if move.kind != LEVELS:
            continue
        holder = held.memberships[move.aggregate_id]
        group = rules.level_groups.get(holder.group)
        if group is None:
            continue
        giving = held.membership_or_open(merge.source_id, group, rules, at)
        left = _left(merge, holder, giving, held.orders)
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
            [(f"returned:{merge.id}:{e}", c.value, c.effective_at) for e, c, back in left if back],
            at=at,
            program_version=rules.version,
            reason="merge",
        )
        touched[holder.id] = holder
        touched[giving.id] = giving
    _routed_back(merge, routed, rules, held, at, touched)
    return [m for m in touched.values() if m.pending_events]


def _left(
    merge: Merge, holder: LevelMembership, giving: LevelMembership, orders: dict[UUID, Order]
) -> list[tuple[str, Counted, bool]]:
    """(entry id, the entry, goes to the source) for each entry the survivor gives up: the
    merge's own entries, then the refunds of the orders they carry that followed the merge
    onto the survivor (netted: they go to the source too).

    Merges recorded while merges still copied give up their entries and send the source only
    the refunds' netting."""
    prefix = f"merge:{merge.id}:"
    moved = [e for e in holder.counted if e.startswith(prefix)]
    if not moved:
        return []
    copied = not any(e.startswith(f"merged-out:{merge.id}:") for e in giving.counted)
    refunds: set[str] = set()
    for order in orders_named(_carried(merge, holder, giving), orders).values():
        refunds |= refund_keys(order)
    followed = [
        e
        for e, c in holder.counted.items()
        if not e.startswith(prefix) and c.recorded_at >= merge.created_on and origin(e) in refunds
    ]
    left = [(e[len(prefix) :], holder.counted[e], not copied) for e in moved]
    left += [(e, holder.counted[e], True) for e in followed]
    return [(e, c, back) for e, c, back in left if c.value]


def _routed_back(
    merge: Merge,
    routed: Sequence[Order],
    rules: LoyaltyRules,
    held: Holdings,
    at: datetime,
    touched: dict[UUID, LevelMembership],
) -> None:
    """The qualification of the routed orders leaves the survivor and counts for the source
    again (like their unspent points): what each counted on the survivor, net of its refunds."""
    tz = ZoneInfo(rules.timezone)
    for order in routed:
        keys = {order_key(order)} | refund_keys(order)
        for group in rules.level_groups.values():
            holder = held.membership(merge.survivor_id, group.code)
            if holder is None:
                continue
            touched[holder.id] = holder
            value = sum(c.value for e, c in holder.counted.items() if origin(e) in keys)
            if not value:
                continue
            for customer_id, sign, tag in (
                (merge.survivor_id, -1, "unmerge-out"),
                (merge.source_id, 1, "unmerge-in"),
            ):
                membership = held.membership_or_open(customer_id, group, rules, at)
                touched[membership.id] = membership
                membership.qualify(
                    group,
                    tz,
                    entry_id=f"{tag}:{merge.id}:{order.id}",
                    value=sign * value,
                    effective_at=order.placed_at,
                    at=at,
                    program_version=rules.version,
                    reason="merge",
                )


def _benefits_back(
    merge: Merge, moves: Sequence[AssetMove], held: Holdings, at: datetime
) -> list[Aggregate]:
    out: list[Aggregate] = []
    suffix = f"@merge:{merge.id}"
    for move in moves:
        holder = held.benefits[move.aggregate_id]
        for grant_id in [g for g in holder.grants if g.endswith(suffix)]:
            holder.revoke(grant_id, reason=f"undo of merge {merge.id}", actor="merge", at=at)
        if holder.pending_events:
            out.append(holder)
    return out


def _orders_back(merge: Merge, routed: Sequence[Order], at: datetime) -> list[Aggregate]:
    """Each routed order is reassigned to the source, so a later refund reverses there."""
    for order in routed:
        order.reassign(merge.source_id, reason=f"undo:{merge.id}", at=at)
    return list(routed)
