"""The public, versioned shape of events for integrators (feed, SSE, webhooks).

Stored event state is an internal format that may change with upcasters; integrators see these
payloads instead. Each public type has a ``version``; a breaking change adds a new version and
keeps the old one documented (docs/events.md). Internal streams (identity claims, the staff
activity counters) are not public, except the alert a staff activity raises.

Payloads are plain JSON: ids as strings, datetimes and dates in ISO 8601. Personal fields of an
erased customer's events read as empty (``[]`` identities, ``{}`` changes and fields, ``None``
otherwise): the key that sealed them is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.level_membership import LevelMembership
from domain.merge import AssetMove, Merge
from domain.order import Order
from domain.points_account import PointsAccount
from domain.staff import StaffActivity
from domain.values import Identity


@dataclass(frozen=True)
class PublicEventType:
    name: str
    version: int
    topic: str
    to_data: Callable[[Any], dict[str, Any]]


def _identities(identities: tuple[Identity, ...]) -> list[dict[str, str]]:
    return [{"type": i.type, "value": i.value} for i in identities]


def _id(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: ids as strings, dates and datetimes in ISO 8601."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Identity):
        return {"type": value.type, "value": value.value}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _customer(e: Any) -> dict[str, Any]:
    return {"customer_id": str(e.originator_id)}


def _registered(e: Customer.Registered) -> dict[str, Any]:
    return {
        **_customer(e),
        "identities": _identities(e.identities),
        "name": e.name,
        "phone": e.phone,
        "email": e.email,
        "birthday": e.birthday.isoformat() if e.birthday else None,
        "attributes": plain(e.attributes),
        "roles": list(e.roles),
        "owner": e.owner,
        "referrer_id": _id(e.referrer_id),
        "channel": e.channel,
        "store_id": e.store_id,
    }


def _identities_changed(
    e: Customer.IdentitiesLinked | Customer.IdentitiesUnlinked,
) -> dict[str, Any]:
    return {**_customer(e), "identities": _identities(e.identities)}


def _profile_changed(e: Customer.ProfileChanged) -> dict[str, Any]:
    return {**_customer(e), "changes": plain(e.changes), "channel": e.channel}


def _role_added(e: Customer.RoleAdded) -> dict[str, Any]:
    return {**_customer(e), "role": e.role}


def _role_ended(e: Customer.RoleEnded) -> dict[str, Any]:
    return {**_customer(e), "role": e.role, "reason": e.reason}


def _parent_agent_set(e: Customer.ParentAgentSet) -> dict[str, Any]:
    return {**_customer(e), "parent_id": _id(e.parent_id)}


def _owner_assigned(e: Customer.OwnerAssigned) -> dict[str, Any]:
    return {**_customer(e), "owner": e.owner, "previous": e.previous, "reason": e.reason}


def _owner_ended(e: Customer.OwnerEnded) -> dict[str, Any]:
    return {**_customer(e), "owner": e.owner, "by": e.by, "reason": e.reason}


def _consent(e: Customer.ConsentGiven | Customer.ConsentWithdrawn) -> dict[str, Any]:
    return {
        **_customer(e),
        "purpose": e.purpose,
        "channel": e.channel,
        "granted": isinstance(e, Customer.ConsentGiven),
        "policy_version": e.policy_version,
        "source": e.source,
    }


def _match_suggested(e: Customer.MatchSuggested) -> dict[str, Any]:
    return {**_customer(e), "other_id": str(e.other_id), "identity_type": e.identity_type}


def _absorbed(e: Customer.Absorbed) -> dict[str, Any]:
    return {
        **_customer(e),
        "merge_id": str(e.merge_id),
        "source_id": str(e.source_id),
        "identities": _identities(e.identities),
        "fields": plain(e.fields),
        "previous": plain(e.previous),
        "roles": list(e.roles),
        "tags": list(e.tags),
    }


def _absorption_undone(e: Customer.AbsorptionUndone) -> dict[str, Any]:
    return {
        **_customer(e),
        "merge_id": str(e.merge_id),
        "identities": _identities(e.identities),
        "fields": plain(e.fields),
        "roles": list(e.roles),
        "tags": list(e.tags),
    }


def _tags_added(e: Customer.TagsAdded) -> dict[str, Any]:
    return {**_customer(e), "tags": list(e.tags), "channel": e.channel}


def _tag_removed(e: Customer.TagRemoved) -> dict[str, Any]:
    return {**_customer(e), "tag": e.tag, "channel": e.channel}


def _merged_into(e: Customer.MergedInto) -> dict[str, Any]:
    return {**_customer(e), "merge_id": str(e.merge_id), "survivor_id": str(e.survivor_id)}


def _merge_undone(e: Customer.MergeUndone) -> dict[str, Any]:
    return {**_customer(e), "merge_id": str(e.merge_id), "identities": _identities(e.identities)}


def _erased(e: Customer.Erased) -> dict[str, Any]:
    return {**_customer(e), "reason": e.reason}


def _moves(moves: tuple[AssetMove, ...]) -> list[dict[str, str]]:
    return [{"kind": m.kind, "aggregate_id": str(m.aggregate_id)} for m in moves]


def _merge_merged(e: Merge.Merged) -> dict[str, Any]:
    return {
        "merge_id": str(e.originator_id),
        "survivor_id": str(e.survivor_id),
        "source_id": str(e.source_id),
        "reason": e.reason,
        "moves": _moves(e.moves),
    }


def _merge_undone_record(e: Merge.Undone) -> dict[str, Any]:
    # Stored v2 events name who into whom; v1 ones (stored before) read them as null: the
    # ``merge.merged`` of the same stream (the feed item's ``stream_id``) has them.
    return {
        "merge_id": str(e.originator_id),
        "survivor_id": _id(e.survivor_id),
        "source_id": _id(e.source_id),
    }


def _alert_raised(e: StaffActivity.AlertRaised) -> dict[str, Any]:
    # The stream is the staff member's activity (``staff_activity_id(staff_id)``, a one-way
    # uuid5). Stored v2 events carry the staff id; v1 ones (stored before) read it as null.
    return {
        "staff_activity_id": str(e.originator_id),
        "staff_id": e.staff_id,
        "kind": e.kind,
        "count": e.count,
        "window_minutes": e.window_minutes,
    }


def _order_placed(e: Order.Placed) -> dict[str, Any]:
    return {
        "order_id": e.order_id,
        "channel": e.channel,
        "customer_id": str(e.customer_id),
        "placed_at": e.placed_at.isoformat(),
        "amount": e.amount,
        "lines": [
            {"line_id": p["key"], "amount": p["amount"], "earned": p["earned"]} for p in e.portions
        ],
        "store_id": e.store_id,
        "staff_id": e.staff_id,
        "agent_id": e.agent_id,
        "program_version": e.program_version,
        "points": e.outcome.get("points", []),
    }


def _order_refunded(e: Order.Refunded) -> dict[str, Any]:
    return {
        "order_stream_id": str(e.originator_id),
        "order_id": e.outcome.get("order_id"),
        "channel": e.outcome.get("channel"),
        "customer_id": str(e.customer_id),
        "refund_id": e.refund_id,
        "amount": e.amount,
        "lines": [{"line_id": k, "amount": v} for k, v in e.by_portion.items()],
        "points_reversed": dict(e.reversed),
    }


def _order_reassigned(e: Order.Reassigned) -> dict[str, Any]:
    return {
        "order_stream_id": str(e.originator_id),
        "order_id": e.order_id,
        "channel": e.channel,
        "customer_id": str(e.customer_id),
        "previous_customer_id": str(e.previous_customer_id),
        "reason": e.reason,
    }


def _benefit_granted(e: BenefitAccount.Granted) -> dict[str, Any]:
    return {
        "customer_id": str(e.customer_id),
        "grant_id": e.grant_id,
        "benefit": e.code,
        "valid_from": e.valid_from.isoformat(),
        "until": e.until.isoformat() if e.until else None,
        "reason": e.reason,
        "actor": e.actor,
    }


def _benefit_grant_revoked(e: BenefitAccount.GrantRevoked) -> dict[str, Any]:
    return {
        "customer_id": str(e.customer_id),
        "grant_id": e.grant_id,
        "reason": e.reason,
        "actor": e.actor,
    }


def _benefit_redeemed(e: BenefitAccount.Redeemed) -> dict[str, Any]:
    return {
        "customer_id": str(e.customer_id),
        "redemption_id": e.redemption_id,
        "benefit": e.code,
        "source": e.source,
        "period_key": e.period_key,
        "at": e.at.isoformat(),
        "program_version": e.program_version,
        "note": e.note,
        "actor": e.actor,
    }


# -- points (one account per customer per point type) -----------------------------------------


def _points(e: Any) -> dict[str, Any]:
    """``customer_id``, ``point_type``, ``account_id`` and the event's other fields, plain;
    lot takes as ``[{"lot_id", "amount"}]``."""
    skip = {"originator_id", "originator_version", "timestamp", "customer_id", "point_type"}
    data: dict[str, Any] = {
        "customer_id": str(e.customer_id),
        "point_type": e.point_type,
        "account_id": str(e.originator_id),
    }
    for name in e.__dataclass_fields__:
        if name in skip:
            continue
        value = getattr(e, name)
        if name == "lots":
            value = [{"lot_id": lot_id, "amount": n} for lot_id, n in value]
        data[name] = plain(value)
    return data


_LEVEL_INTERNAL = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "customer_id"}
    | {"group", "check_at"}
)


def _level(e: Any) -> dict[str, Any]:
    """A level event: the membership (stream), customer and group, then the event's own fields."""
    fields = {k: plain(v) for k, v in vars(e).items() if k not in _LEVEL_INTERNAL}
    return {
        "membership_id": str(e.originator_id),
        "customer_id": str(e.customer_id),
        "group": e.group,
        **fields,
    }


PUBLIC_EVENTS: tuple[PublicEventType, ...] = (
    PublicEventType("customer.registered", 1, Customer.Registered.TOPIC, _registered),
    PublicEventType(
        "customer.identities_linked", 1, Customer.IdentitiesLinked.TOPIC, _identities_changed
    ),
    PublicEventType(
        "customer.identities_unlinked", 1, Customer.IdentitiesUnlinked.TOPIC, _identities_changed
    ),
    PublicEventType("customer.profile_changed", 1, Customer.ProfileChanged.TOPIC, _profile_changed),
    PublicEventType("customer.role_added", 1, Customer.RoleAdded.TOPIC, _role_added),
    PublicEventType("customer.role_ended", 1, Customer.RoleEnded.TOPIC, _role_ended),
    PublicEventType(
        "customer.parent_agent_set", 1, Customer.ParentAgentSet.TOPIC, _parent_agent_set
    ),
    PublicEventType("customer.owner_assigned", 1, Customer.OwnerAssigned.TOPIC, _owner_assigned),
    PublicEventType("customer.owner_ended", 1, Customer.OwnerEnded.TOPIC, _owner_ended),
    PublicEventType("customer.consent_given", 1, Customer.ConsentGiven.TOPIC, _consent),
    PublicEventType("customer.consent_withdrawn", 1, Customer.ConsentWithdrawn.TOPIC, _consent),
    PublicEventType("customer.match_suggested", 1, Customer.MatchSuggested.TOPIC, _match_suggested),
    PublicEventType("customer.tags_added", 1, Customer.TagsAdded.TOPIC, _tags_added),
    PublicEventType("customer.tag_removed", 1, Customer.TagRemoved.TOPIC, _tag_removed),
    PublicEventType("customer.absorbed", 1, Customer.Absorbed.TOPIC, _absorbed),
    PublicEventType(
        "customer.absorption_undone", 1, Customer.AbsorptionUndone.TOPIC, _absorption_undone
    ),
    PublicEventType("customer.merged_into", 1, Customer.MergedInto.TOPIC, _merged_into),
    PublicEventType("customer.merge_undone", 1, Customer.MergeUndone.TOPIC, _merge_undone),
    PublicEventType("customer.erased", 1, Customer.Erased.TOPIC, _erased),
    PublicEventType("merge.merged", 1, Merge.Merged.TOPIC, _merge_merged),
    PublicEventType("merge.undone", 1, Merge.Undone.TOPIC, _merge_undone_record),
    PublicEventType("staff.alert_raised", 1, StaffActivity.AlertRaised.TOPIC, _alert_raised),
    PublicEventType("benefit.granted", 1, BenefitAccount.Granted.TOPIC, _benefit_granted),
    PublicEventType(
        "benefit.grant_revoked", 1, BenefitAccount.GrantRevoked.TOPIC, _benefit_grant_revoked
    ),
    PublicEventType("benefit.redeemed", 1, BenefitAccount.Redeemed.TOPIC, _benefit_redeemed),
    PublicEventType("order.placed", 1, Order.Placed.TOPIC, _order_placed),
    PublicEventType("order.refunded", 1, Order.Refunded.TOPIC, _order_refunded),
    PublicEventType("order.reassigned", 1, Order.Reassigned.TOPIC, _order_reassigned),
    PublicEventType("points.earned", 1, PointsAccount.Earned.TOPIC, _points),
    PublicEventType("points.redeemed", 1, PointsAccount.Redeemed.TOPIC, _points),
    PublicEventType("points.held", 1, PointsAccount.Held.TOPIC, _points),
    PublicEventType("points.hold_captured", 1, PointsAccount.HoldCaptured.TOPIC, _points),
    PublicEventType("points.hold_released", 1, PointsAccount.HoldReleased.TOPIC, _points),
    PublicEventType("points.hold_expired", 1, PointsAccount.HoldExpired.TOPIC, _points),
    PublicEventType(
        "points.redemption_reversed", 1, PointsAccount.RedemptionReversed.TOPIC, _points
    ),
    PublicEventType("points.expired", 1, PointsAccount.Expired.TOPIC, _points),
    PublicEventType("points.reversed", 1, PointsAccount.Reversed.TOPIC, _points),
    PublicEventType("points.adjusted", 1, PointsAccount.Adjusted.TOPIC, _points),
    PublicEventType("level.joined", 1, LevelMembership.Opened.TOPIC, _level),
    PublicEventType("level.upgraded", 1, LevelMembership.Upgraded.TOPIC, _level),
    PublicEventType("level.downgraded", 1, LevelMembership.Downgraded.TOPIC, _level),
    PublicEventType("level.override_set", 1, LevelMembership.OverrideSet.TOPIC, _level),
    PublicEventType("level.override_ended", 1, LevelMembership.OverrideEnded.TOPIC, _level),
    PublicEventType("level.downgrade_warned", 1, LevelMembership.DowngradeWarned.TOPIC, _level),
)
BY_TOPIC: dict[str, PublicEventType] = {p.topic: p for p in PUBLIC_EVENTS}
BY_NAME: dict[str, PublicEventType] = {p.name: p for p in PUBLIC_EVENTS}
