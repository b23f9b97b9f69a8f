"""The points expiry job of a tenant, and the scheduler running it inside ``membercore worker``
and ``membercore serve``.

``run_expiry(tenant, as_of)`` first brings ``points_lots`` up to the log head (a catch-up, safe
to run beside the projection worker: exactly-once by compare-and-set), reads the accounts with
lots due by ``as_of`` from its partial index, and lets each account expire what *it* says is
due (``application.points.expire_points``). Running it twice, or in two processes at once,
writes one ``Expired`` per lot: the second finds nothing due in the accounts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from application.points import ExpiryRun, expire_points
from infrastructure.tenancy import Tenant, Tenants
from projections.engine import catch_up
from projections.points_balance.projection import PointsBalanceProjection, due_accounts

log = structlog.get_logger(__name__)

PROJECTION = PointsBalanceProjection()
DEFAULT_EVERY_SECONDS = 900.0


def run_expiry(tenant: Tenant, as_of: datetime) -> ExpiryRun:
    catch_up(tenant, PROJECTION)
    with tenant.datastore.transaction(commit=False) as curs:
        accounts = due_accounts(curs, tenant.schema, as_of)
    return expire_points(tenant.app, as_of, accounts)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryScheduler:
    """Runs the expiry job for every tenant every ``every_seconds`` (first run at start), with
    ``as_of`` = now. A failing tenant is logged and tried again on the next round."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.tenants = tenants
        self.every_seconds = every_seconds
        self.clock = clock
        self.rounds = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="points-expiry", daemon=True)
        self._thread.start()
        log.info("points_expiry_scheduler_started", every_seconds=self.every_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> dict[str, ExpiryRun]:
        runs: dict[str, ExpiryRun] = {}
        for slug in self.tenants.slugs():
            if self._stop.is_set():
                break
            try:
                tenant = self.tenants.get(slug)
                # The tenant's own clock (tests move it); as_of never runs ahead of it.
                as_of = min(self.clock(), tenant.app.clock())
                run = run_expiry(tenant, as_of)
            except Exception:
                self.failures += 1
                log.exception("points_expiry_failed", tenant=slug)
                continue
            runs[slug] = run
            if run.points:
                log.info("points_expired", tenant=slug, **run.body())
        self.rounds += 1
        return runs

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_seconds)
