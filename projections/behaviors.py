"""Async reads of the ``behaviors`` table (infrastructure.behaviors) for the API and, later,
stats, tags and segments.

The table is written directly by ``POST /v1/behaviors`` (not through the event log), so there is
no projection to wait for: a behaviour is readable as soon as its batch answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed, Identifier

from application.behaviors import BEHAVIOR_TYPES
from domain.customer import Customer
from infrastructure.behaviors import BEHAVIORS_TABLE
from infrastructure.eventstore import EVENTS_TABLE

TOP_SKUS = 5


@dataclass(frozen=True)
class StoredBehavior:
    position: int
    event_id: str
    customer_id: UUID
    type: str
    occurred_at: datetime
    recorded_at: datetime
    channel: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class BehaviorSummary:
    customer_id: UUID
    counts: dict[str, int]  # every type, 0 when none
    first_at: datetime | None
    last_at: datetime | None
    distinct_days: int  # UTC calendar days with at least one behaviour
    top_skus: list[tuple[str, int]]  # (sku, product views), most viewed first, at most 5

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _table(schema: str) -> Composed:
    return SQL("{}.{}").format(Identifier(schema), Identifier(BEHAVIORS_TABLE))


_COLUMNS = "position, event_id, customer_id, type, occurred_at, recorded_at, channel, data"


@lru_cache(maxsize=4096)
def _list_sql(schema: str, typed: bool) -> bytes:
    where = " AND type = %s" if typed else ""
    return (
        SQL(
            "SELECT "
            + _COLUMNS
            + " FROM {} WHERE customer_id = %s AND position > %s"
            + where
            + " ORDER BY position LIMIT %s"
        )
        .format(_table(schema))
        .as_bytes(None)
    )


@lru_cache(maxsize=4096)
def _summary_sql(schema: str) -> bytes:
    return (
        SQL(
            "WITH b AS (SELECT type, occurred_at, data FROM {} WHERE customer_id = %s),"
            " skus AS (SELECT data->>'sku' AS sku, count(*) AS views FROM b"
            "  WHERE type = 'product_view' AND data ? 'sku'"
            "  GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s)"
            " SELECT"
            " (SELECT coalesce(json_object_agg(type, n), '{{}}')"
            "  FROM (SELECT type, count(*) AS n FROM b GROUP BY type) c) AS counts,"
            " (SELECT min(occurred_at) FROM b) AS first_at,"
            " (SELECT max(occurred_at) FROM b) AS last_at,"
            " (SELECT count(DISTINCT (occurred_at AT TIME ZONE 'UTC')::date) FROM b) AS days,"
            " (SELECT coalesce(json_agg(json_build_array(sku, views) ORDER BY views DESC, sku),"
            "  '[]') FROM skus) AS top_skus"
        )
        .format(_table(schema))
        .as_bytes(None)
    )


@lru_cache(maxsize=4096)
def _customer_sql(schema: str) -> bytes:
    return (
        SQL("SELECT 1 FROM {}.{} WHERE originator_id = %s AND topic = %s LIMIT 1")
        .format(Identifier(schema), Identifier(EVENTS_TABLE))
        .as_bytes(None)
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


async def customer_exists(conn: AsyncConnection[Any], schema: str, customer_id: UUID) -> bool:
    """A registered customer of the tenant (read from the log: no projection lag)."""
    cur = await conn.execute(_customer_sql(schema), (customer_id, Customer.Registered.TOPIC))
    return await cur.fetchone() is not None


async def customer_behaviors(
    conn: AsyncConnection[Any],
    schema: str,
    customer_id: UUID,
    *,
    type_: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[StoredBehavior]:
    """The customer's behaviours (of one type, if given) after position ``after``, in
    position order. Positions are assigned at insert, so a batch that commits late can land
    behind a page already read: this is a listing, not a change feed."""
    params: tuple[Any, ...] = (
        (customer_id, after, type_, limit) if type_ else (customer_id, after, limit)
    )
    cur = await conn.execute(_list_sql(schema, type_ is not None), params)
    return [
        StoredBehavior(
            position=r[0],
            event_id=r[1],
            customer_id=r[2],
            type=r[3],
            occurred_at=r[4].astimezone(UTC),
            recorded_at=r[5].astimezone(UTC),
            channel=r[6],
            data=r[7],
        )
        for r in await cur.fetchall()
    ]


async def behavior_summary(
    conn: AsyncConnection[Any], schema: str, customer_id: UUID
) -> BehaviorSummary:
    """Counts per type, first and last time, active days and most viewed SKUs (one round
    trip). Erased behaviours still count; their SKUs are gone."""
    cur = await conn.execute(_summary_sql(schema), (customer_id, TOP_SKUS))
    row = await cur.fetchone()
    assert row is not None
    counts = dict.fromkeys(BEHAVIOR_TYPES, 0)
    counts.update({t: int(n) for t, n in row[0].items()})
    return BehaviorSummary(
        customer_id=customer_id,
        counts=counts,
        first_at=_utc(row[1]),
        last_at=_utc(row[2]),
        distinct_days=int(row[3]),
        top_skus=[(sku, int(views)) for sku, views in row[4]],
    )
