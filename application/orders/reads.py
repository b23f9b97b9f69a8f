"""What placing or refunding orders reads, in bulk, before the domain decides.

An order is parsed once (its identity normalised, the identity's claim id and the request's
fingerprint computed once), then everything the decision may touch is read in a few queries
for a whole round: the orders and the identity claims, then the buyers (following merges),
then the buyers' points accounts and level memberships.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any
from uuid import UUID

import msgspec

from application.app import Membercore
from application.identities import parse_identity
from application.orders.commands import PlaceOrder, RefundOrder
from application.program import ProgramView
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.order import Order
from domain.ordering import MAX_MERGE_HOPS, Known, OrderRequest
from domain.points_account import PointsAccount
from domain.refunding import RefundRequest


def fingerprint(request: Mapping[str, Any]) -> str:
    canonical = msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def order_request(app: Membercore, cmd: PlaceOrder, view: ProgramView) -> OrderRequest:
    """The order parsed for the domain (``InvalidInput`` for a malformed identity)."""
    identity = parse_identity(*cmd.identity, view.rules, field="identity") if cmd.identity else None
    claim_id = app.claim_id(identity) if identity is not None else None
    # An identity is fingerprinted only as its keyed hash: order events hold no personal data.
    print_ = fingerprint(
        {
            "order_id": cmd.order_id,
            "channel": cmd.channel,
            "customer_id": str(cmd.customer_id) if cmd.customer_id else None,
            "identity": claim_id.hex if claim_id else None,
            "placed_at": cmd.placed_at.isoformat(),
            "amount": cmd.amount,
            "lines": [asdict(ln) for ln in cmd.lines or ()],
            "store_id": cmd.store_id,
            "staff_id": cmd.staff_id,
            "agent_id": cmd.agent_id,
        }
    )
    return OrderRequest(
        order_id=cmd.order_id,
        channel=cmd.channel,
        placed_at=cmd.placed_at,
        amount=cmd.amount,
        lines=tuple(cmd.lines or ()),
        customer_id=cmd.customer_id,
        identity=identity,
        claim_id=claim_id,
        fingerprint=print_,
        store_id=cmd.store_id,
        staff_id=cmd.staff_id,
        agent_id=cmd.agent_id,
    )


def refund_request(cmd: RefundOrder) -> RefundRequest:
    lines = dict(sorted(cmd.lines.items())) if cmd.lines is not None else None
    print_ = fingerprint({"refund_id": cmd.refund_id, "amount": cmd.amount, "lines": lines})
    return RefundRequest(cmd.refund_id, cmd.amount, cmd.lines, print_)


def fetch(app: Membercore, known: Known, ids: Iterable[UUID]) -> None:
    """Read the ids not read yet, in one query."""
    wanted = [i for i in dict.fromkeys(ids) if not known.read(i)]
    if not wanted:
        return
    got = app.get_many(wanted)
    known.found.update(got)
    known.absent.update(i for i in wanted if i not in got)


def customers_now(app: Membercore, known: Known, customer_ids: Iterable[UUID]) -> set[UUID]:
    """Read the customers and, hop by hop, the ones they were merged into; answers the ids they
    are now (a merged-away id leads to its survivor)."""
    pending = set(customer_ids)
    fetch(app, known, pending)
    now: set[UUID] = set()
    for _ in range(MAX_MERGE_HOPS):
        into: set[UUID] = set()
        for cid in pending:
            customer = known.found.get(cid)
            if not isinstance(customer, Customer):
                continue
            if customer.merged_into is None:
                now.add(cid)
            else:
                into.add(customer.merged_into)
        if not into:
            break
        fetch(app, known, into)
        pending = into
    return now


def read_orders(app: Membercore, requests: Sequence[OrderRequest], view: ProgramView) -> Known:
    """Everything ``decide_order`` may look at for these orders (one round)."""
    known = Known()
    claims = [r.claim_id for r in requests if r.claim_id is not None]
    fetch(app, known, [*(r.id for r in requests), *claims])
    buyers: set[UUID] = {r.customer_id for r in requests if r.customer_id is not None}
    for claim_id in claims:
        claim = known.found.get(claim_id)
        if isinstance(claim, IdentityClaim) and len(claim.holders) == 1:
            buyers.add(claim.holders[0])
    now = customers_now(app, known, buyers)
    rules = [view.loyalty_at(r.placed_at) for r in requests]
    point_types = {code for r in rules for code in r.point_types}
    groups = {code for r in rules for code in r.level_groups}
    fetch(
        app,
        known,
        [
            *(PointsAccount.id_for(b, code) for b in now for code in point_types),
            *(LevelMembership.id_for(b, code) for b in now for code in groups),
        ],
    )
    return known


def read_refund(app: Membercore, order: Order, groups: Iterable[str]) -> Known:
    """Everything ``decide_refund`` may look at: the buyer following merges, their accounts of
    the types the order earned, their memberships of ``groups``."""
    known = Known()
    for cid in customers_now(app, known, [order.customer_id]):
        fetch(
            app,
            known,
            [
                *(PointsAccount.id_for(cid, code) for code in order.earned()),
                *(LevelMembership.id_for(cid, code) for code in groups),
            ],
        )
    return known
