"""The points expiry job on a schedule: ``projections.worker`` runs it with the other scheduled
jobs (``projections.jobs``) inside ``membercore worker`` and ``membercore serve``. The job itself
is the write side's (``application.points.expiry``); the tenant's due index finds the accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from application.points.expiry import ExpiryRun, expire_due
from infrastructure.tenancy import Tenant, Tenants
from projections.jobs import DEFAULT_EVERY_SECONDS, JobScheduler, ScheduledJob

__all__ = ["DEFAULT_EVERY_SECONDS", "POINTS_EXPIRY", "ExpiryScheduler", "run_expiry"]


def run_expiry(tenant: Tenant, as_of: datetime) -> ExpiryRun:
    return expire_due(tenant.app, as_of, tenant.app.due.points_accounts(as_of))


def _expired(run: ExpiryRun) -> dict[str, Any] | None:
    return run.body() if run.points or run.holds else None


POINTS_EXPIRY = ScheduledJob("points_expiry", run_expiry, "points_expired", _expired)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryScheduler(JobScheduler):
    """The expiry job alone on a schedule (the worker runs it with every scheduled job)."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(
            tenants,
            (POINTS_EXPIRY,),
            every_seconds=every_seconds,
            clock=clock,
            name="points-expiry",
        )
