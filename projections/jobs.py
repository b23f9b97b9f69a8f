"""Scheduled jobs: run for every tenant on a timer inside ``membercore worker`` and ``membercore
serve`` (wherever the projection worker runs; ``projections.worker.SCHEDULED_JOBS`` lists them).

A job is a function ``(tenant, as_of) -> result`` that is idempotent and safe beside a
concurrent run of itself (a second run records nothing). ``JobScheduler`` runs its jobs for every
tenant every ``every_seconds`` in one thread, first at start, with ``as_of`` = now (never ahead
of the tenant's own clock). A failing job of one tenant is logged and counted, and tried again
on the next round; the tenant's other jobs and the other tenants still run.

The jobs themselves are the write side's: the level assessments
(``application.levels.assessment.run_level_assessments``, scheduled here) and the points expiry
(``application.points.expiry``, scheduled in ``projections.points_balance.job``). Each finds
what is due through the tenant's due index, as ``POST /v1/jobs/...`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from application.levels.assessment import AssessmentReport, run_level_assessments
from infrastructure.tenancy import Tenant, Tenants

log = structlog.get_logger(__name__)

DEFAULT_EVERY_SECONDS = 900.0


@dataclass(frozen=True)
class ScheduledJob:
    """``name`` keys the results of a round; ``event`` is logged with ``changes(result)`` when
    that is not None (the job changed something)."""

    name: str
    run: Callable[[Tenant, datetime], Any]
    event: str
    changes: Callable[[Any], dict[str, Any] | None]


def assess_levels(tenant: Tenant, as_of: datetime) -> AssessmentReport:
    return run_level_assessments(tenant.app, as_of)


def _assessed(report: AssessmentReport) -> dict[str, Any] | None:
    return report.body() if report.events else None


LEVEL_ASSESSMENTS = ScheduledJob("level_assessments", assess_levels, "levels_assessed", _assessed)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobScheduler:
    """Runs ``jobs`` for every tenant every ``every_seconds`` (first round at start)."""

    def __init__(
        self,
        tenants: Tenants,
        jobs: Sequence[ScheduledJob],
        *,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
        name: str = "scheduled-jobs",
    ) -> None:
        self.tenants = tenants
        self.jobs = tuple(jobs)
        self.every_seconds = every_seconds
        self.clock = clock
        self.name = name
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
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        log.info(
            "job_scheduler_started",
            jobs=[j.name for j in self.jobs],
            every_seconds=self.every_seconds,
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> dict[str, dict[str, Any]]:
        """One round: ``{tenant: {job name: result}}`` (a failed job has no result)."""
        results: dict[str, dict[str, Any]] = {}
        for slug in self.tenants.slugs():
            for job in self.jobs:
                if self._stop.is_set():
                    return results
                try:
                    tenant = self.tenants.get(slug)
                    # The tenant's own clock (tests move it); as_of never runs ahead of it.
                    as_of = min(self.clock(), tenant.app.clock())
                    result = job.run(tenant, as_of)
                except Exception:
                    self.failures += 1
                    log.exception("scheduled_job_failed", tenant=slug, job=job.name)
                    continue
                results.setdefault(slug, {})[job.name] = result
                changes = job.changes(result)
                if changes is not None:
                    log.info(job.event, tenant=slug, **changes)
        self.rounds += 1
        return results

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_seconds)
