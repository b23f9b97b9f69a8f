"""The database side of an import: the tenant's identity secret, and the stored streams a chunk
needs, read in one statement each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from infrastructure.crypto import identity_secret as read_identity_secret
from infrastructure.eventstore import EVENTS_TABLE
from infrastructure.tenancy import Tenant
from infrastructure.tenant_app import TenantApp


def identity_secret(tenant: Tenant) -> bytes:
    return read_identity_secret(tenant.datastore)


class StoredStreamsReader:
    """A chunk's stored claims (and which of its customer ids exist), or stored customers, in
    one statement each."""

    def __init__(self, app: TenantApp) -> None:
        self.app = app
        table = SQL("{}.{}").format(Identifier(app.schema), Identifier(EVENTS_TABLE))
        # One index probe per id whatever the table's statistics say (a fresh tenant's are
        # unset: the planner would pick a merge join over the whole index, and JIT it).
        self.claims_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%b::bytea[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id,"
            " originator_version, topic, state FROM {t}"
            " WHERE originator_id = CAST(encode(k.id, 'hex') AS uuid) OFFSET 0) e"
            " UNION ALL SELECT e.originator_id, 0, NULL, NULL"
            " FROM unnest(%b::uuid[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id FROM {t}"
            " WHERE originator_id = k.id AND originator_version = 1 OFFSET 0) e"
        ).format(t=table)
        self.streams_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%b::uuid[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id,"
            " originator_version, topic, state FROM {t} WHERE originator_id = k.id OFFSET 0) e"
        ).format(t=table)

    def claims(
        self, claim_ids: Sequence[bytes], customer_ids: Sequence[UUID]
    ) -> tuple[dict[bytes, list[Any]], set[UUID]]:
        rows = self._select(self.claims_statement, (list(claim_ids), list(customer_ids)))
        existing = {r["originator_id"] for r in rows if r["topic"] is None}
        events = self._decode([r for r in rows if r["topic"] is not None])
        return {k.bytes: v for k, v in events.items()}, existing

    def customers(self, customer_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        return self._decode(self._select(self.streams_statement, (list(customer_ids),)))

    def _select(self, statement: Any, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.app.datastore.transaction(commit=False) as curs:
            curs.execute("SET LOCAL jit = off")
            curs.execute(statement, params, prepare=True)
            return curs.fetchall()

    def _decode(self, rows: list[dict[str, Any]]) -> dict[UUID, list[Any]]:
        stored: dict[UUID, list[StoredEvent]] = {}
        for r in sorted(rows, key=_stream_order):
            stored.setdefault(r["originator_id"], []).append(
                StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
            )
        mapper = self.app.sealing_mapper
        mapper.prepare([e for events in stored.values() for e in events])  # keys at once
        return {k: [mapper.to_domain_event(e) for e in events] for k, events in stored.items()}


def _stream_order(row: dict[str, Any]) -> tuple[str, int]:
    return str(row["originator_id"]), int(row["originator_version"])


def forget_keys(app: TenantApp, customer_ids: Sequence[UUID]) -> None:
    """Drop written customers' data keys from the key ring's cache: an import would otherwise
    grow it by one entry per row (up to its 200,000-entry reset)."""
    app.keys.evict(customer_ids)
