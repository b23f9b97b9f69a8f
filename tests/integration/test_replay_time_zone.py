"""D2: replaying the golden fixture's events with the process in a far-away time zone
(Pacific/Kiritimati, UTC+14; America/Adak, UTC-10/-9) and on a different "now" gives exactly
the aggregate states, balances, reads and projections of the replay in UTC.

Expiry, quotas and level windows use event and ledger times and the tenant's zone
(Asia/Shanghai), never the process zone or the clock. Reads that take a moment (balances with
their expiring dates, level status, benefits held and quota used) are asked at pinned instants,
among them both sides of Shanghai's midnight starting April (a monthly quota resets there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.benefits.queries import benefits_of
from application.levels.queries import level_status
from application.points.queries import points_balances
from domain.customer import Customer
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.registry import PROJECTIONS
from tests.conftest import new_slug
from tests.integration.golden import replay
from tests.integration.golden.scenario import AS_OF
from tests.integration.support import dump

ZONES = ("Pacific/Kiritimati", "America/Adak")
# 2026-04-01 00:00 in Shanghai, one second before and at it; the golden instant.
READ_AT = (
    datetime(2026, 3, 31, 15, 59, 59, tzinfo=UTC),
    datetime(2026, 3, 31, 16, 0, tzinfo=UTC),
    AS_OF,
)
TABLES = [t for p in PROJECTIONS for t in p.tables]
LOYALTY_TABLES = ("customer_profile", "customer_stats", "points_balance", "points_lots",
                  "level_membership")  # fmt: skip
# Far from every event's time: a replay reading the clock would see other expiries and levels.
OTHER_NOW = datetime(2031, 2, 28, 23, 30, tzinfo=UTC)


@contextmanager
def process_zone(name: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return replay.read_events()


def reads(tenant: Tenant, aggregates: dict[UUID, Any]) -> dict[str, Any]:
    """Every moment-taking read, for every active customer, at the pinned instants."""
    app = tenant.app
    out: dict[str, Any] = {}
    for a in aggregates.values():
        if not isinstance(a, Customer) or a.merged_into is not None:
            continue
        for at in READ_AT:
            out[f"{a.id}@{at.isoformat()}"] = replay.canonical(
                {
                    "points": points_balances(app, a.id, at),
                    "levels": level_status(app, a.id, at),
                    "benefits": [h.to_dict() for h in benefits_of(app, a.id, at)],
                }
            )
    return out


def replayed(
    runtime: Runtime, fixture: tuple[dict[str, Any], list[dict[str, Any]]], sql: Any
) -> dict[str, Any]:
    """The fixture loaded into a fresh tenant and read back every way, with its app's clock at
    ``OTHER_NOW`` (nothing replayed or read here may consult it)."""
    tenant = runtime.tenants.create(new_slug("tz"))
    tenant.app.clock = lambda: OTHER_NOW
    replay.load_into(tenant, *fixture)
    aggregates = replay.replay(tenant.app, replay.streams(fixture[1]))
    replay.project(tenant)
    return {
        "states": replay.states(aggregates),
        "balances": replay.balances(tenant.app, aggregates),
        "reads": reads(tenant, aggregates),
        "read_models": replay.read_models(sql, tenant),
        "tables": dict(zip(TABLES, dump(sql, tenant, TABLES), strict=True)),
    }


@pytest.mark.parametrize("zone", ZONES)
def test_a_replay_in_a_far_time_zone_on_another_day_equals_the_replay_in_utc(
    runtime: Runtime,
    fixture: tuple[dict[str, Any], list[dict[str, Any]]],
    sql: psycopg.Connection[Any],
    zone: str,
) -> None:
    with process_zone("UTC"):
        in_utc = replayed(runtime, fixture, sql)
    with process_zone(zone):
        # The zone is in effect for the process: local time is hours away from UTC.
        offset = datetime.now().astimezone().utcoffset()
        assert offset is not None
        assert abs(offset) >= timedelta(hours=9)
        far = replayed(runtime, fixture, sql)

    for part in ("states", "balances", "reads", "read_models", "tables"):
        assert far[part] == in_utc[part], part
    assert all(in_utc["tables"][t] for t in LOYALTY_TABLES), "the comparison is not vacuous"
