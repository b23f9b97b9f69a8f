"""LevelMembershipProjection: one row per customer per level group.

``level_membership`` rows: ``(customer_id, group_code)`` is the key; ``level`` is the level in
force (override included) since ``since``; ``base_level`` the computed level beneath an override;
``override_id``/``override_level``/``override_until`` the override in force (null: none);
``check_at`` when the assessment job should next look (null: at the bottom of the ladder, nothing
to assess); ``position`` the last event applied. An override whose end date has passed reads as
ended (``profile_levels_sql``, ``due_memberships``) even before the job records its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.level_membership import LevelMembership
from infrastructure.tenancy import Tenant
from projections.engine import Positioned, Projection

TABLE = "level_membership"
M = LevelMembership
COLUMNS = (
    "customer_id",
    "group_code",
    "membership_id",
    "level",
    "since",
    "base_level",
    "override_id",
    "override_level",
    "override_until",
    "check_at",
    "position",
)


def profile_levels_sql(schema: str) -> str:
    """A scalar subquery (jsonb) for the profile query: ``{"<group>": "<level>", ...}`` of the
    customer ``p.customer_id`` (``{}`` when on no ladder)."""
    table = Identifier(schema, TABLE).as_string(None)
    return (
        "(SELECT COALESCE(jsonb_object_agg(l.group_code, CASE WHEN l.override_until <= now()"
        " THEN l.base_level ELSE l.level END), jsonb_build_object())"
        f" FROM {table} l WHERE l.customer_id = p.customer_id)"
    )


def due_memberships(tenant: Tenant, as_of: datetime) -> list[UUID]:
    """Memberships the assessment job has something to look at by ``as_of``: an assessment or a
    warning due, or an override ending."""
    with tenant.datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL(
                "SELECT membership_id FROM {}.{} WHERE check_at <= %s OR override_until <= %s"
                " ORDER BY membership_id"
            ).format(Identifier(tenant.schema), Identifier(TABLE)),
            (as_of, as_of),
        )
        return [row["membership_id"] for row in curs.fetchall()]


def _apply(row: dict[str, Any], e: Any, position: int) -> None:
    ts = e.timestamp
    row["position"] = position
    if isinstance(e, M.Upgraded | M.Downgraded):
        row["base_level"] = e.to_level
        row["check_at"] = e.check_at
        until = row["override_until"]
        if row["override_level"] is None or (until is not None and until <= ts):
            since = e.assessment_at if isinstance(e, M.Downgraded) and e.assessment_at else ts
            _set_level(row, e.to_level, since)
    elif isinstance(e, M.Assessed | M.DowngradeWarned):
        row["check_at"] = e.check_at
    elif isinstance(e, M.OverrideSet):
        row["override_id"], row["override_level"] = e.override_id, e.level
        row["override_until"] = e.until
        _set_level(row, e.level, ts)
    elif isinstance(e, M.OverrideEnded):
        row["override_id"] = row["override_level"] = row["override_until"] = None
        _set_level(row, row["base_level"], e.ended_at)


def _set_level(row: dict[str, Any], level: str, since: datetime) -> None:
    if row["level"] != level:
        row["level"], row["since"] = level, since


class LevelMembershipProjection(Projection):
    name: ClassVar[str] = "level_membership"
    tables: ClassVar[tuple[str, ...]] = (TABLE,)
    topics: ClassVar[frozenset[str]] = frozenset(
        cls.TOPIC
        for cls in (
            M.Opened,
            M.Upgraded,
            M.Downgraded,
            M.Assessed,
            M.OverrideSet,
            M.OverrideEnded,
            M.DowngradeWarned,
        )
    )

    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        s, t = Identifier(schema), Identifier(TABLE + suffix)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " customer_id uuid NOT NULL, group_code text NOT NULL,"
                " membership_id uuid NOT NULL UNIQUE, level text NOT NULL,"
                " since timestamptz NOT NULL, base_level text NOT NULL, override_id text,"
                " override_level text, override_until timestamptz, check_at timestamptz,"
                " position bigint NOT NULL, PRIMARY KEY (customer_id, group_code))"
            ).format(s, t)
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (check_at)").format(
                Identifier(f"{TABLE}{suffix}_check_at"), s, t
            )
        )

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        table = SQL("{}.{}").format(Identifier(schema), Identifier(TABLE + suffix))
        ids = list({p.event.originator_id for p in events})
        curs.execute(SQL("SELECT * FROM {} WHERE membership_id = ANY(%s)").format(table), (ids,))
        rows: dict[UUID, dict[str, Any]] = {r["membership_id"]: dict(r) for r in curs.fetchall()}
        touched: set[UUID] = set()
        for p in events:
            e = p.event
            if isinstance(e, M.Opened):
                rows[e.originator_id] = {
                    "customer_id": e.customer_id,
                    "group_code": e.group,
                    "membership_id": e.originator_id,
                    "level": e.level,
                    "since": e.timestamp,
                    "base_level": e.level,
                    "override_id": None,
                    "override_level": None,
                    "override_until": None,
                    "check_at": None,
                    "position": p.position,
                }
            elif e.originator_id in rows:
                _apply(rows[e.originator_id], e, p.position)
            else:
                continue
            touched.add(e.originator_id)
        if not touched:
            return
        columns = SQL(", ").join(Identifier(c) for c in COLUMNS)
        updates = SQL(", ").join(
            SQL("{} = EXCLUDED.{}").format(Identifier(c), Identifier(c)) for c in COLUMNS[2:]
        )
        curs.executemany(
            SQL(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (customer_id, group_code)"
                " DO UPDATE SET {}"
            ).format(table, columns, SQL(", ").join(SQL("%s") for _ in COLUMNS), updates),
            [tuple(rows[m][c] for c in COLUMNS) for m in touched],
        )
