"""The projection worker: follows every tenant's log live and keeps its query tables current.

Connections do not grow with tenants: one LISTEN connection hears every tenant (the NOTIFY
payload names the schema), and a fixed number of threads catch tenants up on the shared pool.
A periodic sweep covers missed notifications and new tenants. Everything is supervised: a
failed catch-up is logged and retried with back-off; a lost LISTEN connection is reopened.

The scheduled jobs (``SCHEDULED_JOBS``: points expiry, level assessments) run beside it on a
timer of their own, for every tenant, and stop with it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog

from infrastructure.eventstore import EVENTS_CHANNEL
from infrastructure.tenancy import Tenants
from projections.engine import Projection, catch_up
from projections.jobs import LEVEL_ASSESSMENTS, JobScheduler, ScheduledJob
from projections.points_balance.job import POINTS_EXPIRY

log = structlog.get_logger(__name__)

MAX_BACKOFF = 30.0
SCHEDULED_JOBS: tuple[ScheduledJob, ...] = (POINTS_EXPIRY, LEVEL_ASSESSMENTS)


class ProjectionWorker:
    def __init__(
        self,
        url: str,
        tenants: Tenants,
        projections: Sequence[Projection],
        *,
        threads: int = 2,
        batch_size: int = 2000,
        sweep_seconds: float = 2.0,
        jobs_every_seconds: float | None = None,
        expiry_every_seconds: float | None = None,
    ) -> None:
        """``jobs_every_seconds``: run ``SCHEDULED_JOBS`` on that timer (None: no jobs in this
        worker); ``expiry_every_seconds`` is its earlier name."""
        self.url = url
        self.tenants = tenants
        self.projections = tuple(projections)
        self.threads = threads
        self.batch_size = batch_size
        self.sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._cv = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self.restarts = 0
        every = jobs_every_seconds if jobs_every_seconds is not None else expiry_every_seconds
        self.jobs = (
            JobScheduler(tenants, SCHEDULED_JOBS, every_seconds=every)
            if every is not None
            else None
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        targets = [self._listen, self._sweep] + [self._work] * self.threads
        for n, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"projection-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.jobs is not None:
            self.jobs.start()
        log.info("projection_worker_started", threads=self.threads)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.jobs is not None:
            self.jobs.stop(timeout)
        with self._cv:
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def expiry(self) -> JobScheduler | None:
        """The job scheduler (its earlier name, from when the points expiry was its only job)."""
        return self.jobs

    # -- scheduling -----------------------------------------------------------------------------

    def poke(self, slug: str) -> None:
        """Ask for ``slug`` to be caught up (coalesced; re-run if it is being caught up now)."""
        with self._cv:
            if slug in self._busy:
                self._again.add(slug)
            elif slug not in self._queued:
                self._queued.add(slug)
                self._queue.append(slug)
                self._cv.notify()

    def _next(self) -> str | None:
        with self._cv:
            while not self._queue and not self._stop.is_set():
                self._cv.wait(0.5)
            if self._stop.is_set():
                return None
            slug = self._queue.popleft()
            self._queued.discard(slug)
            self._busy.add(slug)
            return slug

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no tenant is queued or being caught up; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(min(remaining, 0.05))
        return True

    def _done(self, slug: str) -> None:
        with self._cv:
            self._busy.discard(slug)
            if slug in self._again:
                self._again.discard(slug)
                self._queued.add(slug)
                self._queue.append(slug)
                self._cv.notify()

    # -- threads --------------------------------------------------------------------------------

    def _work(self) -> None:
        while (slug := self._next()) is not None:
            try:
                self.catch_up_tenant(slug)
                self._failures.pop(slug, None)
            except Exception:
                failures = self._failures.get(slug, 0) + 1
                self._failures[slug] = failures
                self.restarts += 1
                delay = min(MAX_BACKOFF, 0.1 * 2**failures)
                log.exception("projection_failed", tenant=slug, failures=failures, retry_in=delay)
                threading.Timer(delay, self.poke, (slug,)).start()
            finally:
                self._done(slug)

    def catch_up_tenant(self, slug: str) -> int:
        tenant = self.tenants.get(slug)
        applied = 0
        for projection in self.projections:
            applied += catch_up(tenant, projection, batch_size=self.batch_size)
        if applied:
            log.debug("projection_caught_up", tenant=slug, events=applied)
        return applied

    def _sweep(self) -> None:
        while not self._stop.is_set():
            try:
                for slug in self.tenants.slugs():
                    self.poke(slug)
            except Exception:
                log.exception("projection_sweep_failed")
            self._stop.wait(self.sweep_seconds)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    backoff = 0.1
                    # Anything committed while we were not listening is found by a full sweep.
                    for slug in self.tenants.slugs():
                        self.poke(slug)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.poke(_slug_of(note))
            except Exception:
                if self._stop.is_set():
                    return
                self.restarts += 1
                log.exception("projection_listener_failed", retry_in=backoff)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)


def _slug_of(note: Any) -> str:
    schema: str = note.payload
    return schema.removeprefix("t_")
