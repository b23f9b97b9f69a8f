"""(d) Orders per second through ``POST /v1/orders`` (16 clients) and ``POST /v1/orders/batch``
(batches of 500 from 16 clients; ``BENCH_BATCH_SIZE``, ``BENCH_BATCH_CLIENTS``), each against
the same-run pgbench single-row INSERT baseline (16 clients). Targets: single >= 0.25 x the
pgbench rate, batch >= 1.5 x.

Every order is new and earns points on a program with two point types (a points lot with
rolling expiry, and growth value driving a two-level ladder), so an order writes the Order,
two points accounts and a level membership. Buyers are drawn from a pool of identities
(``BENCH_ORDER_CUSTOMERS``, default 5000): the first order of each registers its buyer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg.sql import SQL, Identifier

from bench.common import (
    _LUA_COMMON,
    BenchmarkFailed,
    Check,
    CpuMeter,
    Env,
    Workload,
    _lua_headers,
    background,
    check,
    create_tenant,
    expect_ok,
    fmt,
    heading,
    http_note,
    load,
    membercore_argv,
    membercore_service,
    pgbench_tps,
    show,
    warm_up,
)

SINGLE_TARGET = 0.25
BATCH_TARGET = 1.5
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE") or 500)
# 16 clients, as the target states; BENCH_BATCH_CLIENTS=4 gives the earlier figures.
BATCH_CLIENTS = int(os.environ.get("BENCH_BATCH_CLIENTS") or 16)
CUSTOMERS = int(os.environ.get("BENCH_ORDER_CUSTOMERS") or 5000)
BASELINE_TABLE = "bench_pgbench_insert"

PROGRAM = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 365},
        },
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]},
    ],
    "level_groups": [
        {
            "code": "consumer",
            "basis": "growth",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "calendar", "period": "year"},
            "levels": [{"code": "normal", "threshold": 0}, {"code": "gold", "threshold": 100000}],
        }
    ],
}


def _placed_at() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def order_workload(api_key: str) -> Workload:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    placed = _placed_at()
    lua = (
        _LUA_COMMON
        + _lua_headers(headers)
        + f"""
wrk.method = "POST"
local prefix = "x"
function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  math.randomseed(os.time() * 100 + tid)
end
function request()
  counter = counter + 1
  local buyer = math.random({CUSTOMERS})
  return wrk.format(nil, "/v1/orders", nil,
    '{{"order_id":"' .. prefix .. counter .. '","channel":"bench",' ..
    '"identity":{{"type":"bench_buyer","value":"b' .. buyer .. '"}},' ..
    '"placed_at":"{placed}","amount":' .. (1000 + counter % 9000) .. '}}')
end
"""
    )

    def make(nonce: str, worker: int, n: int) -> tuple[str, str, bytes | None]:
        body = {
            "order_id": f"{nonce}-{worker}-{n}",
            "channel": "bench",
            "identity": {"type": "bench_buyer", "value": f"b{secrets.randbelow(CUSTOMERS)}"},
            "placed_at": placed,
            "amount": 1000 + n % 9000,
        }
        return "POST", "/v1/orders", json.dumps(body).encode()

    return Workload("POST /v1/orders", lua, make, headers)


async def _batches(base_url: str, api_key: str, seconds: float) -> tuple[int, float]:
    """(orders placed, seconds) posting batches from ``BATCH_CLIENTS`` clients; BenchmarkFailed
    when a batch or any order in one is refused."""
    headers = {"Authorization": f"Bearer {api_key}"}
    placed = _placed_at()
    nonce = secrets.token_hex(4)
    ok = 0
    deadline = time.monotonic() + seconds

    async def client(worker: int) -> None:
        nonlocal ok
        n = 0
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:
            while time.monotonic() < deadline:
                orders = []
                for _ in range(BATCH_SIZE):
                    n += 1
                    orders.append(
                        {
                            "order_id": f"{nonce}-{worker}-{n}",
                            "channel": "bench",
                            "identity": {
                                "type": "bench_buyer",
                                "value": f"b{secrets.randbelow(CUSTOMERS)}",
                            },
                            "placed_at": placed,
                            "amount": 1000 + n % 9000,
                        }
                    )
                response = await http.post("/v1/orders/batch", json={"orders": orders})
                expect_ok(response, "POST /v1/orders/batch")
                for r in response.json()["results"]:
                    if r["status"] not in (200, 201):
                        raise BenchmarkFailed(
                            f"POST /v1/orders/batch: order {r.get('order_id')} answered"
                            f" status {r['status']}: {json.dumps(r)[:500]}"
                        )
                    ok += 1

    started = time.monotonic()
    await asyncio.gather(*(client(w) for w in range(BATCH_CLIENTS)))
    return ok, time.monotonic() - started


def _events_per_order(env: Env, slug: str) -> float:
    with psycopg.connect(env.url, autocommit=True) as conn:
        row = conn.execute(
            SQL(
                "SELECT count(*), count(*) FILTER (WHERE topic = 'membercore.Order.Placed')"
                " FROM {}.membercore_events"
            ).format(Identifier(f"t_{slug}"))
        ).fetchone()
    return row[0] / max(1, row[1]) if row else 0.0


def _measure(env: Env, command: str, baseline: float) -> tuple[float, float]:
    """(single, batch) ratios to ``baseline`` against ``membercore <command>`` (with a separate
    ``membercore worker`` for ``api``), on a tenant of its own."""
    slug = f"bench_orders_{command}_" + secrets.token_hex(3)
    api_key = create_tenant(env, slug)
    label = "serve (API + worker in one process)" if command == "serve" else "api + separate worker"
    with contextlib.ExitStack() as stack:
        services: dict[str, int] = {}
        if command == "api":
            services["worker process"] = stack.enter_context(
                background(env, "membercore-worker", membercore_argv("worker"))
            )
        service = stack.enter_context(membercore_service(env, command))
        services["API process"] = service.pid
        put = httpx.put(
            service.base_url + "/v1/program",
            json=PROGRAM,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        expect_ok(put, "PUT /v1/program")
        workload = order_workload(api_key)
        warm_up(env, service.base_url, workload)
        single = load(env, service.base_url, workload, services=services)
        show(f"membercore {label}: POST /v1/orders", single.describe())
        show("   CPU during the load", single.cpu)
        single_ratio = single.ok_per_second / baseline
        show("   ratio to pgbench INSERT", f"{single_ratio:.3f}")

        seconds = float(os.environ.get("BENCH_SECONDS") or 15)
        batch_meter = CpuMeter(services, env.dbname)
        ok, took = asyncio.run(_batches(service.base_url, api_key, seconds))
        rate = ok / took
        show(
            f"   POST /v1/orders/batch ({BATCH_SIZE}/batch, {BATCH_CLIENTS} clients)",
            f"{fmt(rate)} orders/s ({ok} placed, {took:.1f} s)",
        )
        show("   CPU during the load", batch_meter.report())
        batch_ratio = rate / baseline
        show("   ratio to pgbench INSERT", f"{batch_ratio:.3f}")
        show("   events written per order", f"{_events_per_order(env, slug):.2f}")
    return single_ratio, batch_ratio


def run(env: Env) -> list[Check]:
    heading("(d) orders/s: POST /v1/orders (16 clients) and /v1/orders/batch vs pgbench INSERT")
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
        ratios[command] = _measure(env, command, baseline)
    # The targets are for what ``make run`` starts; the split deployment is shown for comparison.
    single_ratio, batch_ratio = ratios["serve"]
    return [
        check(
            Check(
                "(d) POST /v1/orders orders/s / pgbench INSERT tps",
                single_ratio,
                SINGLE_TARGET,
                note=http_note(env),
            )
        ),
        check(
            Check(
                "(d) POST /v1/orders/batch orders/s / pgbench INSERT tps",
                batch_ratio,
                BATCH_TARGET,
            )
        ),
    ]
