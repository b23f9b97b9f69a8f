"""PostgreSQL idempotency store, one table per tenant schema (see application.idempotency)."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from application.errors import IdempotencyKeyReused, RequestInProgress
from application.idempotency import IdempotencyKey, StoredAnswer, StoredOutcome
from infrastructure.eventstore import SharedPoolDatastore

# A claim whose owner crashed is taken over after this long (reliability case C8).
CLAIM_SECONDS = 30


def idempotency_ddl(schema: str) -> list[Composed]:
    table = SQL("{}.idempotency_keys").format(Identifier(schema))
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " scope text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
            " state text NOT NULL CHECK (state IN ('processing', 'done')),"
            " status int, body bytea, position bigint,"
            " locked_until timestamptz NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (scope, key))"
        ).format(table),
        # Rows completed before outcomes were stored carry only an HTTP status (see _outcome).
        SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS outcome text").format(table),
    ]


def _outcome(row: DictRow) -> StoredOutcome:
    outcome = row["outcome"]
    if outcome in ("created", "done", "rejected"):
        return outcome  # type: ignore[no-any-return]
    status = row["status"]
    return "created" if status == 201 else "done" if status < 300 else "rejected"


class PostgresIdempotencyStore:
    def __init__(self, datastore: SharedPoolDatastore) -> None:
        t = SQL("{}.idempotency_keys").format(Identifier(datastore.schema))
        self._datastore = datastore
        self._claim = SQL(
            "INSERT INTO {t} (scope, key, fingerprint, state, locked_until)"
            " VALUES (%s, %s, %s, 'processing', now() + make_interval(secs => %s))"
            " ON CONFLICT DO NOTHING RETURNING 1"
        ).format(t=t)
        self._read = SQL(
            "SELECT fingerprint, state, outcome, status, body, position,"
            " locked_until < now() AS stale FROM {t} WHERE scope = %s AND key = %s"
        ).format(t=t)
        self._take_over = SQL(
            "UPDATE {t} SET locked_until = now() + make_interval(secs => %s)"
            " WHERE scope = %s AND key = %s AND state = 'processing' AND locked_until < now()"
            " RETURNING 1"
        ).format(t=t)
        # A done key is final: a late completion (a retry that lost track of a commit) is ignored.
        self._complete = SQL(
            "UPDATE {t} SET state = 'done', outcome = %s, body = %s, position = %s"
            " WHERE scope = %s AND key = %s AND state = 'processing'"
        ).format(t=t)
        self._release = SQL(
            "DELETE FROM {t} WHERE scope = %s AND key = %s AND state = 'processing'"
        ).format(t=t)

    def begin(self, key: IdempotencyKey) -> StoredAnswer | None:
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._claim, (key.scope, key.key, key.fingerprint, CLAIM_SECONDS))
            if curs.fetchone():
                return None
            curs.execute(self._read, (key.scope, key.key))
            row = curs.fetchone()
            if row is None:  # released between our insert and read: claim again
                return self.begin(key)
            # Rows completed before outcomes were stored carry a fingerprint of the wire body,
            # which a command's fingerprint never equals: they replay their answer to the same
            # scope and key (a body reused under such a key is no longer told apart).
            legacy = row["state"] == "done" and row["outcome"] is None
            if row["fingerprint"] != key.fingerprint and not legacy:
                raise IdempotencyKeyReused(key.key)
            if row["state"] == "done":
                return self._stored(row)
            if row["stale"]:
                curs.execute(self._take_over, (CLAIM_SECONDS, key.scope, key.key))
                if curs.fetchone():
                    return None
            raise RequestInProgress(key.key)

    def answer(self, key: IdempotencyKey) -> StoredAnswer | None:
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._read, (key.scope, key.key))
            row = curs.fetchone()
            return self._stored(row) if row is not None and row["state"] == "done" else None

    @staticmethod
    def _stored(row: DictRow) -> StoredAnswer:
        return StoredAnswer(_outcome(row), msgspec.json.decode(row["body"]), row["position"])

    def completion(self, key: IdempotencyKey, answer: StoredAnswer) -> Any:
        encoded = msgspec.json.encode(answer.body)

        def write(curs: Cursor[DictRow], position: int) -> None:
            curs.execute(self._complete, (answer.outcome, encoded, position, key.scope, key.key))

        return write

    def complete(self, key: IdempotencyKey, answer: StoredAnswer) -> None:
        body = msgspec.json.encode(answer.body)
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                self._complete, (answer.outcome, body, answer.position, key.scope, key.key)
            )

    def release(self, key: IdempotencyKey) -> None:
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(self._release, (key.scope, key.key))
