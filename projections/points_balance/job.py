"""The points expiry job of a tenant; ``projections.worker`` runs it on a schedule with the other
scheduled jobs (``projections.jobs``) inside ``membercore worker`` and ``membercore serve``.

``run_expiry(tenant, as_of)`` first brings ``points_lots`` and ``points_holds`` up to the log head
(a catch-up, safe to run beside the projection worker: exactly-once by compare-and-set), reads
the accounts with lots due or holds timed out by ``as_of`` from their indexes, and lets each
account release and expire what *it* says is due (``application.points.expire_points``).
Running it twice, or in two processes at once, writes one ``HoldExpired`` per hold and one
``Expired`` per lot: the second finds nothing due in the accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from application.points import ExpiryRun, expire_points
from infrastructure.tenancy import Tenant, Tenants
from projections.engine import catch_up
from projections.jobs import DEFAULT_EVERY_SECONDS, JobScheduler, ScheduledJob
from projections.points_balance.projection import PointsBalanceProjection, due_accounts

__all__ = ["DEFAULT_EVERY_SECONDS", "POINTS_EXPIRY", "ExpiryScheduler", "run_expiry"]

PROJECTION = PointsBalanceProjection()


def run_expiry(tenant: Tenant, as_of: datetime) -> ExpiryRun:
    catch_up(tenant, PROJECTION)
    with tenant.datastore.transaction(commit=False) as curs:
        accounts = due_accounts(curs, tenant.schema, as_of)
    return expire_points(tenant.app, as_of, accounts)


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
