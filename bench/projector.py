"""(b) Projector catch-up: ``catch_up(CustomerProfileProjection)`` over 100,000 events from zero.

The events (one Customer.Registered per customer) are saved in large batches through the tenant's
application, then the live projection is caught up from position 0 with batch sizes 1000, 2000
(the service default) and 5000. The baseline is a naive projector in the same run over the same
log: one notification selected at a time, decoded, and its profile row, identity row and tracking
row upserted in a transaction of its own. Targets: >= 50,000 events/s and >= 20x the naive loop.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import msgspec
from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from bench.common import (
    Check,
    CpuMeter,
    Env,
    check,
    create_tenant,
    fmt,
    heading,
    seed_customers,
    show,
)
from domain.customer import Customer
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import TRACKING_TABLE, Tenant
from projections.customer_profile.document import new_profile
from projections.customer_profile.projection import CustomerProfileProjection
from projections.engine import catch_up

EVENTS = int(os.environ.get("BENCH_EVENTS") or 100_000)
NAIVE_SAMPLE = min(5_000, EVENTS)
BATCH_SIZES = (1000, 2000, 5000)
HEADLINE_BATCH = Settings().projection_batch  # what the worker uses unless configured
TARGET_RATE = 50_000.0
TARGET_RATIO = 20.0


class _TimedProjection(CustomerProfileProjection):
    """The live projection, timing its ``apply`` (doc building and the upserts) per batch."""

    def __init__(self) -> None:
        self.apply_seconds = 0.0

    def apply(self, curs: Any, schema: str, events: Any, suffix: str = "") -> None:
        started = time.perf_counter()
        super().apply(curs, schema, events, suffix)
        self.apply_seconds += time.perf_counter() - started


def _reset(tenant: Tenant, projection: CustomerProfileProjection) -> None:
    s = Identifier(tenant.schema)
    with tenant.datastore.transaction(commit=True) as curs:
        for table in projection.tables:
            curs.execute(SQL("TRUNCATE {}.{}").format(s, Identifier(table)))
        curs.execute(
            SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                s, Identifier(TRACKING_TABLE)
            ),
            (projection.name,),
        )


def _vacuum(tenant: Tenant) -> None:
    # Freshly written rows: set hint bits and statistics once, so every timed run reads alike.
    with tenant.datastore.get_connection() as conn:
        conn.execute(SQL("VACUUM (ANALYZE) {}.membercore_events").format(Identifier(tenant.schema)))


def _naive(tenant: Tenant, sample: int) -> tuple[int, float]:
    """One event per transaction into scratch tables; returns (events, seconds)."""
    s = Identifier(tenant.schema)
    select = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state"
        " FROM {}.membercore_events WHERE notification_id > %s AND topic = ANY(%s)"
        " ORDER BY notification_id LIMIT 1"
    ).format(s)
    upsert_profile = SQL(
        "INSERT INTO {}.naive_profile (customer_id, doc, phone, email, position)"
        " VALUES (%s, %s::json, %s, %s, %s) ON CONFLICT (customer_id) DO UPDATE"
        " SET doc = EXCLUDED.doc, phone = EXCLUDED.phone, email = EXCLUDED.email,"
        " position = EXCLUDED.position"
    ).format(s)
    upsert_identity = SQL(
        "INSERT INTO {}.naive_identity (type, value, customer_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (type, value) DO UPDATE SET customer_id = EXCLUDED.customer_id"
    ).format(s)
    upsert_tracking = SQL(
        "INSERT INTO {}.naive_tracking (name, position) VALUES ('naive', %s)"
        " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"
    ).format(s)
    topics = sorted(CustomerProfileProjection.topics)
    mapper = tenant.app.mapper
    encode = msgspec.json.Encoder().encode
    with tenant.datastore.get_connection() as conn:
        for ddl in (
            "CREATE TABLE {}.naive_profile (customer_id uuid PRIMARY KEY, doc json NOT NULL,"
            " phone text, email text, position bigint NOT NULL)",
            "CREATE TABLE {}.naive_identity (type text, value text, customer_id uuid NOT NULL,"
            " PRIMARY KEY (type, value))",
            "CREATE TABLE {}.naive_tracking (name text PRIMARY KEY, position bigint NOT NULL)",
        ):
            conn.execute(SQL(ddl).format(s))
        position = 0
        done = 0
        started = time.perf_counter()
        while done < sample:
            row: Any = conn.execute(select, (position, topics)).fetchone()
            if row is None:
                break
            note = Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            event = mapper.to_domain_event(note)
            with conn.transaction():
                if isinstance(event, Customer.Registered):  # the log holds nothing else here
                    doc = new_profile(event)
                    cid = event.originator_id
                    conn.execute(
                        upsert_profile,
                        (cid, encode(doc).decode(), doc["phone"], doc["email"], note.id),
                    )
                    for identity in event.identities:
                        conn.execute(upsert_identity, (identity.type, identity.value, cid))
                conn.execute(upsert_tracking, (note.id,))
            position = note.id
            done += 1
        return done, time.perf_counter() - started


def run(env: Env) -> list[Check]:
    heading(f"(b) projector catch-up over {EVENTS:,} Customer.Registered events")
    slug = "bench_proj_" + secrets.token_hex(3)
    create_tenant(env, slug)
    runtime = Runtime.open(Settings(database_url=env.url))
    try:
        tenant = runtime.tenants.get(slug)
        started = time.perf_counter()
        seed_customers(tenant, EVENTS, batch=5000)
        seconds = time.perf_counter() - started
        show("written via tenant.app.save (5,000 per save)", f"{fmt(EVENTS / seconds)} events/s")
        _vacuum(tenant)

        rates: dict[int, float] = {}
        # The default last, so it also leaves the live tables caught up for whoever reads them.
        for size in sorted(BATCH_SIZES, key=lambda b: b == HEADLINE_BATCH):
            projection = _TimedProjection()
            _reset(tenant, projection)
            meter = CpuMeter({}, env.dbname)
            started = time.perf_counter()
            applied = catch_up(tenant, projection, batch_size=size)
            seconds = time.perf_counter() - started
            cpu = meter.report()
            rates[size] = applied / seconds
            share = projection.apply_seconds / seconds
            show(
                f"catch_up batch_size={size}",
                f"{fmt(rates[size])} events/s ({applied:,} in {seconds:.2f} s;"
                f" {share:.0%} in projection.apply)",
            )
            if size == HEADLINE_BATCH:
                show("   CPU during that catch-up", cpu)

        done, seconds = _naive(tenant, NAIVE_SAMPLE)
        naive = done / seconds
        show(
            "baseline: naive, 1 event per transaction",
            f"{fmt(naive)} events/s ({done:,} in {seconds:.2f} s)",
        )
    finally:
        runtime.close()

    headline = rates[HEADLINE_BATCH]
    best = max(rates, key=lambda b: rates[b])
    show(f"ratio catch_up (batch {HEADLINE_BATCH}) / naive", f"{headline / naive:.1f}x")
    if best != HEADLINE_BATCH:
        show(f"best batch size: {best}", f"{fmt(rates[best])} events/s, {rates[best] / naive:.1f}x")
    return [
        check(
            Check(
                f"(b) catch_up events/s (batch {HEADLINE_BATCH})", headline, TARGET_RATE, "events/s"
            )
        ),
        check(
            Check("(b) catch_up / naive one-per-transaction", headline / naive, TARGET_RATIO, "x")
        ),
    ]
