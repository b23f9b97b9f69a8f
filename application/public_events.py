"""The public, versioned shape of events for integrators (feed, SSE, webhooks).

Stored event state is an internal format that may change with upcasters; integrators see these
payloads instead. Each public type has a ``version``; a breaking change adds a new version and
keeps the old one documented (docs/events.md). Internal streams (identity claims) are not public.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.customer import Customer
from domain.values import Identity


@dataclass(frozen=True)
class PublicEventType:
    name: str
    version: int
    topic: str
    to_data: Callable[[Any], dict[str, Any]]


def _identities(identities: tuple[Identity, ...]) -> list[dict[str, str]]:
    return [{"type": i.type, "value": i.value} for i in identities]


def _registered(e: Customer.Registered) -> dict[str, Any]:
    return {
        "customer_id": str(e.originator_id),
        "identities": _identities(e.identities),
        "name": e.name,
        "phone": e.phone,
        "email": e.email,
        "birthday": e.birthday.isoformat() if e.birthday else None,
        "attributes": dict(e.attributes),
        "roles": list(e.roles),
        "owner": e.owner,
        "referrer_id": str(e.referrer_id) if e.referrer_id else None,
    }


def _identities_linked(e: Customer.IdentitiesLinked) -> dict[str, Any]:
    return {"customer_id": str(e.originator_id), "identities": _identities(e.identities)}


PUBLIC_EVENTS: tuple[PublicEventType, ...] = (
    PublicEventType("customer.registered", 1, Customer.Registered.TOPIC, _registered),
    PublicEventType(
        "customer.identities_linked", 1, Customer.IdentitiesLinked.TOPIC, _identities_linked
    ),
)
BY_TOPIC: dict[str, PublicEventType] = {p.topic: p for p in PUBLIC_EVENTS}
BY_NAME: dict[str, PublicEventType] = {p.name: p for p in PUBLIC_EVENTS}
