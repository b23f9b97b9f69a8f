"""Wire schemas (msgspec). Unknown fields are rejected; constraints give 400s with a field name."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar.openapi import ResponseSpec
from msgspec import Meta, Struct

from api.inputs import check_instants

ClientId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$", examples=["c-1001"])]
ShortText = Annotated[str, Meta(max_length=256)]
IdentityType = Annotated[str, Meta(min_length=1, max_length=64, examples=["member_no"])]
IdentityValue = Annotated[str, Meta(min_length=1, max_length=256, examples=["M-10086"])]


class Strict(Struct, forbid_unknown_fields=True, omit_defaults=False):
    """A request body: unknown fields rejected, every instant in a range all zones can show."""

    def __post_init__(self) -> None:
        check_instants(self)


class IdentityIn(Strict):
    type: IdentityType
    value: IdentityValue


class RegisterCustomerBody(Strict):
    identities: Annotated[list[IdentityIn], Meta(min_length=1, max_length=50)]
    name: ShortText | None = None
    phone: Annotated[str, Meta(max_length=64)] | None = None
    email: Annotated[str, Meta(max_length=254)] | None = None
    birthday: date | None = None
    attributes: Annotated[dict[str, Any], Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )
    roles: Annotated[list[Annotated[str, Meta(max_length=32)]], Meta(max_length=20)] | None = None
    owner: Annotated[str, Meta(max_length=128)] | None = None
    referrer_id: UUID | None = None
    channel: Annotated[str, Meta(max_length=64)] | None = None
    store_id: Annotated[str, Meta(max_length=128)] | None = None


class CommandAccepted(Struct):
    """What every command answers: its own fields, plus the log position of its last event."""

    position: int


class CustomerRegistered(Struct, omit_defaults=True):
    customer_id: str
    matched: bool
    position: int
    # Merge ids, when the identities given showed several customers to be one person.
    merged: list[str] = msgspec.field(default_factory=list)


class IdentityOut(Struct):
    type: str
    value: str


class Stats(Struct):
    order_count: int
    total_spend: int
    first_order_at: str | None
    last_order_at: str | None
    # Null while no order counts (a refund recorded before its order, or orders moved by a merge).
    avg_order_value: int | None
    refund_count: int
    purchase_days: int


class CustomerProfile(Struct):
    """The 360-degree profile (read model ``customer_profile``)."""

    customer_id: str
    identities: list[IdentityOut]
    name: str | None
    phone: str | None
    email: str | None
    birthday: str | None
    attributes: dict[str, Any]
    roles: list[str]
    owner: str | None
    referrer_id: str | None
    tags: list[str]
    # Available points per point type, and level code per level group.
    points: dict[str, int]
    levels: dict[str, str]
    wallet: dict[str, Any] | None
    stats: Stats
    rfm: dict[str, Any] | None
    clv: dict[str, Any] | None
    merged_into: str | None
    registered_at: str
    updated_at: str
    role_since: dict[str, str] = msgspec.field(default_factory=dict)
    parent_agent_id: str | None = None
    channel: str | None = None
    store_id: str | None = None
    consents: list[dict[str, Any]] = msgspec.field(default_factory=list)
    merge_id: str | None = None
    erased: bool = False
    erased_at: str | None = None


class CustomerList(Struct):
    items: list[CustomerProfile]
    next_cursor: str | None = None


class FeedItem(Struct):
    position: int
    type: str
    schema_version: int
    stream_id: str
    version: int
    occurred_at: str
    data: dict[str, Any]


class Feed(Struct):
    items: list[FeedItem]
    next_cursor: str | None


class ProjectionHealth(Struct):
    lag: int


class Health(Struct, omit_defaults=True):
    status: str
    projections: dict[str, ProjectionHealth]
    # Present when REDIS_URL is configured: "ok" or "unavailable".
    redis: str | None = None


class Problem(Struct):
    """RFC 9457 problem details; ``code`` is stable and snake_case."""

    type: str
    title: str
    status: int
    detail: str
    code: str


def problem_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI entries for the problem responses a route can give."""
    described = {
        400: "invalid input (see code and field)",
        401: "missing or unknown API key",
        403: "the key's role lacks the permission",
        404: "no such resource in this tenant",
        409: "conflict (identity_conflict, request_in_progress, concurrency_conflict)",
        413: "body too large",
        422: "idempotency_key_reused or a rule rejected the command",
        503: "read model behind (min_position) or database unavailable; see Retry-After",
    }
    return {
        # No generated examples: they are random (a status of 2562) and change on every start.
        s: ResponseSpec(
            data_container=Problem,
            description=described[s],
            media_type="application/problem+json",
            generate_examples=False,
        )
        for s in statuses
    }


# -- customer commands (issue 3) ----------------------------------------------------------------

OptionalText = Annotated[str, Meta(max_length=256)] | None | msgspec.UnsetType


class PatchCustomerBody(Strict):
    """Only the fields present change; ``null`` clears one. Attributes as the program declares."""

    name: OptionalText = msgspec.UNSET
    phone: Annotated[str, Meta(max_length=64)] | msgspec.UnsetType | None = msgspec.UNSET
    email: Annotated[str, Meta(max_length=254)] | msgspec.UnsetType | None = msgspec.UNSET
    birthday: date | msgspec.UnsetType | None = msgspec.UNSET
    channel: OptionalText = msgspec.UNSET
    store_id: OptionalText = msgspec.UNSET
    attributes: Annotated[dict[str, Any], Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )


class IdentitiesBody(Strict):
    identities: Annotated[list[IdentityIn], Meta(min_length=1, max_length=50)]


class MergeBody(Strict):
    source_customer_id: UUID


class RoleBody(Strict):
    role: Annotated[str, Meta(max_length=32, examples=["agent"])]


class TagsBody(Strict):
    """Static tag codes: NFKC-folded and lower-cased, then ``^[a-z0-9_:-]{1,64}$``."""

    tags: Annotated[
        list[Annotated[str, Meta(max_length=64)]],
        Meta(min_length=1, max_length=50, examples=[["vip", "newsletter"]]),
    ]


class ParentAgentBody(Strict):
    parent_id: UUID | None


class OwnerBody(Strict):
    owner: Annotated[str, Meta(min_length=1, max_length=128, examples=["s-1"])]
    reason: ShortText | None = None


class EndOwnerBody(Strict):
    by: Annotated[str, Meta(min_length=1, max_length=128)]
    reason: ShortText | None = None


class ConsentBody(Strict):
    purpose: Annotated[str, Meta(max_length=32, examples=["marketing"])]
    channel: Annotated[str, Meta(max_length=32, examples=["sms"])]
    granted: bool
    policy_version: Annotated[str, Meta(max_length=64)] | None = None
    source: ShortText | None = None


class HandoverBody(Strict):
    to_staff_id: Annotated[str, Meta(min_length=1, max_length=128)]


class CommandResult(Struct):
    """A customer command's answer: what changed, and the log position of its last event."""

    customer_id: str
    position: int


class MergeOut(Struct):
    merge_id: str
    survivor_id: str
    source_id: str
    moved: dict[str, int]
    position: int


class HandoverOut(Struct):
    from_staff_id: str
    to_staff_id: str
    moved: int
    customer_ids: list[str]
    skipped: list[str]
    position: int


class Page(Struct):
    items: list[dict[str, Any]]
    next_cursor: str | None
