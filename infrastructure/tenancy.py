"""Tenants: a directory in the control schema, one PostgreSQL schema per tenant, hashed API keys.

Every tenant schema holds its event table (``membercore_events``, immutable by trigger), the
idempotency keys, the projections' tracking table and their query tables. The directory records
which database holds each tenant so tenants can later be spread over several servers.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from application.errors import TenantExists, TenantNotFound
from application.permissions import Role
from infrastructure.crypto import crypto_ddl
from infrastructure.eventstore import EVENTS_TABLE, SharedPoolDatastore, TenantRecorder
from infrastructure.idempotency import PostgresIdempotencyStore, idempotency_ddl
from infrastructure.tenant_app import TenantApp

SLUG = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
CONTROL_SCHEMA = "membercore"
TRACKING_TABLE = "projection_tracking"
# Bump when the per-tenant DDL changes; tenants below it are upgraded when first loaded.
TENANT_SCHEMA_VERSION = 5

SchemaInstaller = Callable[[Cursor[DictRow], str], None]
"""Creates (idempotently) the tables one component needs in a tenant schema."""

_CONTROL_DDL = """
CREATE SCHEMA IF NOT EXISTS membercore;
CREATE TABLE IF NOT EXISTS membercore.tenants (
    slug text PRIMARY KEY,
    schema_name text UNIQUE NOT NULL,
    database text NOT NULL DEFAULT 'default',
    schema_version int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS membercore.api_keys (
    key_hash bytea PRIMARY KEY,
    key_id text UNIQUE NOT NULL,
    tenant text NOT NULL REFERENCES membercore.tenants (slug),
    role text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE OR REPLACE FUNCTION membercore.forbid_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA,
        TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
"""


class InvalidSlug(ValueError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"tenant slug {slug!r} must match {SLUG.pattern}")


def schema_for(slug: str) -> str:
    if not SLUG.match(slug):
        raise InvalidSlug(slug)
    return f"t_{slug}"


def ensure_control_schema(pool: Any) -> None:
    with pool.connection() as conn, conn.transaction():
        # Serialise concurrent bootstraps (several processes starting at once).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('membercore.bootstrap'))")
        conn.execute(_CONTROL_DDL)


def _event_store_ddl(curs: Cursor[DictRow], recorder: TenantRecorder, schema: str) -> None:
    # Reuse the library's own table and index statements (not its composite type or functions).
    for statement in recorder.sql_create_statements:
        text = statement.as_string()
        if "CREATE TABLE" in text or "CREATE UNIQUE INDEX" in text:
            curs.execute(statement)
    table = SQL("{}.{}").format(Identifier(schema), Identifier(EVENTS_TABLE))
    curs.execute(SQL("DROP TRIGGER IF EXISTS events_immutable ON {}").format(table))
    curs.execute(
        SQL(
            "CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON {}"
            " FOR EACH ROW EXECUTE FUNCTION membercore.forbid_event_change()"
        ).format(table)
    )
    curs.execute(SQL("DROP TRIGGER IF EXISTS events_no_truncate ON {}").format(table))
    curs.execute(
        SQL(
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {}"
            " FOR EACH STATEMENT EXECUTE FUNCTION membercore.forbid_event_change()"
        ).format(table)
    )


@dataclass
class Tenant:
    slug: str
    schema: str
    app: TenantApp
    idempotency: PostgresIdempotencyStore
    tracking: PostgresTrackingRecorder = field(repr=False)

    @property
    def datastore(self) -> SharedPoolDatastore:
        assert isinstance(self.app.datastore, SharedPoolDatastore)
        return self.app.datastore


class Tenants:
    """Creates tenants and hands out their (cached) applications, all on the one shared pool."""

    def __init__(
        self,
        pool: Any,
        installers: Sequence[SchemaInstaller] = (),
        wirers: Sequence[Callable[[Tenant], None]] = (),
    ) -> None:
        self.pool = pool
        self.installers = tuple(installers)
        # Ports the outer layers provide to a tenant's application (the jobs' due index).
        self.wirers = tuple(wirers)
        self._cache: dict[str, Tenant] = {}
        self._lock = threading.Lock()
        ensure_control_schema(pool)

    def create(self, slug: str) -> Tenant:
        schema = schema_for(slug)
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM membercore.tenants WHERE slug = %s", (slug,)
            ).fetchone()
        if row:
            raise TenantExists(slug)
        tenant = self._build(slug, schema)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tenant:{slug}",))
            # Claim the slug before any DDL. A racing creator of the same slug gets here after
            # the winner committed, and must stop here: its catalog cache can still miss the
            # winner's schema (looked up while building the app), so CREATE SCHEMA IF NOT EXISTS
            # would fail with a unique violation instead of TenantExists.
            inserted = conn.execute(
                "INSERT INTO membercore.tenants (slug, schema_name, schema_version)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (slug, schema, TENANT_SCHEMA_VERSION),
            ).fetchone()
            if not inserted:
                raise TenantExists(slug)
            self._provision(conn.cursor(), tenant)
        with self._lock:
            self._cache[slug] = tenant
        return tenant

    def get(self, slug: str) -> Tenant:
        tenant = self._cache.get(slug)
        if tenant is not None:
            return tenant
        with self._lock:
            tenant = self._cache.get(slug)
            if tenant is None:
                tenant = self._load(slug)
                self._cache[slug] = tenant
            return tenant

    def slugs(self) -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT slug FROM membercore.tenants ORDER BY slug").fetchall()
        return [r["slug"] for r in rows]

    def _load(self, slug: str) -> Tenant:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT schema_name, schema_version FROM membercore.tenants WHERE slug = %s",
                (slug,),
            ).fetchone()
        if row is None:
            raise TenantNotFound(slug)
        tenant = self._build(slug, row["schema_name"])
        if row["schema_version"] < TENANT_SCHEMA_VERSION:
            with self.pool.connection() as conn, conn.transaction():
                # Processes loading the tenant at once (API, worker) upgrade it one at a time:
                # concurrent provisioning of one schema deadlocks on its tables' locks.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tenant:{slug}",))
                current = conn.execute(
                    "SELECT schema_version FROM membercore.tenants WHERE slug = %s", (slug,)
                ).fetchone()
                if current["schema_version"] < TENANT_SCHEMA_VERSION:
                    self._provision(conn.cursor(), tenant)
                    conn.execute(
                        "UPDATE membercore.tenants SET schema_version = %s WHERE slug = %s",
                        (TENANT_SCHEMA_VERSION, slug),
                    )
        return tenant

    def _build(self, slug: str, schema: str) -> Tenant:
        app = TenantApp(self.pool, schema)
        assert isinstance(app.datastore, SharedPoolDatastore)
        tracking = PostgresTrackingRecorder(app.datastore, tracking_table_name=TRACKING_TABLE)
        tenant = Tenant(slug, schema, app, PostgresIdempotencyStore(app.datastore), tracking)
        for wire in self.wirers:
            wire(tenant)
        return tenant

    def _provision(self, curs: Cursor[DictRow], tenant: Tenant) -> None:
        """Idempotent DDL for everything a tenant schema holds."""
        curs.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(tenant.schema)))
        _event_store_ddl(curs, tenant.app.tenant_recorder, tenant.schema)
        for statement in idempotency_ddl(tenant.schema):
            curs.execute(statement)
        crypto_ddl(curs, tenant.schema)
        for statement in tenant.tracking.sql_create_statements:
            curs.execute(statement)
        # The library marks single-row tracking tables with this row (it migrates tables without).
        curs.execute(
            SQL(
                "INSERT INTO {}.{} (application_name, notification_id) VALUES ('__migration__', 1)"
                " ON CONFLICT DO NOTHING"
            ).format(Identifier(tenant.schema), Identifier(TRACKING_TABLE))
        )
        for install in self.installers:
            install(curs, tenant.schema)


# -- API keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: Role
    key_id: str


def _digest(api_key: str) -> bytes:
    # Keys are 256-bit random tokens, so a fast unsalted hash is enough to make a stolen table
    # useless; a slow password hash would only add latency to every request (docs/adr/0005).
    return hashlib.sha256(api_key.encode()).digest()


class ApiKeys:
    """Issues and checks API keys. Lookups are cached briefly; revocation takes up to the TTL."""

    def __init__(self, pool: Any, *, ttl_seconds: float = 30.0) -> None:
        self.pool = pool
        self.ttl = ttl_seconds
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    def create(self, tenant: str, role: Role) -> str:
        api_key = "mck_" + secrets.token_urlsafe(32)
        digest = _digest(api_key)
        with self.pool.connection() as conn:
            exists = conn.execute(
                "SELECT 1 FROM membercore.tenants WHERE slug = %s", (tenant,)
            ).fetchone()
            if not exists:
                raise TenantNotFound(tenant)
            conn.execute(
                "INSERT INTO membercore.api_keys (key_hash, key_id, tenant, role)"
                " VALUES (%s, %s, %s, %s)",
                (digest, digest.hex()[:16], tenant, role.value),
            )
        return api_key

    def cached(self, api_key: str) -> tuple[bool, Principal | None]:
        """(known, principal) from the in-process cache only: no I/O, for the event loop."""
        if not api_key.startswith("mck_") or len(api_key) > 128:
            return True, None
        entry = self._cache.get(_digest(api_key))
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def authenticate(self, api_key: str) -> Principal | None:
        known, principal = self.cached(api_key)
        if known:
            return principal
        digest = _digest(api_key)
        now = time.monotonic()
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT tenant, role, key_id FROM membercore.api_keys"
                " WHERE key_hash = %s AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        principal = Principal(row["tenant"], Role(row["role"]), row["key_id"]) if row else None
        # Unknown keys are remembered for less time, so a key created a moment ago works soon.
        self._cache[digest] = (now + (self.ttl if principal else 2.0), principal)
        if len(self._cache) > 100_000:
            self._cache.clear()
        return principal
