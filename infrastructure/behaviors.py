"""Behaviours in PostgreSQL: an append-only table per tenant schema (docs/adr/0006).

``behaviors`` holds one row per client event id. Rows are immutable by trigger, with one
exception: erasing a customer blanks their rows' ``data`` (and the fingerprint derived from it)
inside a transaction that says so (``SET LOCAL membercore.erasure = 'on'``), keeping type and
times so counts stay right.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache
from uuid import UUID

import msgspec
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from application.behaviors import ERASED_FINGERPRINT, Appended, Behavior, CustomerState
from domain.customer import Customer
from infrastructure.eventstore import EVENTS_TABLE, SharedPoolDatastore

BEHAVIORS_TABLE = "behaviors"

_encode = msgspec.json.Encoder().encode

# Shared by every tenant's table. UPDATE is let through only in an erasure transaction, and only
# when it blanks ``data`` and ``fingerprint`` and leaves every other column as it was.
_GUARD_BODY = """
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('membercore.erasure', true) = 'on'
       AND NEW.data = '{}'::jsonb AND NEW.fingerprint = ''::bytea
       AND (NEW.position, NEW.event_id, NEW.customer_id, NEW.type, NEW.occurred_at,
            NEW.recorded_at, NEW.channel)
           IS NOT DISTINCT FROM (OLD.position, OLD.event_id, OLD.customer_id, OLD.type,
            OLD.occurred_at, OLD.recorded_at, OLD.channel) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'behaviors are immutable: % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA,
        TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
"""
_GUARD_FUNCTION = (
    "CREATE OR REPLACE FUNCTION membercore.forbid_behavior_change() RETURNS trigger"
    " LANGUAGE plpgsql AS $guard$" + _GUARD_BODY + "$guard$"
)


def _ensure_guard_function(curs: Cursor[DictRow]) -> None:
    curs.execute(
        "SELECT prosrc FROM pg_proc"
        " WHERE oid = to_regprocedure('membercore.forbid_behavior_change()')"
    )
    row = curs.fetchone()
    if row is not None and row["prosrc"] == _GUARD_BODY:
        return
    # Tenants provisioned at once would otherwise race on the one catalog row (unique violation
    # or "tuple concurrently updated"); the control schema's bootstrap lock serialises them.
    curs.execute("SELECT pg_advisory_xact_lock(hashtext('membercore.bootstrap'))")
    curs.execute(_GUARD_FUNCTION)


def install_behaviors(curs: Cursor[DictRow], schema: str) -> None:
    """Idempotent DDL: the table, its indexes and its immutability triggers."""
    _ensure_guard_function(curs)
    s = Identifier(schema)
    table = SQL("{}.{}").format(s, Identifier(BEHAVIORS_TABLE))
    curs.execute(
        SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " position bigserial PRIMARY KEY,"
            " event_id text NOT NULL UNIQUE,"
            " customer_id uuid NOT NULL,"
            " type text NOT NULL,"
            " occurred_at timestamptz NOT NULL,"
            " recorded_at timestamptz NOT NULL DEFAULT now(),"
            " channel text,"
            " data jsonb NOT NULL,"
            " fingerprint bytea NOT NULL)"
        ).format(table)
    )
    # Summaries and time-window reads (stats, tags, segments) by customer and time.
    curs.execute(
        SQL(
            "CREATE INDEX IF NOT EXISTS behaviors_customer_occurred"
            " ON {} (customer_id, occurred_at)"
        ).format(table)
    )
    # The per-customer listing, paged by position.
    curs.execute(
        SQL(
            "CREATE INDEX IF NOT EXISTS behaviors_customer_position ON {} (customer_id, position)"
        ).format(table)
    )
    curs.execute(SQL("DROP TRIGGER IF EXISTS behaviors_immutable ON {}").format(table))
    curs.execute(
        SQL(
            "CREATE TRIGGER behaviors_immutable BEFORE UPDATE OR DELETE ON {}"
            " FOR EACH ROW EXECUTE FUNCTION membercore.forbid_behavior_change()"
        ).format(table)
    )
    curs.execute(SQL("DROP TRIGGER IF EXISTS behaviors_no_truncate ON {}").format(table))
    curs.execute(
        SQL(
            "CREATE TRIGGER behaviors_no_truncate BEFORE TRUNCATE ON {}"
            " FOR EACH STATEMENT EXECUTE FUNCTION membercore.forbid_event_change()"
        ).format(table)
    )


# Erasing takes this per-tenant lock exclusively and appending takes it shared, so a batch
# either commits before an erasure's UPDATE (which then blanks its rows) or checks the customers
# after the erasure committed (and sees the customer erased): none slips in between.
_ERASURE_LOCK = "hashtext('membercore.behaviors'), hashtext(%s)"


def erase_customer_behaviors(curs: Cursor[DictRow], schema: str, customer_id: UUID) -> int:
    """Blank the ``data`` (and fingerprint) of every behaviour of the customer, in the caller's
    transaction; type, times and channel stay so counts do. Returns the rows blanked.

    ``curs`` must be inside a transaction: the permission is ``SET LOCAL`` and is withdrawn again
    before returning, so the rest of the transaction cannot change behaviours. Batches being
    appended for the tenant are waited for, and new ones wait until the transaction ends; the
    ``Customer.Erased`` event committed in the same transaction then turns them away.
    """
    curs.execute("SELECT pg_advisory_xact_lock(" + _ERASURE_LOCK + ")", (schema,))
    curs.execute("SET LOCAL membercore.erasure = 'on'")
    curs.execute(
        SQL(
            "WITH erased AS (UPDATE {}.{} SET data = '{{}}'::jsonb, fingerprint = %s"
            " WHERE customer_id = %s AND fingerprint <> %s RETURNING 1)"
            " SELECT count(*) AS n FROM erased"
        ).format(Identifier(schema), Identifier(BEHAVIORS_TABLE)),
        (ERASED_FINGERPRINT, customer_id, ERASED_FINGERPRINT),
    )
    # Fetched (not rowcount): in pipeline mode, as in the group commit, rowcount is unknown.
    row = curs.fetchone()
    # (A failed UPDATE aborts the transaction, which takes the setting with it.)
    curs.execute("SET LOCAL membercore.erasure = 'off'")
    return int(row["n"]) if row else 0


@lru_cache(maxsize=4096)
def _statements(schema: str) -> tuple[Composed, Composed, Composed]:
    s = Identifier(schema)
    table = SQL("{}.{}").format(s, Identifier(BEHAVIORS_TABLE))
    customers = SQL(
        "SELECT originator_id, topic FROM {}.{}"
        " WHERE originator_id = ANY(%s::uuid[]) AND topic = ANY(%s::text[])"
    ).format(s, Identifier(EVENTS_TABLE))
    # Rows go in in event-id order, so batches sharing ids lock them in one order (no deadlock);
    # a batch racing another with the same id waits for it, then skips the id.
    insert = SQL(
        "INSERT INTO {t} (event_id, customer_id, type, occurred_at, channel, data, fingerprint)"
        " SELECT event_id, customer_id, type, occurred_at, channel, data::jsonb, fingerprint"
        " FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::timestamptz[], %s::text[],"
        " %s::text[], %s::bytea[])"
        " AS i(event_id, customer_id, type, occurred_at, channel, data, fingerprint)"
        ' ORDER BY event_id COLLATE "C"'
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    ).format(t=table)
    taken = SQL("SELECT event_id, fingerprint FROM {} WHERE event_id = ANY(%s::text[])").format(
        table
    )
    return customers, insert, taken


_CUSTOMER_TOPICS = [Customer.Registered.TOPIC, Customer.Erased.TOPIC]


class PostgresBehaviorStore:
    """:class:`application.behaviors.BehaviorStore` on one tenant schema."""

    def __init__(self, datastore: SharedPoolDatastore) -> None:
        self._datastore = datastore
        self._schema = datastore.schema
        self._customers, self._insert, self._taken = _statements(datastore.schema)

    def append(self, behaviors: Sequence[Behavior]) -> Appended:
        if not behaviors:
            return Appended({}, {})
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_advisory_xact_lock_shared(" + _ERASURE_LOCK + ")", (self._schema,)
            )
            states = self._states(curs, {b.customer_id for b in behaviors})
            storable = [b for b in behaviors if states.get(b.customer_id) is CustomerState.ACTIVE]
            if not storable:
                return Appended(states, {})
            curs.execute(
                self._insert,
                (
                    [b.event_id for b in storable],
                    [b.customer_id for b in storable],
                    [b.type for b in storable],
                    [b.occurred_at for b in storable],
                    [b.channel for b in storable],
                    [_encode(b.data).decode() for b in storable],
                    [b.fingerprint for b in storable],
                ),
            )
            inserted = {row["event_id"] for row in curs.fetchall()}
            others = [b.event_id for b in storable if b.event_id not in inserted]
            if not others:
                return Appended(states, {})
            curs.execute(self._taken, (others,))
            taken = {row["event_id"]: bytes(row["fingerprint"]) for row in curs.fetchall()}
            return Appended(states, taken)

    def _states(
        self, curs: Cursor[DictRow], customer_ids: Collection[UUID]
    ) -> dict[UUID, CustomerState]:
        """Registered customers among ``customer_ids`` and whether they were erased (one query)."""
        curs.execute(self._customers, (list(customer_ids), _CUSTOMER_TOPICS))
        registered: set[UUID] = set()
        erased: set[UUID] = set()
        for row in curs.fetchall():
            (registered if row["topic"] == Customer.Registered.TOPIC else erased).add(
                row["originator_id"]
            )
        return {
            c: CustomerState.ERASED if c in erased else CustomerState.ACTIVE for c in registered
        }
