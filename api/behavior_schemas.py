"""Wire schemas (msgspec) of the behaviour routes. Unknown fields are rejected, as elsewhere;
``data`` is checked per type by the command (application.behaviors)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from msgspec import Meta, Struct

from api.schemas import ClientId, Strict
from application.behaviors import MAX_BATCH, MAX_CHANNEL

BehaviorType = Literal["page_view", "product_view", "search", "add_to_cart", "feedback"]


class BehaviorIn(Strict):
    event_id: ClientId
    customer_id: UUID
    type: BehaviorType
    # RFC 3339 with an offset ("2026-05-01T10:00:00+08:00", "...Z").
    occurred_at: Annotated[datetime, Meta(tz=True)]
    data: Annotated[dict[str, Any], Meta(max_length=16)]
    channel: Annotated[str, Meta(max_length=MAX_CHANNEL)] | None = None


class RecordBehaviorsBody(Strict):
    behaviors: Annotated[list[BehaviorIn], Meta(min_length=1, max_length=MAX_BATCH)]


class ItemError(Struct):
    code: str
    detail: str


class BehaviorResult(Struct, omit_defaults=True):
    """201 stored now, 200 stored before with the same content, 4xx rejected (see error)."""

    event_id: str
    status: int
    error: ItemError | None = None


class BehaviorsRecorded(Struct):
    results: list[BehaviorResult]
    accepted: int
    replayed: int
    rejected: int


class BehaviorOut(Struct):
    position: int
    event_id: str
    type: str
    occurred_at: str
    recorded_at: str
    channel: str | None
    data: dict[str, Any]


class BehaviorPage(Struct):
    items: list[BehaviorOut]
    next_cursor: str | None


class SkuViews(Struct):
    sku: str
    views: int


class BehaviorSummaryOut(Struct):
    customer_id: str
    counts: dict[str, int]
    first_at: str | None
    last_at: str | None
    distinct_days: int
    top_skus: list[SkuViews]
    searches: int
