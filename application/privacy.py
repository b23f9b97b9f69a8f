"""Consent (客户授权) and erasure (crypto-shredding) as commands; the access request export
(PIPL/GDPR) as a read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from application.app import Membercore, both
from application.benefits.queries import benefits_of
from application.context import CommandContext
from application.customers import CustomerCommand, changed
from application.identities import load_claims
from application.kernel import Decision, Outcome, handles
from application.levels.queries import level_status
from application.loaders import benefit_account, load_customer, many
from application.points import queries as points
from domain.customer import Customer
from domain.errors import CustomerMerged, FieldProblem, InvalidInput
from domain.order import Order
from domain.values import optional_text, parse_role

PURPOSES_HINT = "e.g. marketing, data_processing, profiling"


@dataclass(frozen=True)
class RecordConsent(CustomerCommand):
    """Grant or withdraw consent for one ``purpose`` on one ``channel`` (each change is an
    event; repeating the current state records nothing). A grant names the policy version
    agreed to. ``via``: the channel the request came through (the API's ``?channel=``),
    recorded for the change history."""

    operation = "RecordConsent"
    purpose: str
    channel: str
    granted: bool
    policy_version: str | None = None
    source: str | None = None
    via: str | None = None

    def __post_init__(self) -> None:
        parse_role(self.purpose, field="purpose")  # same shape as a role code: snake_case
        parse_role(self.channel, field="channel")
        if self.granted and not optional_text(self.policy_version, field="policy_version"):
            raise InvalidInput(
                [FieldProblem("policy_version", "a grant names the policy version agreed to")]
            )


@handles(RecordConsent)
def record_consent(app: Membercore, cmd: RecordConsent, ctx: CommandContext) -> Decision:
    code = parse_role(cmd.purpose, field="purpose")
    covered = parse_role(cmd.channel, field="channel")
    customer = load_customer(app, cmd.customer_id)
    customer.record_consent(
        purpose=code,
        channel=covered,
        granted=cmd.granted,
        policy_version=optional_text(cmd.policy_version, field="policy_version"),
        source=optional_text(cmd.source, field="source"),
        actor=ctx.actor,
        at=app.clock(),
        via=optional_text(cmd.via, field="channel"),
    )
    detail = {"purpose": code, "channel": covered, "granted": cmd.granted}
    return changed(
        customer, detail=detail, outcome=Outcome.CREATED if cmd.granted else Outcome.DONE
    )


def _absorbed_sources(app: Membercore, customer: Customer) -> list[Customer]:
    """Every customer merged (and not un-merged) into ``customer``, transitively (one read per
    generation of merges)."""
    found: list[Customer] = []
    pending = [r.source_id for r in customer.absorbed.values()]
    while pending:
        generation = [c for c in many(app, pending).values() if isinstance(c, Customer)]
        found.extend(generation)
        pending = [r.source_id for source in generation for r in source.absorbed.values()]
    return found


@dataclass(frozen=True)
class EraseCustomer(CustomerCommand):
    """Erase the person: release their identities, record ``Erased`` on their stream (and on the
    records merged into it), and destroy their data keys in the same transaction (409
    ``customer_erased`` when erased already, ``customer_merged`` for a merged-away id).

    The rule for merges (docs/identity.md, erasure): what a merge copied from a source into the
    survivor's events is sealed with the *source's* key. While the merge stands the survivor holds
    the source's data, so erasing the survivor destroys the source's key too (the source is
    erased with it, transitively). After an undo the source is its own person again: erasing it
    destroys its key, and with it the copies in the former survivor's events; erasing the former
    survivor leaves the source's copies readable (they are not the survivor's data).
    """

    operation = "EraseCustomer"
    reason: str | None = None


@handles(EraseCustomer)
def erase_customer(app: Membercore, cmd: EraseCustomer, ctx: CommandContext) -> Decision:
    reason = optional_text(cmd.reason, field="reason")
    at = app.clock()
    customer = load_customer(app, cmd.customer_id)
    if customer.merged_into is not None and not customer.erased:
        raise CustomerMerged(customer.id, customer.merged_into)
    people = [customer, *_absorbed_sources(app, customer)]
    claims = load_claims(app, customer.identities)
    for claim in claims.values():
        claim.remove_holder(customer.id, at=at)
    for person in people:
        person.erase(reason=reason, actor=ctx.actor, at=at)
    ids = [p.id for p in people]

    def forget_cached_keys() -> None:
        for person_id in ids:
            app.erased(person_id)

    return changed(
        customer,
        *people[1:],
        *claims.values(),
        detail={"erased": True},
        side_effect=both(*(app.erasure(person_id) for person_id in ids)),
        after_commit=forget_cached_keys,
    )


@dataclass(frozen=True)
class Export:
    customer_id: UUID
    document: dict[str, Any]


def export_customer(app: Membercore, customer_id: UUID) -> Export:
    """Everything held about the person: current state and every event of their stream, their
    points (balance and ledger per point type), orders with their refunds, level memberships
    and benefits (grants, redemptions, what they hold now).

    Erased personal values read as empty: the keys that could open them are gone. Money and
    points facts are not personal and remain.
    """
    customer = load_customer(app, customer_id)
    events = []
    for stored in app.recorder.select_events(customer.id):
        event: Any = app.mapper.to_domain_event(stored)
        data: dict[str, Any] = msgspec.to_builtins(event)
        for key in ("originator_id", "originator_version", "timestamp", "originator_topic"):
            data.pop(key, None)
        events.append(
            {
                "version": stored.originator_version,
                "type": stored.topic.rsplit(".", 1)[-1],
                "occurred_at": event.timestamp.isoformat(),
                "data": data,
            }
        )
    state = {
        "customer_id": str(customer.id),
        "erased": customer.erased,
        "merged_into": str(customer.merged_into) if customer.merged_into else None,
        "identities": [{"type": i.type, "value": i.value} for i in customer.identities],
        "profile": customer.fields(),
        "roles": sorted(customer.roles),
        "tags": sorted(customer.tags),
        "parent_agent_id": str(customer.parent_agent_id) if customer.parent_agent_id else None,
        "referrer_id": str(customer.referrer_id) if customer.referrer_id else None,
        "consents": [c.as_dict() for c in customer.consents.values()],
        "merges_absorbed": [
            {"merge_id": str(m), "source_id": str(r.source_id)}
            for m, r in customer.absorbed.items()
        ],
    }
    document = {
        "customer": state,
        "events": events,
        "points": _points(app, customer.id),
        "orders": _orders(app, customer.id),
        "levels": level_status(app, customer.id, app.clock()),
        "benefits": _benefits(app, customer),
    }
    return Export(customer.id, document)


EXPORT_PAGE = 1000


def _points(app: Membercore, customer_id: UUID) -> list[dict[str, Any]]:
    """Per point type of the program: the balance and every ledger entry (the points module's
    own reads)."""
    out: list[dict[str, Any]] = []
    for balance in points.points_balances(app, customer_id, app.clock()):
        entries: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            page = points.points_entries(
                app, customer_id, balance.point_type, after=after, limit=EXPORT_PAGE
            )
            entries.extend(page.items)
            after = page.next_cursor
        out.append({**msgspec.to_builtins(balance), "entries": entries})
    return out


def _orders(app: Membercore, customer_id: UUID) -> list[dict[str, Any]]:
    """The orders whose buyer the customer is now (placed for them, or reassigned to them by a
    merge undo), each with its refunds, in log order.

    No read model lists a customer's orders yet, so this follows the tenant's order events
    (filtered by topic in the database) to find them, then reads each one's own stream: its cost
    grows with the tenant's orders, acceptable for an access request, not for a hot path.
    """
    topics = (Order.Placed.TOPIC, Order.Reassigned.TOPIC)
    theirs: dict[UUID, None] = {}  # ordered: log order of the event that made them theirs
    start = 1
    while notifications := app.recorder.select_notifications(start, EXPORT_PAGE, topics=topics):
        for n in notifications:
            e: Any = app.mapper.to_domain_event(n)
            if e.customer_id == customer_id:
                theirs[e.originator_id] = None
            elif isinstance(e, Order.Reassigned) and e.previous_customer_id == customer_id:
                theirs.pop(e.originator_id, None)
        start = notifications[-1].id + 1
    return [_order_history(app, order_id) for order_id in theirs]


def _order_history(app: Membercore, order_id: UUID) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stored in app.recorder.select_events(order_id):
        e: Any = app.mapper.to_domain_event(stored)
        if isinstance(e, Order.Placed):
            out = _order(e)
        elif isinstance(e, Order.Refunded):
            out["refunds"].append(_refund(e))
        elif isinstance(e, Order.Reassigned):
            out["reassigned"].append(
                {"from": str(e.previous_customer_id), "to": str(e.customer_id), "reason": e.reason}
            )
    return out


def _order(e: Order.Placed) -> dict[str, Any]:
    return {
        "channel": e.channel,
        "order_id": e.order_id,
        "placed_at": e.placed_at.isoformat(),
        "placed_on": e.placed_on.isoformat(),
        "amount": e.amount,
        "portions": msgspec.to_builtins(e.portions),
        "store_id": e.store_id,
        "staff_id": e.staff_id,
        "agent_id": e.agent_id,
        "program_version": e.program_version,
        "recorded_at": e.timestamp.isoformat(),
        "refunds": [],
        "reassigned": [],
    }


def _refund(e: Order.Refunded) -> dict[str, Any]:
    return {
        "refund_id": e.refund_id,
        "amount": e.amount,
        "by_portion": dict(e.by_portion),
        "reversed": dict(e.reversed),
        "recorded_at": e.timestamp.isoformat(),
    }


def _benefits(app: Membercore, customer: Customer) -> dict[str, Any]:
    """Every grant (revoked ones too) and redemption of the customer's benefit account, and,
    for an active customer, the benefits held now with their quotas."""
    account = benefit_account(app, customer.id)
    active = not customer.erased and customer.merged_into is None
    held = benefits_of(app, customer.id) if active else []
    return {
        "held": [h.to_dict() for h in held],
        "grants": msgspec.to_builtins(list(account.grants.values())) if account else [],
        "redemptions": msgspec.to_builtins(account.redemptions_of()) if account else [],
    }
