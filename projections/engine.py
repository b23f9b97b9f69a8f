"""Projection machinery: batched, exactly-once catch-up of query tables from a tenant's log.

Exactly once: a batch's rows and its tracking position are written in one transaction, and the
tracking update is a compare-and-set from the position the batch started at, so a re-delivered
batch, or one overtaken by another catch-up of the same projection, changes nothing.

Events are selected and decoded *before* the transaction opens (connections carry a 5 s
idle-in-transaction timeout, and decoding is the slow part); only relevant topics are read, up
to the head position read first, so the tracking position reaches the head even when the tail
holds nothing for this projection. Reading up to a head is safe because inserts take the table
lock: positions are committed in order, so nothing can later appear below a visible head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from infrastructure.tenancy import TRACKING_TABLE, Tenant


@dataclass(frozen=True)
class Positioned:
    """A decoded event and its position in the tenant's log."""

    position: int
    event: Any


class Projection(ABC):
    """One question answered by query tables. Subclasses name their tables and topics."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    topics: ClassVar[frozenset[str]]

    @abstractmethod
    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        """Create the tables (named ``table + suffix``) if they do not exist."""

    @abstractmethod
    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        """Write the effect of ``events`` (in log order) to the tables."""

    def install(self, curs: Cursor[DictRow], schema: str) -> None:
        self.create_tables(curs, schema)


def tracked_position(tenant: Tenant, tracking_name: str) -> int:
    return tenant.tracking.max_tracking_id(tracking_name) or 0


def head_position(tenant: Tenant) -> int:
    return tenant.app.recorder.max_notification_id() or 0


def catch_up(
    tenant: Tenant,
    projection: Projection,
    *,
    batch_size: int = 2000,
    tracking_name: str | None = None,
    suffix: str = "",
    until: int | None = None,
) -> int:
    """Apply every event after the tracked position up to ``until`` (default: the head now).

    Returns the number of events applied.
    """
    name = tracking_name or projection.name
    position = tracked_position(tenant, name)
    head = head_position(tenant) if until is None else until
    applied = 0
    while position < head:
        batch_end, events = _read_batch(tenant, projection, position, head, batch_size)
        try:
            with tenant.datastore.transaction(commit=True) as curs:
                if events:
                    projection.apply(curs, tenant.schema, events, suffix)
                if not _move_tracking(curs, tenant.schema, name, position, batch_end):
                    raise _Overtaken
        except _Overtaken:
            # Another catch-up of this projection (a second worker, a rebuild's swap) committed
            # since ``position`` was read; our rows were rolled back. Resume from where it got.
            position = tracked_position(tenant, name)
            continue
        applied += len(events)
        position = batch_end
    return applied


def _read_batch(
    tenant: Tenant, projection: Projection, position: int, until: int, batch_size: int
) -> tuple[int, list[Positioned]]:
    """The projection's events after ``position`` up to ``until`` (at most ``batch_size``),
    decoded outside any transaction, and the position the batch ends at."""
    notes = tenant.app.recorder.select_notifications(
        start=position,
        limit=batch_size,
        stop=until,
        topics=sorted(projection.topics),
        inclusive_of_start=False,
    )
    end = notes[-1].id if len(notes) == batch_size else until
    tenant.app.mapper.prepare(notes)
    return end, [Positioned(n.id, tenant.app.mapper.to_domain_event(n)) for n in notes]


class _Overtaken(Exception):
    """The tracking row no longer holds the position a batch started from."""


def _move_tracking(curs: Cursor[DictRow], schema: str, name: str, start: int, end: int) -> bool:
    """Move the tracking of ``name`` from ``start`` to ``end``; False if it is not at ``start``.

    Compare-and-set, not just "forward only": two batches read from the same position can end
    at different heads, and the longer one must not re-apply what the shorter one committed.
    Written after the rows, so the lock order (rows, then tracking row) is the swap's too.
    """
    curs.execute(
        SQL(
            "INSERT INTO {}.{} AS t (application_name, notification_id) VALUES (%s, %s)"
            " ON CONFLICT (application_name)"
            " DO UPDATE SET notification_id = EXCLUDED.notification_id"
            " WHERE t.notification_id = %s RETURNING 1"
        ).format(Identifier(schema), Identifier(TRACKING_TABLE)),
        (name, end, start),
    )
    return curs.fetchone() is not None


# -- rebuild ----------------------------------------------------------------------------------

REBUILD_SUFFIX = "_rebuild"


def rebuild_name(projection: Projection) -> str:
    return projection.name + "#rebuild"


def _drop_tables(curs: Cursor[DictRow], schema: str, tables: Sequence[str], suffix: str) -> None:
    for table in tables:
        curs.execute(
            SQL("DROP TABLE IF EXISTS {}.{}").format(Identifier(schema), Identifier(table + suffix))
        )


def build_fresh(tenant: Tenant, projection: Projection, *, batch_size: int = 2000) -> int:
    """Build from position 0 into empty ``*_rebuild`` tables. Returns the position reached."""
    with tenant.datastore.transaction(commit=True) as curs:
        _drop_tables(curs, tenant.schema, projection.tables, REBUILD_SUFFIX)
        projection.create_tables(curs, tenant.schema, REBUILD_SUFFIX)
        curs.execute(
            SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(tenant.schema), Identifier(TRACKING_TABLE)
            ),
            (rebuild_name(projection),),
        )
    catch_up(
        tenant,
        projection,
        batch_size=batch_size,
        tracking_name=rebuild_name(projection),
        suffix=REBUILD_SUFFIX,
    )
    return tracked_position(tenant, rebuild_name(projection))


def swap_in(tenant: Tenant, projection: Projection, *, batch_size: int = 2000) -> None:
    """Replace the live tables with the rebuilt ones, atomically.

    The live projector may have moved on while we rebuilt: under the lock on the live tracking
    row, the rebuilt tables are caught up to the live position first, so the live projector
    resumes on the new tables exactly where it was.
    """
    schema = tenant.schema
    rebuilt = rebuild_name(projection)
    with tenant.datastore.transaction(commit=True) as curs:
        # Same lock order as the live projector (its table rows, then its tracking row), so the
        # swap waits for a running batch instead of deadlocking with it.
        for table in projection.tables:
            curs.execute(
                SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
                    Identifier(schema), Identifier(table)
                )
            )
        curs.execute(
            SQL("SELECT notification_id FROM {}.{} WHERE application_name = %s FOR UPDATE").format(
                Identifier(schema), Identifier(TRACKING_TABLE)
            ),
            (projection.name,),
        )
        row = curs.fetchone()
        live = int(row["notification_id"]) if row else 0
        _catch_up_in(curs, tenant, projection, rebuilt, live, batch_size)
        for table in projection.tables:
            _swap_table(curs, schema, table)
        curs.execute(
            SQL(
                "INSERT INTO {0}.{1} (application_name, notification_id)"
                " SELECT %s, notification_id FROM {0}.{1} WHERE application_name = %s"
                " ON CONFLICT (application_name)"
                " DO UPDATE SET notification_id = EXCLUDED.notification_id"
            ).format(Identifier(schema), Identifier(TRACKING_TABLE)),
            (projection.name, rebuilt),
        )
        curs.execute(
            SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(schema), Identifier(TRACKING_TABLE)
            ),
            (rebuilt,),
        )


def _catch_up_in(
    curs: Cursor[DictRow],
    tenant: Tenant,
    projection: Projection,
    tracking_name: str,
    until: int,
    batch_size: int,
) -> None:
    """Bring the rebuilt tables to ``until`` inside the caller's (swap) transaction."""
    position = tracked_position(tenant, tracking_name)
    while position < until:
        end, events = _read_batch(tenant, projection, position, until, batch_size)
        if events:
            projection.apply(curs, tenant.schema, events, REBUILD_SUFFIX)
        if not _move_tracking(curs, tenant.schema, tracking_name, position, end):
            # Only a second rebuild of the same projection moves this row: abort the swap.
            raise _Overtaken(f"{tracking_name} moved during the swap; run the rebuild again")
        position = end


def _swap_table(curs: Cursor[DictRow], schema: str, table: str) -> None:
    fresh = table + REBUILD_SUFFIX
    curs.execute(SQL("DROP TABLE {}.{}").format(Identifier(schema), Identifier(table)))
    curs.execute(
        SQL("ALTER TABLE {}.{} RENAME TO {}").format(
            Identifier(schema), Identifier(fresh), Identifier(table)
        )
    )
    # Index names are per schema: give the new table's indexes the live names, so the next
    # rebuild can create its *_rebuild indexes again.
    curs.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (schema, table),
    )
    for row in curs.fetchall():
        old = row["indexname"]
        if REBUILD_SUFFIX in old:
            curs.execute(
                SQL("ALTER INDEX {}.{} RENAME TO {}").format(
                    Identifier(schema), Identifier(old), Identifier(old.replace(REBUILD_SUFFIX, ""))
                )
            )


def rebuild(tenant: Tenant, projection: Projection, *, batch_size: int = 2000) -> int:
    """Rebuild from the log into fresh tables and swap them in. Returns the position reached."""
    build_fresh(tenant, projection, batch_size=batch_size)
    swap_in(tenant, projection, batch_size=batch_size)
    return tracked_position(tenant, projection.name)
