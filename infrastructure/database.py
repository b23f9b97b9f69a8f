"""Where PostgreSQL is: ``DATABASE_URL``, or an embedded server (pgserver) in the data directory.

One connection pool per process serves every tenant: tables are schema-qualified in every statement,
so a connection is never bound to a tenant and the connection count does not grow with tenants.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.postgres import ConnectionPool
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from infrastructure.settings import Settings

log = structlog.get_logger(__name__)

# Connections that sit idle inside a transaction are killed after this long (architecture rule):
# decode before opening a transaction, never hold one across slow work.
IDLE_IN_TRANSACTION_MS = 5000

_embedded_lock = threading.Lock()
_embedded: dict[Path, Any] = {}


def embedded_database_url(data_dir: Path) -> str:
    """Start (once per process) an embedded PostgreSQL in ``data_dir/pg`` and return its URL."""
    import pgserver  # imported lazily: only needed when no DATABASE_URL is given

    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        server = _embedded.get(pgdata)
        if server is None:
            pgdata.mkdir(parents=True, exist_ok=True)
            log.info("embedded_postgres_starting", pgdata=str(pgdata))
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
            _embedded[pgdata] = server
        return str(server.get_uri())


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server started for ``data_dir`` (it also stops at process exit)."""
    with _embedded_lock:
        server = _embedded.pop((data_dir / "pg").resolve(), None)
    if server is not None:
        server.cleanup()


def resolve_database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


def _configure(conn: Connection[Any]) -> None:
    # The eventsourcing recorders expect autocommit connections and open transactions explicitly.
    conn.autocommit = True
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_MS}ms'")


# How the pools behave when PostgreSQL goes away (restart, crash, failover):
# - A connection that comes back broken has most likely lost its server, and so have the idle
#   ones: the pool tests its idle connections at once and replaces the dead ones, instead of
#   failing one request per stale connection after the server is back. Checking only then keeps
#   the round trip off every checkout.
# - While the last connection attempt failed, a request waits UNREACHABLE_WAIT for a connection,
#   not the whole pool timeout: the database is down, and callers retry (eventsourcing's reads
#   ten times, the kernel three), so a full wait each time held a request for minutes before
#   its 503.
# - Reconnection attempts are at most RECONNECT_DELAY_MAX apart (psycopg_pool doubles the delay
#   up to minutes), so a server back after a long outage is used within about a second.
UNREACHABLE_WAIT = 0.1
RECONNECT_DELAY_MAX = 1.0


class _Attempt(AttemptWithBackoff):
    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_DELAY_MAX)


class _Pool(ConnectionPool[Connection[DictRow]]):
    unreachable = False  # the last connection attempt failed

    def getconn(self, timeout: float | None = None) -> Connection[DictRow]:
        if self.unreachable:
            timeout = min(self.timeout if timeout is None else timeout, UNREACHABLE_WAIT)
        return super().getconn(timeout)

    def putconn(self, conn: Connection[DictRow]) -> None:
        broken = conn.broken
        super().putconn(conn)
        if broken:
            self.check()

    def _connect(self, timeout: float | None = None) -> Connection[DictRow]:
        try:
            conn = super()._connect(timeout)
        except Exception:
            self.unreachable = True
            raise
        self.unreachable = False
        return conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        attempt = attempt or _Attempt(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


class _ReadPool(AsyncConnectionPool[Any]):
    unreachable = False

    async def getconn(self, timeout: float | None = None) -> Any:
        if self.unreachable:
            timeout = min(self.timeout if timeout is None else timeout, UNREACHABLE_WAIT)
        return await super().getconn(timeout)

    async def putconn(self, conn: Any) -> None:
        broken = conn.broken
        await super().putconn(conn)
        if broken:
            await self.check()

    async def _connect(self, timeout: float | None = None) -> Any:
        try:
            conn = await super()._connect(timeout)
        except Exception:
            self.unreachable = True
            raise
        self.unreachable = False
        return conn

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        attempt = attempt or _Attempt(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


def open_pool(url: str, settings: Settings, *, name: str = "membercore") -> ConnectionPool[Any]:
    """The process-wide synchronous pool (commands, projections), in eventsourcing's flavour."""
    pool: ConnectionPool[Connection[DictRow]] = _Pool(
        url,
        connection_class=Connection[DictRow],
        kwargs={"row_factory": dict_row},
        min_size=settings.pool_min,
        max_size=max(settings.pool_max, settings.pool_min),
        open=False,
        configure=_configure,
        name=name,
        timeout=settings.pool_timeout,
    )
    pool.open(wait=True, timeout=30.0)
    return pool


async def open_read_pool(url: str, settings: Settings) -> AsyncConnectionPool[Any]:
    """The API's async pool for query reads: no thread hop on the hot GET path."""

    async def configure(conn: Any) -> None:
        await conn.set_autocommit(True)

    pool: AsyncConnectionPool[Any] = _ReadPool(
        url,
        min_size=1,
        max_size=settings.read_pool_max,
        open=False,
        configure=configure,
        name="membercore-read",
        timeout=settings.pool_timeout,
    )
    await pool.open(wait=True, timeout=30.0)
    return pool
