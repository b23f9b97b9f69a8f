"""Async reads of the query tables for the API (no thread hop on the hot path)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, Cursor
from psycopg.sql import SQL, Identifier

from infrastructure.tenancy import TRACKING_TABLE
from projections.customer_stats import profile_stats_sql
from projections.level_membership import profile_levels_sql
from projections.points_balance import profile_points_sql

MAX_WAIT_SECONDS = 5.0
_NIL = UUID(int=0)


class ReadModelBehind(Exception):
    """The read model did not reach the requested position within the bound."""

    code = "read_model_behind"

    def __init__(self, projection: str, wanted: int, reached: int) -> None:
        self.projection, self.wanted, self.reached = projection, wanted, reached
        super().__init__(f"{projection} is at position {reached}, {wanted} was requested")


class PositionBeyondHead(Exception):
    """The requested position is past the log's head: no committed write has it, so waiting
    cannot help (a client's position comes from a command that committed before answering)."""

    code = "position_beyond_head"

    def __init__(self, wanted: int, head: int) -> None:
        self.wanted, self.head = wanted, head
        super().__init__(f"min_position {wanted} is beyond the log's head ({head})")


@lru_cache(maxsize=4096)
def _head_sql(schema: str) -> bytes:
    return (
        SQL("SELECT coalesce(max(notification_id), 0) FROM {}.membercore_events")
        .format(Identifier(schema))
        .as_bytes(None)
    )


@lru_cache(maxsize=4096)
def _tracked_sql(schema: str) -> bytes:
    # Composed once per schema: building and rendering psycopg SQL objects on every request
    # is measurable on the hot read path.
    return (
        SQL("SELECT notification_id FROM {}.{} WHERE application_name = %s")
        .format(Identifier(schema), Identifier(TRACKING_TABLE))
        .as_bytes(None)
    )


def profile_expression(schema: str) -> str:
    """The profile document of row ``p`` with the parts other projections own laid over it
    (stats, points, levels), in one statement: one round trip per profile read."""
    return (
        "(p.doc::jsonb || jsonb_build_object("
        f"'stats', COALESCE({profile_stats_sql(schema)}, p.doc::jsonb->'stats'),"
        f"'points', COALESCE({profile_points_sql(schema)}, jsonb_build_object()),"
        f"'levels', COALESCE({profile_levels_sql(schema)}, jsonb_build_object())))"
    )


@lru_cache(maxsize=4096)
def _profile_sql(schema: str) -> bytes:
    return (
        SQL(
            "SELECT " + profile_expression(schema) + "::text FROM {}.customer_profile p"
            " WHERE p.customer_id = %s"
        )
        .format(Identifier(schema))
        .as_bytes(None)
    )


async def tracked(conn: AsyncConnection[Any], schema: str, projection: str) -> int:
    cur = await conn.execute(_tracked_sql(schema), (projection,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def wait_for(
    conn: AsyncConnection[Any],
    schema: str,
    projection: str,
    position: int | None,
    *,
    timeout: float = MAX_WAIT_SECONDS,
) -> None:
    """Read-your-writes: wait (bounded) until ``projection`` has applied ``position``; a
    position beyond the log's head is refused at once (``PositionBeyondHead``)."""
    if not position:
        return
    deadline = time.monotonic() + timeout
    delay = 0.002
    checked_head = False
    while (reached := await tracked(conn, schema, projection)) < position:
        if not checked_head:
            cur = await conn.execute(_head_sql(schema))
            row = await cur.fetchone()
            head = int(row[0]) if row else 0
            if position > head:
                raise PositionBeyondHead(position, head)
            checked_head = True
        if time.monotonic() >= deadline:
            raise ReadModelBehind(projection, position, reached)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


# The projections a profile document is drawn from: a read with ``min_position`` waits for each.
PROFILE_PARTS = ("customer_profile", "customer_stats", "points_balance", "level_membership")


async def wait_for_profile(conn: AsyncConnection[Any], schema: str, position: int | None) -> None:
    for projection in PROFILE_PARTS:
        await wait_for(conn, schema, projection, position)


async def profile_doc(conn: AsyncConnection[Any], schema: str, customer_id: UUID) -> str | None:
    cur = await conn.execute(_profile_sql(schema), (customer_id,))
    row = await cur.fetchone()
    return row[0] if row else None


async def profile_docs_by(
    conn: AsyncConnection[Any],
    schema: str,
    *,
    column: str,
    key: tuple[str, ...],
    after: UUID | None = None,
    limit: int = 100,
) -> list[tuple[UUID, str]]:
    """Profiles whose ``column`` equals ``key`` (``(type, value)`` for ``identity``, ``(value,)``
    for ``phone`` or ``email``), in customer-id order after the ``after`` cursor."""
    s = Identifier(schema)
    if column == "identity":
        query = SQL(
            "SELECT p.customer_id, " + profile_expression(schema) + "::text"
            " FROM {0}.customer_identity i"
            " JOIN {0}.customer_profile p USING (customer_id)"
            " WHERE i.type = %s AND i.value = %s AND p.customer_id > %s"
            " ORDER BY p.customer_id LIMIT %s"
        ).format(s)
        params: tuple[Any, ...] = (*key, after or _NIL, limit)
    else:
        query = SQL(
            "SELECT p.customer_id, " + profile_expression(schema) + "::text"
            " FROM {}.customer_profile p"
            " WHERE p.{} = %s AND p.customer_id > %s ORDER BY p.customer_id LIMIT %s"
        ).format(s, Identifier(column))
        params = (*key, after or _NIL, limit)
    cur = await conn.execute(query, params)
    return [(r[0], r[1]) for r in await cur.fetchall()]


@lru_cache(maxsize=4096)
def _owned_sql(schema: str, paged: bool) -> bytes:
    # ``owner`` is set only for active customers (not merged away, not erased).
    page = " AND customer_id > %s ORDER BY customer_id LIMIT %s" if paged else " ORDER BY 1"
    return (
        SQL("SELECT customer_id FROM {}.customer_profile WHERE owner = %s" + page)
        .format(Identifier(schema))
        .as_bytes(None)
    )


async def profile_ids_by_owner(
    conn: AsyncConnection[Any],
    schema: str,
    owner: str,
    after: UUID | None = None,
    limit: int = 100,
) -> list[UUID]:
    """Active customers (not merged away, not erased) owned by ``owner``, in id order after the
    ``after`` cursor."""
    cur = await conn.execute(_owned_sql(schema, True), (owner, after or _NIL, limit))
    return [r[0] for r in await cur.fetchall()]


def owned_by(curs: Cursor[Any], schema: str, owner: str) -> list[UUID]:
    """Every active customer owned by ``owner``, in id order (for a handover, in the caller's
    transaction). Works with tuple and dict rows."""
    curs.execute(_owned_sql(schema, False), (owner,))
    return [r["customer_id"] if isinstance(r, dict) else r[0] for r in curs.fetchall()]


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a customer (``customer_history``); ``changes`` lists
    ``{"field", "before", "after"}`` (empty once the customer was erased)."""

    position: int
    customer_id: UUID
    at: datetime
    actor: str
    channel: str | None
    kind: str
    changes: list[dict[str, Any]]


@lru_cache(maxsize=4096)
def _history_sql(schema: str) -> bytes:
    return (
        SQL(
            "SELECT position, customer_id, at, actor, channel, kind, changes"
            " FROM {}.customer_history WHERE customer_id = %s AND position > %s"
            " ORDER BY position LIMIT %s"
        )
        .format(Identifier(schema))
        .as_bytes(None)
    )


async def history(
    conn: AsyncConnection[Any],
    schema: str,
    customer_id: UUID,
    after_position: int = 0,
    limit: int = 100,
) -> list[HistoryEntry]:
    """The customer's changes after ``after_position``, oldest first."""
    cur = await conn.execute(_history_sql(schema), (customer_id, after_position, limit))
    return [
        HistoryEntry(r[0], r[1], r[2].astimezone(UTC), r[3], r[4], r[5], r[6])
        for r in await cur.fetchall()
    ]


@dataclass(frozen=True)
class MergeCandidate:
    """Two customers suggested as one person (``reason``: ``identity:<type>``); ``position`` is
    the suggestion's position, the cursor of the listing."""

    customer_id: UUID
    other_id: UUID
    reason: str
    suggested_at: datetime
    position: int


@lru_cache(maxsize=4096)
def _candidates_sql(schema: str) -> bytes:
    return (
        SQL(
            "SELECT customer_id, other_id, reason, suggested_at, position"
            " FROM {}.merge_candidates WHERE position > %s ORDER BY position LIMIT %s"
        )
        .format(Identifier(schema))
        .as_bytes(None)
    )


async def merge_candidates(
    conn: AsyncConnection[Any], schema: str, after: int | None = None, limit: int = 100
) -> list[MergeCandidate]:
    """Listed merge candidates in suggestion order, after the position ``after``."""
    cur = await conn.execute(_candidates_sql(schema), (after or 0, limit))
    return [
        MergeCandidate(r[0], r[1], r[2], r[3].astimezone(UTC), r[4]) for r in await cur.fetchall()
    ]


# Tenants per health statement: one statement for every tenant and projection made the planner
# of a single backend grow past 20 GB with a few thousand tenants (seen in the test database).
LAG_CHUNK = 200


async def lags(
    conn: AsyncConnection[Any], schemas: list[str], projections: list[str]
) -> dict[str, int]:
    """Per projection, events behind the head summed over tenants: per tenant its head and its
    tracking rows, a bounded number of tenants per round trip."""
    result = dict.fromkeys(projections, 0)
    for start in range(0, len(schemas), LAG_CHUNK):
        chunk = schemas[start : start + LAG_CHUNK]
        parts = [
            SQL(
                "SELECT coalesce((SELECT max(notification_id) FROM {0}.membercore_events), 0),"
                " (SELECT json_object_agg(application_name, notification_id) FROM {0}.{1})::text"
            ).format(Identifier(schema), Identifier(TRACKING_TABLE))
            for schema in chunk
        ]
        cur = await conn.execute(SQL(" UNION ALL ").join(parts))
        for head, tracked_json in await cur.fetchall():
            tracked = json.loads(tracked_json) if tracked_json else {}
            for name in projections:
                result[name] += max(0, int(head) - int(tracked.get(name) or 0))
    return result
