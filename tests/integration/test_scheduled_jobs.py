"""The scheduled jobs on real PostgreSQL: level assessments and the points expiry run for every
tenant on a timer (no request asks for them), idempotently round after round, a failing job does
not stop the others, and the projection worker starts and stops them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application.orders import PlaceOrder
from application.program import define_program
from domain.level_membership import LevelMembership
from domain.points_account import PointsAccount
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.jobs import LEVEL_ASSESSMENTS, JobScheduler, ScheduledJob
from projections.level_membership import LevelMembershipProjection, due_memberships
from projections.worker import SCHEDULED_JOBS, ProjectionWorker
from tests.integration.orders_support import place
from tests.integration.support import TenantsOf, register, wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 365},
        }
    ],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "calendar", "period": "year"},
            "assessment": {"mode": "calendar", "period": "year", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 100000},
                {"code": "platinum", "threshold": 300000},
            ],
        }
    ],
}
BOUGHT = datetime(2024, 6, 1, tzinfo=UTC)
NEW_YEAR = datetime(2026, 1, 1, tzinfo=SHANGHAI)  # the 2026-01-01 assessment: 2025 held nothing


def platinum_in_2024(tenant: Tenant) -> UUID:
    """A customer platinum on 2024's spend (kept at the 2025-01-01 assessment), whose points
    expired in 2025; the tenant's clock then stands just after the Shanghai new year 2026, so
    the 2026-01-01 assessment (a downgrade to gold) and the expiry are due."""
    define_program(tenant.app, PROGRAM, "t")
    tenant.app.clock = lambda: BOUGHT
    customer_id = register(tenant, ("wechat_unionid", f"u-{tenant.slug}")).customer_id
    order = PlaceOrder("o-1", "tmall", BOUGHT, 350000, customer_id)
    assert place(tenant.app, order).body["levels"] == [
        {"group": "consumer", "from": None, "to": "platinum"}
    ]
    tenant.app.clock = lambda: NEW_YEAR + timedelta(minutes=5)
    return customer_id


def level_events(tenant: Tenant, customer_id: UUID) -> list[Any]:
    membership = LevelMembership.id_for(customer_id, "consumer")
    return list(tenant.app.events.get(membership))


def points_events(tenant: Tenant, customer_id: UUID) -> list[Any]:
    return list(tenant.app.events.get(PointsAccount.id_for(customer_id, "points")))


def downgrades(tenant: Tenant, customer_id: UUID) -> list[LevelMembership.Downgraded]:
    return [
        e for e in level_events(tenant, customer_id) if isinstance(e, LevelMembership.Downgraded)
    ]


def expiries(tenant: Tenant, customer_id: UUID) -> list[PointsAccount.Expired]:
    return [e for e in points_events(tenant, customer_id) if isinstance(e, PointsAccount.Expired)]


def test_the_scheduler_assesses_a_due_membership_and_expires_points_on_its_own_once(
    tenant: Tenant, runtime: Runtime
) -> None:
    customer_id = platinum_in_2024(tenant)
    scheduler = JobScheduler(TenantsOf(runtime.tenants, tenant), SCHEDULED_JOBS, every_seconds=0.05)

    scheduler.start()
    try:
        wait_until(lambda: bool(downgrades(tenant, customer_id)), what="the scheduled assessment")
        wait_until(lambda: bool(expiries(tenant, customer_id)), what="the scheduled expiry")
        rounds = scheduler.rounds
        wait_until(lambda: scheduler.rounds >= rounds + 2, what="two more rounds")
    finally:
        scheduler.stop()

    assert not scheduler.running
    (downgrade,) = downgrades(tenant, customer_id)  # later rounds found nothing due
    assert (downgrade.from_level, downgrade.to_level) == ("platinum", "gold")
    assert (downgrade.reason, downgrade.assessment_at) == ("assessment", NEW_YEAR)
    assert [e.points for e in expiries(tenant, customer_id)] == [3500]
    membership: LevelMembership = tenant.app.repository.get(
        LevelMembership.id_for(customer_id, "consumer")
    )
    assert (membership.level, membership.since) == ("gold", NEW_YEAR)
    # The read model the job reads its due list from has moved on: nothing is due any more.
    assert due_memberships(tenant, NEW_YEAR + timedelta(minutes=5)) == []


def test_a_failing_job_is_counted_and_the_other_jobs_still_run(
    tenant: Tenant, runtime: Runtime
) -> None:
    customer_id = platinum_in_2024(tenant)

    def broken(tenant: Tenant, as_of: datetime) -> None:
        raise RuntimeError("broken job")

    failing = ScheduledJob("broken", broken, "never", lambda _: None)
    scheduler = JobScheduler(
        TenantsOf(runtime.tenants, tenant), [failing, LEVEL_ASSESSMENTS], every_seconds=3600
    )

    results = scheduler.run_once()

    assert scheduler.failures >= 1
    assert "broken" not in results[tenant.slug]
    assert results[tenant.slug]["level_assessments"].by_type == {"Downgraded": 1}
    assert len(downgrades(tenant, customer_id)) == 1


def test_the_projection_worker_runs_the_level_assessments_on_its_schedule_and_stops_them(
    tenant: Tenant, runtime: Runtime, database_url: str
) -> None:
    customer_id = platinum_in_2024(tenant)
    worker = ProjectionWorker(
        database_url,
        TenantsOf(runtime.tenants, tenant),
        [LevelMembershipProjection()],
        threads=1,
        jobs_every_seconds=0.05,
    )
    assert worker.jobs is not None
    assert {j.name for j in worker.jobs.jobs} == {"points_expiry", "level_assessments"}

    worker.start()
    try:
        wait_until(lambda: bool(downgrades(tenant, customer_id)), what="the scheduled assessment")
        assert worker.jobs.running
    finally:
        worker.stop()

    assert not worker.jobs.running
    rounds = worker.jobs.rounds
    time.sleep(0.3)  # six periods of the timer
    assert worker.jobs.rounds == rounds
