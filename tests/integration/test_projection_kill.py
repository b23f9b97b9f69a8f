"""D3: SIGKILL a projector process at random points, resume, and find no lost or doubled update."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pytest

from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from tests.integration.projector_faults import run_kills
from tests.integration.support import register

PROFILE = CustomerProfileProjection()


def write_round(tenant: Tenant, round_: int, rng: random.Random) -> None:
    for n in range(rng.randint(60, 120)):
        register(tenant, ("pos_member_no", f"{round_}-{n}"), name=f"c{n}")
        if n % 3 == 0:
            register(tenant, ("pos_member_no", f"{round_}-{n}"), ("jd_pin", f"{round_}-{n}"))


def test_projector_killed_at_random_points_resumes_with_nothing_lost_or_doubled(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    run_kills(database_url, tenant, sql, PROFILE, write_round, rounds=3, seed=20261123)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_projector_killed_many_times_resumes_with_nothing_lost_or_doubled(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any], seed: int
) -> None:
    run_kills(database_url, tenant, sql, PROFILE, write_round, rounds=20, seed=seed)
