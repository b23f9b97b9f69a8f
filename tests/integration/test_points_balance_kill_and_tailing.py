"""``points_balance`` under the two faults the other projections are tested against.

* Kill: a projector process catching the tables up in small batches is SIGKILLed at random
  points (often between a batch's rows and its tracking record); whatever it reached, the tables
  hold exactly the events up to its tracking position, and resumed to the head they equal a
  rebuild from position 0.
* Tailing: a projector catching up over and over in small batches while writers commit slowly
  (each holds its transaction open after its insert) skips nothing: every account, lot and hold
  the ledger has is in the tables, equal to a rebuild.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.app import both
from application.context import CommandContext
from application.orders import PlaceOrder
from application.points.commands import AdjustPoints, HoldPoints, RedeemPoints
from application.program import define_program
from domain.errors import DomainError
from infrastructure.tenancy import Tenant
from projections.engine import catch_up, head_position
from projections.points_balance import PointsBalanceProjection
from tests.integration.orders_support import place
from tests.integration.points_support import PROGRAM, now, run
from tests.integration.projector_faults import run_kills, tailing
from tests.integration.support import dump, expected_dump, register, run_at_once

PROJECTION = PointsBalanceProjection()
CTX = CommandContext("t")


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, CTX.actor)
    return tenant


def live(tenant: Tenant, sql: psycopg.Connection[Any]) -> list[Any]:
    return dump(sql, tenant, PROJECTION.tables)


def write_round(tenant: Tenant, round_: int, rng: random.Random) -> None:
    """Orders, redemptions, holds and adjustments for a few customers."""
    for n in range(rng.randint(4, 7)):
        cid: UUID = register(tenant, ("pos_member_no", f"{round_}-{n}")).customer_id
        for k in range(rng.randint(1, 3)):
            placed = now() - timedelta(days=rng.choice([0, 1, 400]))
            order = PlaceOrder(f"{round_}-{n}-{k}", "pos", placed, rng.randint(1, 90) * 100, cid)
            place(tenant.app, order)
        try:
            run(tenant, RedeemPoints(cid, "points", f"r{round_}", rng.randint(1, 60)))
            run(tenant, HoldPoints(cid, "points", f"h{round_}", rng.randint(1, 30)))
        except DomainError:
            pass  # not enough points: refused, nothing written
        run(tenant, AdjustPoints(cid, "points", f"a{round_}", rng.randint(1, 9), "r"))


def test_points_balance_killed_at_random_points_resumes_equal_to_a_rebuild(
    database_url: str, loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    run_kills(database_url, loyal, sql, PROJECTION, write_round, rounds=3, seed=20261208)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_points_balance_killed_many_times_resumes_equal_to_a_rebuild(
    database_url: str, loyal: Tenant, sql: psycopg.Connection[Any], seed: int
) -> None:
    run_kills(database_url, loyal, sql, PROJECTION, write_round, rounds=15, seed=seed)


def slow_commits(tenant: Tenant) -> None:
    """Every save of ``tenant.app`` holds its transaction open a while after its insert."""
    save = tenant.app.save

    def sleep_in_transaction(curs: Any, position: int) -> None:
        time.sleep(0.01)

    def slow_save(*aggregates: Any, side_effect: Any = None, **kw: Any) -> Any:
        return save(*aggregates, side_effect=both(side_effect, sleep_in_transaction), **kw)

    tenant.app.save = slow_save  # type: ignore[method-assign]


def test_a_tailing_points_balance_projector_skips_nothing_committed_by_slow_writers(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    customers = [register(loyal, ("pos_member_no", f"w{n}")).customer_id for n in range(6)]
    catch_up(loyal, PROJECTION)
    slow_commits(loyal)

    def write(n: int) -> None:
        for k in range(10):
            run(loyal, AdjustPoints(customers[n], "points", f"a{k}", k + 1, "r"))
            if k % 3 == 2:
                run(loyal, HoldPoints(customers[n], "points", f"h{k}", 2))

    with tailing(loyal, PROJECTION) as passes:
        run_at_once(6, write)

    assert sum(1 for p in passes if p) > 1, "the projector applied events while writers wrote"
    assert live(loyal, sql) == expected_dump(loyal, sql, head_position(loyal), PROJECTION)
    (row,) = sql.execute(
        f'SELECT count(*) AS lots, sum(remaining) AS free FROM "{loyal.schema}".points_lots'
    ).fetchall()
    assert (row["lots"], row["free"]) == (6 * 10, 6 * (sum(range(1, 11)) - 3 * 2))
    (holds,) = sql.execute(f'SELECT count(*) AS n FROM "{loyal.schema}".points_holds').fetchall()
    assert holds["n"] == 6 * 3
