"""The customer profile document: made from a ``Customer.Registered`` and folded over the
customer's later events, without I/O (the projection reads and writes the stored documents).

Fields that later projections own (points, levels, wallet, stats, rfm, clv) start empty here;
``tags`` holds the static (manual) tags, sorted. Erasure replaces the document with an erased
one that keeps nothing personal (``ERASURE_KEEPS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from application.public_events import plain
from domain.customer import Customer
from domain.customer_consents import Consent
from domain.customer_fields import with_changes
from domain.values import Identity

EMPTY_STATS: dict[str, Any] = {
    "order_count": 0,
    "total_spend": 0,
    "first_order_at": None,
    "last_order_at": None,
    "avg_order_value": 0,
    "refund_count": 0,
    "purchase_days": 0,
}

# Field paths a ProfileChanged, an Absorbed or an AbsorptionUndone may set (besides
# ``attributes.<code>``), each a top-level key of the document.
FIELD_PATHS = frozenset({"name", "phone", "email", "birthday", "owner", "channel", "store_id"})

# What an erased document keeps: nothing personal; roles, static tags (codes of the tenant's
# vocabulary, not personal values: docs/identity.md) and assets (owned by their own projections
# later) stay, as do the links that other records and balances hang on.
ERASURE_KEEPS = (
    "customer_id",
    "roles",
    "role_since",
    "tags",
    "parent_agent_id",
    "referrer_id",
    "channel",
    "store_id",
    "points",
    "levels",
    "wallet",
    "stats",
    "merged_into",
    "merge_id",
    "registered_at",
)

Doc = dict[str, Any]


def blank_profile(customer_id: UUID, at: str) -> Doc:
    """Every key of a profile document, in document order, with its empty value."""
    return {
        "customer_id": str(customer_id),
        "identities": [],
        "name": None,
        "phone": None,
        "email": None,
        "birthday": None,
        "attributes": {},
        "roles": [],
        "role_since": {},
        "parent_agent_id": None,
        "owner": None,
        "referrer_id": None,
        "channel": None,
        "store_id": None,
        "consents": [],
        "tags": [],
        "points": {},
        "levels": {},
        "wallet": None,
        "stats": dict(EMPTY_STATS),
        "rfm": None,
        "clv": None,
        "merged_into": None,
        "merge_id": None,
        "erased": False,
        "erased_at": None,
        "registered_at": at,
        "updated_at": at,
    }


def _identities(identities: Sequence[Identity]) -> list[dict[str, str]]:
    return [{"type": i.type, "value": i.value} for i in identities]


def new_profile(e: Customer.Registered) -> Doc:
    at = e.timestamp.isoformat()
    doc = blank_profile(e.originator_id, at)
    doc.update(
        identities=_identities(e.identities),
        name=e.name,
        phone=e.phone,
        email=e.email,
        birthday=e.birthday.isoformat() if e.birthday else None,
        attributes=plain(e.attributes),
        roles=list(e.roles),
        role_since=dict.fromkeys(e.roles, at),
        owner=e.owner,
        referrer_id=str(e.referrer_id) if e.referrer_id else None,
        channel=e.channel,
        store_id=e.store_id,
    )
    return doc


def loaded(doc: Doc) -> Doc:
    """A stored document with every current key (documents written before a key existed get
    its empty value, in document order)."""
    blank = blank_profile(UUID(doc["customer_id"]), doc["registered_at"])
    if len(doc) == len(blank):
        return doc
    blank.update(doc)
    if not blank["role_since"]:
        blank["role_since"] = dict.fromkeys(blank["roles"], blank["registered_at"])
    return blank


def is_active(doc: Doc) -> bool:
    return not doc["erased"] and doc["merged_into"] is None


def identity_keys(doc: Doc) -> set[tuple[str, str]]:
    """The ``customer_identity`` rows the document stands for."""
    if not is_active(doc):
        return set()
    return {(i["type"], i["value"]) for i in doc["identities"]}


# -- one function per event: change the document in place ------------------------------------


def _add_identities(doc: Doc, identities: Sequence[Identity]) -> None:
    held = {(i["type"], i["value"]) for i in doc["identities"]}
    doc["identities"] = [
        *doc["identities"],
        *({"type": i.type, "value": i.value} for i in identities if (i.type, i.value) not in held),
    ]


def _remove_identities(doc: Doc, identities: Sequence[Identity]) -> None:
    gone = {(i.type, i.value) for i in identities}
    doc["identities"] = [i for i in doc["identities"] if (i["type"], i["value"]) not in gone]


def _set_fields(doc: Doc, changes: Mapping[str, Any]) -> None:
    for path, value in changes.items():
        if path in FIELD_PATHS:
            doc[path] = plain(value)
    doc["attributes"] = with_changes(doc["attributes"], {p: plain(v) for p, v in changes.items()})


def _add_roles(doc: Doc, roles: Sequence[str], at: str) -> None:
    for role in roles:
        if role not in doc["roles"]:
            doc["roles"] = [*doc["roles"], role]
            doc["role_since"] = {**doc["role_since"], role: at}


def _remove_roles(doc: Doc, roles: Sequence[str]) -> None:
    doc["roles"] = [r for r in doc["roles"] if r not in roles]
    doc["role_since"] = {r: t for r, t in doc["role_since"].items() if r not in roles}


def _add_tags(doc: Doc, tags: Sequence[str]) -> None:
    doc["tags"] = sorted({*doc["tags"], *tags})


def _remove_tags(doc: Doc, tags: Sequence[str]) -> None:
    doc["tags"] = [t for t in doc["tags"] if t not in tags]


def _consent(doc: Doc, e: Customer.ConsentGiven | Customer.ConsentWithdrawn) -> None:
    granted = isinstance(e, Customer.ConsentGiven)
    consent = Consent(e.purpose, e.channel, granted, e.policy_version, e.source, e.timestamp)
    _put_consent(doc, consent.as_dict())


def _put_consent(doc: Doc, entry: Doc) -> None:
    consents = list(doc["consents"])
    for n, c in enumerate(consents):
        if c["purpose"] == entry["purpose"] and c["channel"] == entry["channel"]:
            consents[n] = entry
            break
    else:
        consents.append(entry)
    doc["consents"] = consents


def _merged_consents(doc: Doc, e: Customer.Absorbed | Customer.AbsorptionUndone) -> None:
    """A merge's consent decisions (taken, or given back) and its agent/referrer links."""
    if isinstance(e, Customer.AbsorptionUndone):
        gone = {(p, c) for p, c in e.removed_consents}
        doc["consents"] = [c for c in doc["consents"] if (c["purpose"], c["channel"]) not in gone]
        if e.parent_agent_given_back:
            doc["parent_agent_id"] = None
        if e.referrer_given_back:
            doc["referrer_id"] = None
    else:
        if e.parent_agent_id is not None:
            doc["parent_agent_id"] = str(e.parent_agent_id)
        if e.referrer_id is not None:
            doc["referrer_id"] = str(e.referrer_id)
    for c in e.consents:
        _put_consent(doc, c.as_dict())


def _erase(doc: Doc, e: Customer.Erased) -> Doc:
    at = e.timestamp.isoformat()
    erased = blank_profile(e.originator_id, doc["registered_at"])
    erased.update({k: doc[k] for k in ERASURE_KEEPS})
    erased.update(erased=True, erased_at=at)
    return erased


def applied(doc: Doc, e: Any) -> Doc:
    """The document after ``e`` (the same object, changed, or a new one)."""
    at = e.timestamp.isoformat()
    if isinstance(e, Customer.IdentitiesLinked):
        _add_identities(doc, e.identities)
    elif isinstance(e, Customer.IdentitiesUnlinked):
        _remove_identities(doc, e.identities)
    elif isinstance(e, Customer.ProfileChanged):
        _set_fields(doc, e.changes)
    elif isinstance(e, Customer.RoleAdded):
        _add_roles(doc, (e.role,), at)
    elif isinstance(e, Customer.RoleEnded):
        _remove_roles(doc, (e.role,))
    elif isinstance(e, Customer.ParentAgentSet):
        doc["parent_agent_id"] = str(e.parent_id) if e.parent_id else None
    elif isinstance(e, Customer.OwnerAssigned):
        doc["owner"] = e.owner
    elif isinstance(e, Customer.OwnerEnded):
        doc["owner"] = None
    elif isinstance(e, Customer.ConsentGiven | Customer.ConsentWithdrawn):
        _consent(doc, e)
    elif isinstance(e, Customer.TagsAdded):
        _add_tags(doc, e.tags)
    elif isinstance(e, Customer.TagRemoved):
        _remove_tags(doc, (e.tag,))
    elif isinstance(e, Customer.Absorbed):
        _add_identities(doc, e.identities)
        _set_fields(doc, e.fields)
        _add_roles(doc, e.roles, at)
        _add_tags(doc, e.tags)
        _merged_consents(doc, e)
    elif isinstance(e, Customer.AbsorptionUndone):
        _remove_identities(doc, e.identities)
        _set_fields(doc, e.fields)
        _remove_roles(doc, e.roles)
        _remove_tags(doc, e.tags)
        _merged_consents(doc, e)
    elif isinstance(e, Customer.MergedInto):
        doc["merged_into"] = str(e.survivor_id)
        doc["merge_id"] = str(e.merge_id)
    elif isinstance(e, Customer.MergeUndone):
        doc["merged_into"] = None
        doc["merge_id"] = None
        doc["identities"] = _identities(e.identities)
    elif isinstance(e, Customer.Erased):
        doc = _erase(doc, e)
    doc["updated_at"] = at
    return doc
