"""N redemptions at once over one balance (real PostgreSQL, one thread each): the accepted ones
never spend more than was available, every request is either accepted or refused for lack of
points, and what is left is the start minus what was accepted, in the account and its ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from application.kernel import Outcome
from application.loaders import points_account
from application.points.commands import RedeemPoints
from application.program import define_program
from domain.errors import InsufficientPoints
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from projections.engine import catch_up
from projections.points_balance import PointsBalanceProjection
from tests.integration.points_support import PROGRAM, customer, earn, now, run
from tests.integration.support import run_at_once

START = 1000


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def race(tenant: Tenant, n: int, amounts: list[int]) -> tuple[list[int], list[int]]:
    """``n`` redemptions of ``amounts[i]`` released together; (accepted, refused) amounts."""
    cid = customer(tenant)
    t = now() - timedelta(days=1)
    earn(tenant, cid, "start", START, at=t, expires_at=None)

    def redeem(i: int) -> tuple[int, bool]:
        try:
            answer = run(tenant, RedeemPoints(cid, "points", f"r{i}", amounts[i]))
        except InsufficientPoints:
            return amounts[i], False
        assert answer.outcome is Outcome.CREATED, answer
        return amounts[i], True

    outcomes = run_at_once(n, redeem)
    accepted = [a for a, ok in outcomes if ok]
    refused = [a for a, ok in outcomes if not ok]

    account = points_account(tenant.app, cid, "points")
    assert account is not None
    assert sum(accepted) <= START
    assert len(accepted) + len(refused) == n
    assert account.available(now()) == START - sum(accepted)
    redeemed = [
        e for e in tenant.app.events.get(account.id) if isinstance(e, PointsAccount.Redeemed)
    ]
    assert sorted(e.points for e in redeemed) == sorted(accepted)
    assert {e.redemption_id for e in redeemed} == {
        f"r{i}" for i, (_, ok) in enumerate(outcomes) if ok
    }
    # Every refusal was for want of points: none would have fitted in what was left.
    assert all(a > START - sum(accepted) for a in refused)
    return accepted, refused


def test_n_concurrent_redemptions_never_spend_more_than_the_balance(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # 12 x 150 = 1800 asked of 1000: some must be refused, at most 6 fit.
    accepted, refused = race(loyal, 12, [150] * 12)

    assert len(accepted) == 6, "every redemption that fits is accepted, one by one"
    assert len(refused) == 6
    catch_up(loyal, PointsBalanceProjection())
    (row,) = sql.execute(
        f'SELECT sum(remaining) AS left FROM "{loyal.schema}".points_lots'
    ).fetchall()
    assert row["left"] == START - 900


def test_n_concurrent_redemptions_of_different_sizes_keep_the_ledger_exact(
    loyal: Tenant,
) -> None:
    amounts = [400, 50, 300, 250, 10, 600, 90, 200, 30, 120]
    accepted, _ = race(loyal, len(amounts), amounts)

    assert accepted, "at least the first redemption to commit fits"
