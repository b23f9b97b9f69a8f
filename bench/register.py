"""(a) ``POST /v1/customers`` throughput at 16 clients vs pgbench single-row INSERTs at 16 clients.

Every request registers a new identity, so each one really writes (a Customer.Registered and an
IdentityClaim.Claimed event). The baseline is what the same server commits when each transaction
is one INSERT into a bigserial-keyed table (``pgbench -c 16 -j 2 -T 10``). Target ratio >= 0.25.
"""

from __future__ import annotations

import contextlib
import secrets
import time

import httpx
import psycopg
from psycopg.sql import SQL, Identifier

from bench.common import (
    Check,
    CpuMeter,
    Env,
    LoadResult,
    background,
    check,
    create_tenant,
    fmt,
    heading,
    http_note,
    load,
    membercore_argv,
    membercore_service,
    pgbench_tps,
    register_workload,
    show,
    warm_up,
)

TARGET_RATIO = 0.25
BASELINE_TABLE = "bench_pgbench_insert"


def _written(env: Env, slug: str) -> tuple[int, int]:
    """(customers registered, event-store transactions that wrote them) in the tenant."""
    with psycopg.connect(env.url, autocommit=True) as conn:
        row = conn.execute(
            SQL(
                "SELECT count(*) FILTER (WHERE topic = %s), count(DISTINCT xmin::text)"
                " FROM {}.membercore_events"
            ).format(Identifier(f"t_{slug}")),
            ("membercore.Customer.Registered",),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _wait_projected(base_url: str, timeout: float = 120.0) -> tuple[int, float]:
    """(lag when the load stopped, seconds until the projection worker caught up)."""
    started = time.monotonic()
    first: int | None = None
    while time.monotonic() - started < timeout:
        body = httpx.get(base_url + "/health", timeout=5).json()
        lag = sum(p["lag"] for p in body["projections"].values())
        first = lag if first is None else first
        if lag == 0:
            break
        time.sleep(0.1)
    return first or 0, time.monotonic() - started


def _measure(env: Env, slug: str, api_key: str, command: str) -> LoadResult:
    """Warm up, load and let the projection catch up, against ``membercore <command>``."""
    workload = register_workload(api_key)
    with contextlib.ExitStack() as stack:
        services: dict[str, int] = {}
        if command == "api":
            services["worker process"] = stack.enter_context(
                background(env, "membercore-worker", membercore_argv("worker"))
            )
        service = stack.enter_context(membercore_service(env, command))
        services["API process"] = service.pid
        warm_up(env, service.base_url, workload)
        result = load(env, service.base_url, workload, services=services)
        lag, drained = _wait_projected(service.base_url)
    label = "serve (API + worker in one process)" if command == "serve" else "api + separate worker"
    show(f"membercore {label}", result.describe())
    show("   CPU during the load", result.cpu)
    show("   projection lag when the load stopped", f"{lag} events, 0 after {drained:.1f} s")
    customers, commits = _written(env, slug)
    show(
        "   registrations per event-store commit",
        f"{customers / max(1, commits):.2f} ({customers} in {commits} transactions, with warm-up)",
    )
    return result


def run(env: Env) -> list[Check]:
    heading("(a) POST /v1/customers at 16 clients vs pgbench single-row INSERT at 16 clients")
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute(
            SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, v text)").format(
                Identifier(BASELINE_TABLE)
            )
        )
    meter = CpuMeter({}, env.dbname)
    baseline = pgbench_tps(env, f"INSERT INTO {BASELINE_TABLE}(v) VALUES ('x');\n")
    show("baseline: pgbench INSERT, -c 16 -j 2 -T 10", f"{fmt(baseline)} tps")
    show("   CPU during pgbench", meter.report())

    ratios = {}
    for command in ("serve", "api"):
        slug = f"bench_{command}_" + secrets.token_hex(3)
        result = _measure(env, slug, create_tenant(env, slug), command)
        ratios[command] = result.ok_per_second / baseline
        show("   ratio to pgbench INSERT", f"{ratios[command]:.3f}")
    # The target is for what ``make run`` starts; the split deployment is shown for comparison.
    return [
        check(
            Check(
                "(a) POST /v1/customers req/s / pgbench INSERT tps",
                ratios["serve"],
                TARGET_RATIO,
                note=http_note(env),
            )
        )
    ]
