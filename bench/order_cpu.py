"""(f) In-process CPU per order: ``PlaceOrder`` through the kernel on a real tenant, no HTTP.

What one order costs the Python process that decides and saves it, with HTTP, the projections
and the load generator out of the picture: ``time.process_time()`` over ``BENCH_CPU_ORDERS``
orders (default 1000) placed one after another, after a warm-up of the same kind. Two kinds:
first-time buyers (the order registers its buyer) and returning buyers (a pool registered during
the warm-up). The baseline in the same run is the CPU of a trivial one-row INSERT transaction
through the same pool, so the ratio says how many such transactions' worth of Python an order is.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from psycopg.sql import SQL, Identifier

from application.kernel import Caller, execute
from application.orders import PlaceOrder
from application.program import define_program
from bench.common import Check, Env, heading, show
from bench.orders import PROGRAM  # the same two point types and growth ladder
from infrastructure.eventstore import EVENTS_TABLE
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenant_app import TenantApp

ORDERS = int(os.environ.get("BENCH_CPU_ORDERS") or 1000)
WARMUP = max(50, ORDERS // 5)
RETURNING_BUYERS = 200
BASELINE_TABLE = "bench_cpu_insert"
CALLER = Caller("bench")


def _cpu_per_call(calls: int, one: Callable[[int], None]) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``one(i)`` for i in ``range(calls)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        one(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e3, wall / calls * 1e3


def _baseline(runtime: Runtime) -> tuple[float, float]:
    pool = runtime.pool
    with pool.connection() as conn:
        conn.execute(
            SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, v text)").format(
                Identifier(BASELINE_TABLE)
            )
        )
    insert = SQL("INSERT INTO {} (v) VALUES ('x')").format(Identifier(BASELINE_TABLE))

    def one(_: int) -> None:
        with pool.connection() as conn, conn.transaction():
            conn.execute(insert)

    _cpu_per_call(WARMUP, one)
    return _cpu_per_call(ORDERS, one)


def _orders(app: TenantApp) -> dict[str, tuple[float, float]]:
    placed = datetime.now(UTC) - timedelta(minutes=1)
    nonce = secrets.token_hex(4)

    def order(kind: str, buyer: Callable[[int], str]) -> Callable[[int], None]:
        def one(i: int) -> None:
            cmd = PlaceOrder(
                f"{nonce}-{kind}-{i}",
                "bench",
                placed,
                1000 + i % 9000,
                identity=("bench_buyer", buyer(i)),
            )
            execute(app, cmd, CALLER)  # a refused order raises, and stops the benchmark

        return one

    # Warm-up: code paths, caches, the program read; it also registers the returning buyers.
    _cpu_per_call(WARMUP, order("warm", lambda i: f"{nonce}-r{i}"))
    new = _cpu_per_call(ORDERS, order("new", lambda i: f"{nonce}-n{i}"))
    returning = _cpu_per_call(ORDERS, order("ret", lambda i: f"{nonce}-r{i % RETURNING_BUYERS}"))
    placed_orders = _placed(app)
    if placed_orders != WARMUP + 2 * ORDERS:
        raise RuntimeError(f"{WARMUP + 2 * ORDERS} orders sent, {placed_orders} placed")
    return {"first-time buyers": new, "returning buyers": returning}


def _placed(app: TenantApp) -> int:
    """Orders stored, counted from the events: the figures are for orders that were placed."""
    with app.datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL("SELECT count(*) AS n FROM {}.{} WHERE topic = 'membercore.Order.Placed'").format(
                Identifier(app.schema), Identifier(EVENTS_TABLE)
            )
        )
        row = curs.fetchone()
    return int(row["n"]) if row else 0


def run(env: Env) -> list[Check]:
    heading(f"(f) in-process CPU per order: PlaceOrder x {ORDERS:,}, one thread, no HTTP")
    runtime = Runtime.open(Settings(database_url=env.url, log_level="warning"))
    try:
        tenant = runtime.tenants.create(f"bench_cpu_{secrets.token_hex(3)}")
        define_program(tenant.app, PROGRAM, "bench")
        base_cpu, base_wall = _baseline(runtime)
        show(
            "baseline: 1-row INSERT transaction, same pool",
            f"{base_cpu:.3f} ms CPU ({base_wall:.3f} ms wall) each",
        )
        for kind, (cpu, wall) in _orders(tenant.app).items():
            show(f"PlaceOrder, {kind}", f"{cpu:.3f} ms CPU ({wall:.3f} ms wall) per order")
            show("   ratio to the INSERT transaction's CPU", f"{cpu / base_cpu:.1f}x")
    finally:
        runtime.close()
    # A measure to compare before and after a change, not a target from an issue.
    return []
