"""D3: SIGKILL a projector process at random points, resume, and find no lost or doubled update."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up, head_position, tracked_position
from tests.integration.support import dump, expected_dump, register

PROFILE = CustomerProfileProjection()
ROOT = Path(__file__).resolve().parents[2]


def write_round(tenant: Tenant, round_: int, customers: int) -> None:
    for n in range(customers):
        register(tenant, ("pos_member_no", f"{round_}-{n}"), name=f"c{n}")
        if n % 3 == 0:
            register(tenant, ("pos_member_no", f"{round_}-{n}"), ("jd_pin", f"{round_}-{n}"))


def kill_during_catch_up(database_url: str, tenant: Tenant, rng: random.Random) -> None:
    """Start a projector process; once it has made progress, SIGKILL it a moment later."""
    start = tracked_position(tenant, PROFILE.name)
    module = "tests.integration.projector_process"
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", module, database_url, tenant.slug, "2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while tracked_position(tenant, PROFILE.name) == start:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the projector process made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def run_kills(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any], rounds: int, seed: int
) -> None:
    rng = random.Random(seed)
    partial = 0
    for round_ in range(rounds):
        write_round(tenant, round_, customers=rng.randint(60, 120))
        kill_during_catch_up(database_url, tenant, rng)
        reached = tracked_position(tenant, PROFILE.name)
        partial += reached < head_position(tenant)
        # Whatever the kill interrupted, the tables hold exactly the events up to the tracking.
        assert dump(sql, tenant, PROFILE.tables) == expected_dump(tenant, sql, reached), (
            f"seed {seed}, round {round_}"
        )
    assert partial, "no kill landed before the projector reached the head"

    catch_up(tenant, PROFILE)

    head = head_position(tenant)
    assert tracked_position(tenant, PROFILE.name) == head
    assert dump(sql, tenant, PROFILE.tables) == expected_dump(tenant, sql, head)


def test_projector_killed_at_random_points_resumes_with_nothing_lost_or_doubled(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    run_kills(database_url, tenant, sql, rounds=3, seed=20261123)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_projector_killed_many_times_resumes_with_nothing_lost_or_doubled(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any], seed: int
) -> None:
    run_kills(database_url, tenant, sql, rounds=20, seed=seed)
