"""The points ledger on real PostgreSQL: redemptions racing the expiry job, captures racing
releases of one hold, the job run twice and concurrently (lots and timed-out holds), the
``points_balance`` projection (due indexes, profile SQL, rebuild, restored lots) and the
scheduled job inside the projection worker."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from application.context import CommandContext
from application.kernel import Caller, execute
from application.loaders import points_account as load_account
from application.points.commands import (
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from application.points.queries import points_balances
from application.program import define_program
from domain.errors import HoldAlreadyResolved, InsufficientPoints, InvalidInput
from domain.points_account import PointsAccount
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from projections.engine import build_fresh, catch_up
from projections.points_balance import (
    BALANCE,
    HOLDS,
    LOTS,
    PointsBalanceProjection,
    profile_points_sql,
)
from projections.points_balance.job import ExpiryScheduler, run_expiry
from projections.worker import ProjectionWorker
from tests.integration.points_support import customer, earn, now
from tests.integration.support import TenantsOf, dump, run_at_once, wait_until

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {"code": "points", "expiry": {"mode": "rolling_days", "days": 365}},
        {"code": "growth", "redeemable": False},
    ],
}
PROJECTION = PointsBalanceProjection()


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    return tenant


def account_events(tenant: Tenant, customer_id: UUID, point_type: str = "points") -> list[Any]:
    return list(tenant.app.events.get(PointsAccount.id_for(customer_id, point_type)))


def per_lot(events: list[Any]) -> dict[str, Counter[str]]:
    """Per-lot counters recomputed from the stored events."""
    lots: dict[str, Counter[str]] = {}
    for e in events:
        if isinstance(e, PointsAccount.Earned):
            lots[e.lot_id] = Counter(earned=e.points, remaining=e.points)
        elif isinstance(e, PointsAccount.Redeemed | PointsAccount.Expired):
            kind = "redeemed" if isinstance(e, PointsAccount.Redeemed) else "expired"
            for lot_id, n in e.lots:
                lots[lot_id]["remaining"] -= n
                lots[lot_id][kind] += n
    return lots


# -- B3: a redemption racing the expiry job -----------------------------------------------------


def test_redemptions_racing_the_expiry_job_never_consume_a_lot_twice(loyal: Tenant) -> None:
    rounds = 8
    contested = 0
    for r in range(rounds):
        cid = customer(loyal)
        start = now()
        boundary = start + timedelta(milliseconds=60)
        for n in range(4):
            earn(loyal, cid, f"soon-{n}", 60, at=start, expires_at=boundary)
        earn(loyal, cid, "late", 40, at=start, expires_at=start + timedelta(days=30))
        outcomes: list[str] = []
        lock = threading.Lock()

        def work(
            i: int,
            cid: UUID = cid,
            boundary: datetime = boundary,
            r: int = r,
            outcomes: list[str] = outcomes,
            lock: threading.Lock = lock,
        ) -> None:
            deadline = boundary + timedelta(milliseconds=60)
            k = 0
            while now() < deadline:
                k += 1
                if i < 2:
                    run_expiry(loyal, now())
                    continue
                try:
                    execute(
                        loyal.app,
                        RedeemPoints(
                            cid, "points", redemption_id=f"r{r}-{i}-{k}", amount=10, reason=None
                        ),
                        Caller("t"),
                    )
                    with lock:
                        outcomes.append("ok")
                except InsufficientPoints:
                    with lock:
                        outcomes.append("insufficient")

        run_at_once(5, work)
        run_expiry(loyal, now())

        events = account_events(loyal, cid)
        lots = per_lot(events)
        expired_lots = Counter(
            lot_id for e in events if isinstance(e, PointsAccount.Expired) for lot_id, _ in e.lots
        )
        assert all(count == 1 for count in expired_lots.values()), expired_lots
        for lot_id, c in lots.items():
            assert c["earned"] == c["redeemed"] + c["expired"] + c["remaining"], lot_id
            assert c["remaining"] >= 0
        for n in range(4):  # every point of the expiring lots was either spent or expired
            assert lots[f"soon-{n}"]["remaining"] == 0
        for e in events:
            if isinstance(e, PointsAccount.Redeemed):
                for lot_id, _ in e.lots:
                    assert lot_id == "late" or e.timestamp < boundary
        assert outcomes.count("ok") * 10 == sum(c["redeemed"] for c in lots.values())
        soon = [lots[f"soon-{n}"] for n in range(4)]
        if sum(c["redeemed"] for c in soon) and sum(c["expired"] for c in soon):
            contested += 1  # the same lots were both spent from and expired
    assert contested >= 1


# -- B5: one hold, resolved at most once --------------------------------------------------------


def _per_lot_identity_holds(events: list[Any]) -> bool:
    """Per lot, from the stored events: earned = redeemed + expired + remaining + held."""
    lots: dict[str, Counter[str]] = {}
    for e in events:
        if isinstance(e, PointsAccount.Earned):
            lots[e.lot_id] = Counter(remaining=e.points)
            lots[e.lot_id]["earned"] = e.points
        moves = {
            PointsAccount.Redeemed: ("remaining", "redeemed"),
            PointsAccount.Expired: ("remaining", "expired"),
            PointsAccount.Held: ("remaining", "held"),
            PointsAccount.HoldCaptured: ("held", "redeemed"),
            PointsAccount.HoldReleased: ("held", "remaining"),
            PointsAccount.HoldExpired: ("held", "remaining"),
            PointsAccount.RedemptionReversed: ("redeemed", "remaining"),
        }.get(type(e))
        if moves is not None:
            for lot_id, n in e.lots:
                lots[lot_id][moves[0]] -= n
                lots[lot_id][moves[1]] += n
    return all(
        c["earned"] == c["redeemed"] + c["expired"] + c["remaining"] + c["held"]
        and min(c.values()) >= 0
        for c in lots.values()
    )


@pytest.mark.parametrize("rival", ["release", "capture"])
def test_a_capture_racing_another_resolution_of_one_hold_resolves_it_exactly_once(
    loyal: Tenant, rival: str
) -> None:
    ctx = CommandContext("t")
    rounds = 20
    for r in range(rounds):
        cid = customer(loyal)
        earn(loyal, cid, "a", 100, at=now(), expires_at=None)
        execute(loyal.app, HoldPoints(cid, "points", hold_id="h", amount=60), Caller(ctx.actor))

        def resolve(i: int, cid: UUID = cid) -> str:
            act = CaptureHold if i == 0 or rival == "capture" else ReleaseHold
            try:
                return str(execute(loyal.app, act(cid, "points", "h"), Caller("t")).body["status"])
            except HoldAlreadyResolved:
                return "refused"

        outcomes = run_at_once(2, resolve)

        assert sorted(outcomes).count("refused") == 1, (r, outcomes)
        events = account_events(loyal, cid)
        resolutions = [
            e
            for e in events
            if isinstance(e, PointsAccount.HoldCaptured | PointsAccount.HoldReleased)
        ]
        assert len(resolutions) == 1
        account = load_account(loyal.app, cid, "points")
        assert account is not None
        captured = isinstance(resolutions[0], PointsAccount.HoldCaptured)
        assert account.totals["redeemed"] == (60 if captured else 0)
        assert account.available(now()) == (40 if captured else 100)
        assert account.held == 0
        assert _per_lot_identity_holds(events)


# -- E4: the job twice and concurrently -------------------------------------------------------


def test_the_expiry_job_run_concurrently_and_again_writes_one_expired_event_per_lot(
    loyal: Tenant,
) -> None:
    past = now() - timedelta(days=40)
    customers = [customer(loyal) for _ in range(6)]
    for cid in customers:
        earn(loyal, cid, "a", 10, at=past, expires_at=past + timedelta(days=10))
        earn(loyal, cid, "b", 20, at=past, expires_at=past + timedelta(days=20))
        earn(loyal, cid, "keep", 5, at=past, expires_at=now() + timedelta(days=20))
    as_of = now()

    runs = run_at_once(4, lambda i: run_expiry(loyal, as_of))
    again = run_expiry(loyal, as_of)

    assert sum(run.points for run in runs) == 6 * 30
    assert sum(run.lots for run in runs) == 6 * 2
    assert (again.points, again.lots, again.expired_accounts) == (0, 0, 0)
    for cid in customers:
        expired = [e for e in account_events(loyal, cid) if isinstance(e, PointsAccount.Expired)]
        assert len(expired) == 1
        assert sorted(expired[0].lots) == [("a", 10), ("b", 20)]
        balance = points_balances(loyal.app, cid, as_of)[0]
        assert balance.available == 5


def redeem_at(
    tenant: Tenant, customer_id: UUID, redemption_id: str, points: int, *, at: datetime
) -> None:
    """A redemption recorded at ``at`` (in the past: the API redeems at the server's now)."""
    account = load_account(tenant.app, customer_id, "points")
    assert account is not None
    account.redeem(redemption_id, points, at=at)
    tenant.app.save(account)


def hold_until(
    tenant: Tenant, customer_id: UUID, hold_id: str, points: int, *, at: datetime, until: datetime
) -> None:
    """A hold made at ``at`` (in the past: the API holds at the server's now) until ``until``."""
    account = load_account(tenant.app, customer_id, "points")
    assert account is not None
    account.hold(hold_id, points, at=at, expires_at=until)
    tenant.app.save(account)


def test_the_expiry_job_run_concurrently_and_again_releases_a_timed_out_hold_once(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    past = now() - timedelta(hours=2)
    customers = [customer(loyal) for _ in range(4)]
    for cid in customers:
        earn(loyal, cid, "a", 100, at=past, expires_at=past + timedelta(minutes=30))
        earn(loyal, cid, "b", 100, at=past, expires_at=None)
        hold_until(loyal, cid, "h", 150, at=past, until=past + timedelta(hours=1))
        hold_until(loyal, cid, "open", 10, at=past, until=now() + timedelta(hours=1))
    as_of = now()

    runs = run_at_once(4, lambda i: run_expiry(loyal, as_of))
    again = run_expiry(loyal, as_of)

    assert sum(run.holds for run in runs) == 4
    assert sum(run.points for run in runs) == 4 * 100  # lot a came back past its expiry
    assert (again.holds, again.points) == (0, 0)
    for cid in customers:
        events = account_events(loyal, cid)
        (released,) = [e for e in events if isinstance(e, PointsAccount.HoldExpired)]
        assert released.hold_id == "h"
        assert released.expires_at == past + timedelta(hours=1)
        (expired,) = [e for e in events if isinstance(e, PointsAccount.Expired)]
        assert expired.lots == (("a", 100),)
        balance = points_balances(loyal.app, cid, as_of)[0]
        assert (balance.available, balance.held) == (90, 10)
        assert _per_lot_identity_holds(events)
    catch_up(loyal, PROJECTION)
    holds = {(r["account_id"], r["hold_id"]) for r in _rows(sql, loyal, HOLDS)}
    assert holds >= {(PointsAccount.id_for(cid, "points"), "open") for cid in customers}
    assert not any((PointsAccount.id_for(cid, "points"), "h") in holds for cid in customers)


def test_the_expiry_job_refuses_an_as_of_in_the_future(loyal: Tenant) -> None:
    with pytest.raises(InvalidInput) as e:
        run_expiry(loyal, now() + timedelta(hours=1))
    assert e.value.problems[0].field == "as_of"


def test_the_expiry_job_finds_lots_earned_since_the_projection_last_ran(loyal: Tenant) -> None:
    cid = customer(loyal)
    past = now() - timedelta(days=3)
    earn(loyal, cid, "a", 7, at=past, expires_at=past + timedelta(days=1))

    run = run_expiry(loyal, now())  # catches the due index up first

    assert (run.accounts, run.points) == (1, 7)


# -- the projection -----------------------------------------------------------------------------


def _rows(sql: psycopg.Connection[Any], tenant: Tenant, table: str) -> list[dict[str, Any]]:
    return sql.execute(
        SQL("SELECT * FROM {}.{} ORDER BY 1, 2").format(
            Identifier(tenant.schema), Identifier(table)
        )
    ).fetchall()


def test_points_lots_hold_exactly_the_open_lots_of_the_accounts(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    t = now() - timedelta(days=1)
    earn(loyal, cid, "a", 10, at=t, expires_at=t + timedelta(days=100))
    earn(loyal, cid, "b", 20, at=t, expires_at=t + timedelta(days=200))
    earn(loyal, cid, "c", 30, at=t, expires_at=None)
    ctx = CommandContext("t")
    execute(
        loyal.app,
        RedeemPoints(cid, "points", redemption_id="r1", amount=15, reason=None),
        Caller(ctx.actor),
    )
    catch_up(loyal, PROJECTION)

    account = load_account(loyal.app, cid, "points")
    assert account is not None
    lots = {r["lot_id"]: (r["remaining"], r["held"]) for r in _rows(sql, loyal, LOTS)}
    assert lots == {lot.lot_id: (lot.remaining, lot.held) for lot in account.lots.values()}
    assert lots == {"b": (15, 0), "c": (30, 0)}
    (balance,) = _rows(sql, loyal, BALANCE)
    assert (balance["customer_id"], balance["point_type"], balance["debt"]) == (cid, "points", 0)


def test_a_reversal_brings_a_consumed_lot_back_into_points_lots_with_its_dates(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    t = now() - timedelta(days=1)
    earn(loyal, cid, "a", 10, at=t, expires_at=t + timedelta(days=100))
    earn(loyal, cid, "b", 20, at=t, expires_at=t + timedelta(days=200))
    ctx = CommandContext("t")
    execute(
        loyal.app,
        RedeemPoints(cid, "points", redemption_id="r1", amount=15, reason=None),
        Caller(ctx.actor),
    )
    catch_up(loyal, PROJECTION)  # lot a leaves the table
    execute(
        loyal.app,
        ReverseRedemption(cid, "points", "r1", reversal_id="v1", amount=12, reason=None),
        Caller(ctx.actor),
    )
    catch_up(loyal, PROJECTION)

    account = load_account(loyal.app, cid, "points")
    assert account is not None
    rows = {r["lot_id"]: r for r in _rows(sql, loyal, LOTS)}
    assert {k: (r["remaining"], r["held"]) for k, r in rows.items()} == {
        lot.lot_id: (lot.remaining, lot.held) for lot in account.lots.values()
    }
    assert {k: r["remaining"] for k, r in rows.items()} == {"a": 7, "b": 20}
    assert (rows["a"]["earned"], rows["a"]["expires_at"]) == (10, t + timedelta(days=100))


def test_profile_points_sql_gives_available_points_per_type_now(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    cid = customer(loyal)
    t = now() - timedelta(days=1)
    earn(loyal, cid, "a", 120, at=t, expires_at=t + timedelta(days=100))
    earn(loyal, cid, "old", 50, at=t - timedelta(days=9), expires_at=t)  # expired, not yet run
    earn(loyal, cid, "g", 40, at=t, expires_at=None, point_type="growth")
    catch_up(loyal, PROJECTION)

    row = sql.execute(
        f"SELECT {profile_points_sql(loyal.schema)} AS points"
        " FROM (SELECT %s::uuid AS customer_id) p",
        (cid,),
    ).fetchone()
    nobody = sql.execute(
        f"SELECT {profile_points_sql(loyal.schema)} AS points"
        " FROM (SELECT %s::uuid AS customer_id) p",
        (uuid4(),),
    ).fetchone()

    assert row is not None
    assert row["points"] == {"points": 120, "growth": 40}
    assert nobody is not None
    assert nobody["points"] is None


def test_rebuilding_points_balance_from_scratch_equals_the_live_tables(
    loyal: Tenant, sql: psycopg.Connection[Any]
) -> None:
    ctx = CommandContext("t")
    past = now() - timedelta(days=30)
    for k in range(3):
        cid = customer(loyal)
        earn(loyal, cid, "a", 50 + k, at=past, expires_at=past + timedelta(days=5))
        earn(loyal, cid, "b", 70, at=past, expires_at=None)
        redeem_at(loyal, cid, f"old{k}", 40, at=past + timedelta(days=1))  # from lot a
        hold_until(loyal, cid, "gone", 5, at=past, until=past + timedelta(days=1))
        catch_up(loyal, PROJECTION)  # the live tables see the history in several batches
        execute(
            loyal.app,
            RedeemPoints(cid, "points", redemption_id=f"r{k}", amount=30, reason=None),
            Caller(ctx.actor),
        )
        catch_up(loyal, PROJECTION)
        # Lot a (consumed, then past its expiry) comes back and expires at once; b gets 10.
        for redemption, amount in ((f"old{k}", None), (f"r{k}", 10)):
            execute(
                loyal.app,
                ReverseRedemption(
                    cid,
                    "points",
                    redemption,
                    reversal_id=f"v-{redemption}",
                    amount=amount,
                    reason=None,
                ),
                Caller(ctx.actor),
            )
        execute(loyal.app, HoldPoints(cid, "points", hold_id="open", amount=7), Caller(ctx.actor))
        kinds = [(type(e), getattr(e, "lots", ())) for e in account_events(loyal, cid)]
        assert (PointsAccount.RedemptionReversed, (("a", 40),)) in kinds
        assert (PointsAccount.Expired, (("a", 40),)) in kinds
    run_expiry(loyal, now())
    catch_up(loyal, PROJECTION)

    build_fresh(loyal, PROJECTION)

    assert dump(sql, loyal, [f"{t}_rebuild" for t in PROJECTION.tables]) == dump(
        sql, loyal, list(PROJECTION.tables)
    )


# -- the schedule -------------------------------------------------------------------------------


def test_the_expiry_scheduler_expires_due_lots_on_its_own_and_stops(
    loyal: Tenant, runtime: Runtime
) -> None:
    cid = customer(loyal)
    past = now() - timedelta(days=3)
    earn(loyal, cid, "a", 9, at=past, expires_at=past + timedelta(days=1))
    scheduler = ExpiryScheduler(TenantsOf(runtime.tenants, loyal), every_seconds=0.05)

    scheduler.start()
    try:
        wait_until(
            lambda: any(isinstance(e, PointsAccount.Expired) for e in account_events(loyal, cid)),
            what="the scheduled expiry",
        )
        wait_until(lambda: scheduler.rounds >= 2, what="a second round")
    finally:
        scheduler.stop()

    assert not scheduler.running
    expired = [e for e in account_events(loyal, cid) if isinstance(e, PointsAccount.Expired)]
    assert len(expired) == 1


def test_the_projection_worker_runs_the_expiry_schedule_and_stops_it(
    loyal: Tenant, runtime: Runtime, database_url: str
) -> None:
    tenants = TenantsOf(runtime.tenants, loyal)
    worker = ProjectionWorker(
        database_url, tenants, [PROJECTION], threads=1, expiry_every_seconds=3600
    )
    assert worker.expiry is not None

    worker.start()
    try:
        wait_until(lambda: worker.expiry is not None and worker.expiry.rounds >= 1)
        assert worker.expiry.running
    finally:
        worker.stop()

    assert not worker.expiry.running
