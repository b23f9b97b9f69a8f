"""Consent (客户授权), erasure (crypto-shredding) and the access request export (PIPL/GDPR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate

from application.app import Membercore, both
from application.context import CommandContext
from application.customers import Changed, save_changes
from application.identities import load_claims
from application.merges import load_customer
from domain.customer import Customer
from domain.errors import CustomerMerged, FieldProblem, InvalidInput
from domain.values import optional_text, parse_role

PURPOSES_HINT = "e.g. marketing, data_processing, profiling"


def record_consent(
    app: Membercore,
    customer_id: UUID,
    *,
    purpose: str,
    channel: str,
    granted: bool,
    policy_version: str | None,
    source: str | None,
    ctx: CommandContext,
) -> Changed:
    """Grant or withdraw consent for one purpose on one channel (each change is an event)."""
    code = parse_role(purpose, field="purpose")  # same shape as a role code: snake_case
    via = parse_role(channel, field="channel")
    version = optional_text(policy_version, field="policy_version")
    if granted and not version:
        raise InvalidInput(
            [FieldProblem("policy_version", "a grant names the policy version agreed to")]
        )

    def attempt(first: bool) -> Changed:
        customer = load_customer(app, customer_id)
        customer.record_consent(
            purpose=code,
            channel=via,
            granted=granted,
            policy_version=version,
            source=optional_text(source, field="source"),
            actor=ctx.actor,
            at=app.clock(),
        )
        detail = {"purpose": code, "channel": via, "granted": granted}
        return save_changes(app, ctx, customer, detail=detail, status=201 if granted else 200)

    return app.retrying(attempt)


def _absorbed_sources(app: Membercore, customer: Customer) -> list[Customer]:
    """Every customer merged (and not un-merged) into ``customer``, transitively."""
    found: list[Customer] = []
    pending = [r.source_id for r in customer.absorbed.values()]
    while pending:
        source = load_customer(app, pending.pop())
        found.append(source)
        pending.extend(r.source_id for r in source.absorbed.values())
    return found


def erase_customer(
    app: Membercore, customer_id: UUID, reason: str | None, ctx: CommandContext
) -> Changed:
    """Erase the person: release their identities, record ``Erased`` on their stream (and on the
    records merged into it), and destroy their data keys in the same transaction.

    The rule for merges (docs/identity.md, erasure): what a merge copied from a source into the
    survivor's events is sealed with the *source's* key. While the merge stands the survivor holds
    the source's data, so erasing the survivor destroys the source's key too (the source is
    erased with it, transitively). After an undo the source is its own person again: erasing it
    destroys its key, and with it the copies in the former survivor's events; erasing the former
    survivor leaves the source's copies readable (they are not the survivor's data).
    """

    def attempt(first: bool) -> Changed:
        at = app.clock()
        customer = load_customer(app, customer_id)
        if customer.merged_into is not None and not customer.erased:
            raise CustomerMerged(customer.id, customer.merged_into)
        people = [customer, *_absorbed_sources(app, customer)]
        changed: list[Aggregate] = []
        claims = load_claims(app, customer.identities)
        for claim in claims.values():
            claim.remove_holder(customer.id, at=at)
            changed.append(claim)
        for person in people:
            person.erase(reason=optional_text(reason, field="reason"), actor=ctx.actor, at=at)
        effect = both(*(app.erasure(p.id) for p in people))
        result = save_changes(
            app,
            ctx,
            customer,
            *people[1:],
            *changed,
            detail={"erased": True},
            side_effect=effect,
        )
        for person in people:
            app.erased(person.id)
        return result

    return app.retrying(attempt)


@dataclass(frozen=True)
class Export:
    customer_id: UUID
    document: dict[str, Any]


def export_customer(app: Membercore, customer_id: UUID) -> Export:
    """Everything held about the person: current state and every event of their stream.

    Erased personal values read as empty: the keys that could open them are gone.
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
        "parent_agent_id": str(customer.parent_agent_id) if customer.parent_agent_id else None,
        "referrer_id": str(customer.referrer_id) if customer.referrer_id else None,
        "consents": [
            {
                "purpose": c.purpose,
                "channel": c.channel,
                "granted": c.granted,
                "policy_version": c.policy_version,
                "source": c.source,
                "at": c.at.isoformat(),
            }
            for c in customer.consents.values()
        ],
        "merges_absorbed": [
            {"merge_id": str(m), "source_id": str(r.source_id)}
            for m, r in customer.absorbed.items()
        ],
    }
    return Export(customer.id, {"customer": state, "events": events})
