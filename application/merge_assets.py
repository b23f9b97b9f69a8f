"""What a merge and its undo read: every aggregate they may change, in one read each (the undo
reads the orders it must reassign in a second, once it knows which), as ``Holdings`` for the
domain to decide on (``domain.merge_moves``, ``domain.merge_undo``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from application.app import Membercore
from application.loaders import many
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.loyalty import LoyaltyRules
from domain.merge import Merge, UndoPlan
from domain.merge_moves import BENEFITS, CLAIM, LEVELS, POINTS, Holdings
from domain.merge_undo import undo_order_ids
from domain.order import Order
from domain.points_account import PointsAccount
from domain.values import Identity

A = TypeVar("A")


def _of(found: dict[UUID, Any], kind: type[A]) -> dict[UUID, A]:
    return {i: a for i, a in found.items() if isinstance(a, kind)}


def _claim_ids(app: Membercore, identities: Iterable[Identity]) -> dict[Identity, UUID]:
    return {i: app.claim_id(i) for i in identities}


def _per_customer(rules: LoyaltyRules, customer_ids: Iterable[UUID]) -> list[UUID]:
    """The ids of each customer's points accounts and level memberships under ``rules``."""
    ids: list[UUID] = []
    for customer_id in customer_ids:
        ids += [PointsAccount.id_for(customer_id, t) for t in rules.point_types]
        ids += [LevelMembership.id_for(customer_id, g) for g in rules.level_groups]
    return ids


def _holdings(found: dict[UUID, Any], claim_ids: dict[Identity, UUID]) -> Holdings:
    return Holdings(
        claim_ids,
        claims=_of(found, IdentityClaim),
        accounts=_of(found, PointsAccount),
        memberships=_of(found, LevelMembership),
        benefits=_of(found, BenefitAccount),
    )


def merge_holdings(
    app: Membercore, survivor: Customer, source: Customer, rules: LoyaltyRules
) -> Holdings:
    """The source's identity claims, both customers' points accounts, level memberships and
    benefit accounts."""
    claim_ids = _claim_ids(app, source.identities)
    pair = (survivor.id, source.id)
    found = many(
        app,
        [
            *claim_ids.values(),
            *_per_customer(rules, pair),
            *(BenefitAccount.id_for(c) for c in pair),
        ],
    )
    return _holdings(found, claim_ids)


def undo_reads(merge: Merge, rules: LoyaltyRules) -> list[UUID]:
    """What an undo reads besides the customers: what the merge moved (claims, accounts,
    memberships, benefit accounts), and both customers' accounts and memberships."""
    moved = [m.aggregate_id for m in merge.moves if m.kind.startswith(_MOVED)]
    return [*moved, *_per_customer(rules, (merge.survivor_id, merge.source_id))]


def undo_holdings(
    app: Membercore,
    found: dict[UUID, Any],
    merge: Merge,
    source: Customer,
    plan: UndoPlan,
    rules: LoyaltyRules,
) -> Holdings:
    """The undo's ``Holdings`` from what ``undo_reads`` found, with the orders it may reassign
    or whose refunds followed the merge, read once it knows which."""
    held = _holdings(found, _claim_ids(app, (*plan.identities, *source.identities)))
    held.orders = _of(many(app, undo_order_ids(merge, plan, rules, held)), Order)
    return held


_MOVED = (CLAIM, POINTS, LEVELS, BENEFITS)
