"""(c) ``GET /v1/customers/{id}`` at 16 connections vs a trivial Litestar endpoint on the same
uvicorn settings, measured with the same load tool; then the API process's RSS.

Existing customers are seeded through the tenant's application and projected before the API
starts, so every GET finds its profile. Targets: ratio >= 0.5, p99 < 10 ms, RSS < 250 MB.
"""

from __future__ import annotations

import os
import secrets
import sys

from bench.common import (
    Check,
    Env,
    check,
    create_tenant,
    free_port,
    get_workload,
    heading,
    http_note,
    load,
    membercore_service,
    rss_mb,
    run_service,
    seed_customers,
    show,
    warm_up,
)
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from projections.customer_profile.projection import CustomerProfileProjection
from projections.engine import catch_up

CUSTOMERS = int(os.environ.get("BENCH_READ_CUSTOMERS") or 20_000)
TARGET_RATIO = 0.5
TARGET_P99_MS = 10.0
TARGET_RSS_MB = 250.0


def run(env: Env) -> list[Check]:
    heading("(c) GET /v1/customers/{id} at 16 connections vs a trivial Litestar endpoint")
    slug = "bench_read_" + secrets.token_hex(3)
    api_key = create_tenant(env, slug)
    runtime = Runtime.open(Settings(database_url=env.url))
    try:
        tenant = runtime.tenants.get(slug)
        ids = seed_customers(tenant, CUSTOMERS)
        catch_up(tenant, CustomerProfileProjection())
    finally:
        runtime.close()
    show("customers seeded and projected", f"{len(ids):,}")
    headers = {"Authorization": f"Bearer {api_key}"}

    port = free_port()
    argv = [sys.executable, "-m", "bench.trivial_app", str(port)]
    trivial = get_workload("GET /hello (trivial)", ["/hello"], headers, env.workdir)
    with run_service(env, "trivial", argv, port=port, ready_path="/hello") as service:
        warm_up(env, service.base_url, trivial)
        baseline = load(env, service.base_url, trivial, services={"trivial app": service.pid})
    show("baseline: trivial Litestar @get, uvicorn", baseline.describe())
    show("   CPU during the load", baseline.cpu)

    workload = get_workload(
        "GET /v1/customers/{id}", [f"/v1/customers/{i}" for i in ids], headers, env.workdir
    )
    with membercore_service(env, "serve") as service:
        rss_idle = rss_mb(service.pid)
        warm_up(env, service.base_url, workload)
        result = load(env, service.base_url, workload, services={"API process": service.pid})
        rss = rss_mb(service.pid)
    show("membercore serve: GET /v1/customers/{id}", result.describe())
    show("   CPU during the load", result.cpu)
    show("API process RSS (VmRSS)", f"{rss:.0f} MB after the load ({rss_idle:.0f} MB at start)")
    ratio = result.ok_per_second / baseline.ok_per_second
    show("ratio GET profile / trivial endpoint", f"{ratio:.3f}")
    return [
        check(
            Check(
                "(c) GET /v1/customers/{id} req/s / trivial endpoint",
                ratio,
                TARGET_RATIO,
                note=http_note(env),
            )
        ),
        check(
            Check(
                "(c) GET /v1/customers/{id} p99 latency",
                result.p99_ms,
                TARGET_P99_MS,
                "ms",
                at_least=False,
                note=http_note(env),
            )
        ),
        check(
            Check("(c) API process RSS after the load", rss, TARGET_RSS_MB, "MB", at_least=False)
        ),
    ]
