"""(d) Bulk import: ``membercore import customers`` of 100,000 NDJSON rows into a fresh tenant.

Every row is a new person with three identities (a WeChat unionid, a phone, an email), so each
row writes a Customer.Registered and three IdentityClaim.Claimed events. The import runs in this
process through ``infrastructure.importer.import_file`` (what the CLI calls), with its default
chunk and worker settings. Baselines in the same run: the same kind of rows registered one at a
time through ``register_customer`` (a 2,000-row sample, what a loop over POST /v1/customers
would do without the HTTP), and a raw ``COPY`` of the file's lines into a plain jsonb table.
Memory: the process's peak RSS once 10,000 rows are written and at the end (constant memory:
the difference stays small whatever the file's length). Target: >= 5,000 rows/s.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from application.context import CommandContext
from application.customers import RegisterCustomer, register_customer
from bench.common import Check, CpuMeter, Env, check, create_tenant, fmt, heading, show
from infrastructure.importer import Checkpoint, import_file
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS") or 100_000)
SAMPLE = min(2_000, ROWS)
MEMORY_AT = min(10_000, ROWS // 2)
TARGET_RATE = 5_000.0
TARGET_RSS_GROWTH_MB = 32.0


def row(n: int, tag: str) -> dict[str, Any]:
    return {
        "identities": [{"type": "wechat_unionid", "value": f"o6_{tag}_{n:07d}"}],
        "name": f"Customer {n}",
        "phone": f"+86138{n:08d}",
        "email": f"customer{n}.{tag}@example.com",
        "birthday": f"19{70 + n % 30}-0{1 + n % 9}-1{n % 9}",
        "attributes": {"city": "Shanghai", "source": "bench"},
        "channel": "import",
    }


def write_file(path: Path, rows: int, tag: str) -> int:
    with path.open("w") as f:
        for n in range(rows):
            f.write(json.dumps(row(n, tag)) + "\n")
    return path.stat().st_size


def _rss_mb() -> float:
    """This process's peak resident set so far (getrusage: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _single_rows(runtime: Runtime, env: Env) -> float:
    """Rows/s of register_customer called once per row (the same row shape) in a fresh tenant."""
    slug = "bench_imp1_" + secrets.token_hex(3)
    create_tenant(env, slug)
    tenant = runtime.tenants.get(slug)
    tag = secrets.token_hex(3)
    ctx = CommandContext("bench")
    commands = []
    for n in range(SAMPLE):
        r = row(n, tag)
        commands.append(
            RegisterCustomer(
                identities=[(i["type"], i["value"]) for i in r["identities"]],
                name=r["name"],
                phone=r["phone"],
                email=r["email"],
                attributes=r["attributes"],
                channel=r["channel"],
            )
        )
    started = time.perf_counter()
    for command in commands:
        register_customer(tenant.app, command, ctx)
    return SAMPLE / (time.perf_counter() - started)


def _copy(env: Env, path: Path) -> float:
    """Rows/s of COPY of the file's lines into a plain jsonb table (the storage floor)."""
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_import_copy (id bigserial PRIMARY KEY, doc jsonb)")
        started = time.perf_counter()
        with (
            conn.cursor() as curs,
            curs.copy("COPY bench_import_copy (doc) FROM STDIN") as copy,
            path.open("rb") as f,
        ):
            for line in f:
                copy.write_row((line.decode().rstrip("\n"),))
        return ROWS / (time.perf_counter() - started)


def _written(env: Env, slug: str) -> tuple[int, int]:
    with psycopg.connect(env.url, autocommit=True) as conn:
        found = conn.execute(
            SQL(
                "SELECT count(*) FILTER (WHERE topic = 'membercore.Customer.Registered'),"
                " count(*) FILTER (WHERE topic = 'membercore.IdentityClaim.Claimed')"
                " FROM {}.membercore_events"
            ).format(Identifier(f"t_{slug}"))
        ).fetchone()
    return (int(found[0]), int(found[1])) if found else (0, 0)


def run(env: Env) -> list[Check]:
    heading(f"(d) membercore import customers: {ROWS:,} NDJSON rows into a fresh tenant")
    path = env.workdir / "customers.ndjson"
    size = write_file(path, ROWS, secrets.token_hex(3))
    show("input", f"{ROWS:,} rows, {size / 1e6:.1f} MB (3 identities per row)")
    slug = "bench_imp_" + secrets.token_hex(3)
    create_tenant(env, slug)
    runtime = Runtime.open(Settings(database_url=env.url, log_level="warning"))
    try:
        tenant = runtime.tenants.get(slug)
        marks: dict[str, Any] = {}
        started = time.perf_counter()

        def progress(state: Checkpoint) -> None:
            if "early" not in marks and state.rows >= MEMORY_AT:
                marks["early"] = (state.rows, _rss_mb(), _current_rss_mb())
                marks["early_at"] = time.perf_counter()

        meter = CpuMeter({}, env.dbname)
        summary = import_file(tenant, path, progress=False, on_progress=progress)
        seconds = time.perf_counter() - started
        cpu = meter.report()
        end_peak, end_now = _rss_mb(), _current_rss_mb()
        rate = ROWS / seconds
        registered, claims = _written(env, slug)
        show(
            "import (default chunk 1000, parsing workers by size)",
            f"{fmt(rate)} rows/s ({summary['rows']:,} rows in {seconds:.1f} s;"
            f" {registered:,} customers, {claims:,} claims written)",
        )
        show("   CPU during the import", cpu)
        early_rows, early_peak, early_now = marks["early"]
        late_rate = (ROWS - early_rows) / (time.perf_counter() - marks["early_at"])
        show(f"   rate after the first {early_rows:,} rows", f"{fmt(late_rate)} rows/s")
        growth = end_peak - early_peak
        show(
            f"   peak RSS at {early_rows:,} rows -> at {ROWS:,}",
            f"{early_peak:.0f} MB -> {end_peak:.0f} MB (+{growth:.1f} MB);"
            f" current {early_now:.0f} -> {end_now:.0f} MB",
        )

        started = time.perf_counter()
        again = import_file(tenant, path, progress=False)
        show(
            "   the same file again (every row matched)",
            f"{fmt(ROWS / (time.perf_counter() - started))} rows/s,"
            f" {again['matched']:,} matched, {again['registered']} registered",
        )

        single = _single_rows(runtime, env)
        show(f"baseline: register_customer per row ({SAMPLE:,})", f"{fmt(single)} rows/s")
        show("   speedup of the import", f"{rate / single:.1f}x")
        copied = _copy(env, path)
        show("baseline: COPY of the raw lines into jsonb", f"{fmt(copied)} rows/s")
        show("   import / raw COPY", f"{rate / copied:.3f}")
    finally:
        runtime.close()
    return [
        check(Check("(d) import rows/s (100k-row NDJSON, fresh tenant)", rate, TARGET_RATE)),
        check(
            Check(
                f"(d) import peak RSS growth {early_rows // 1000}k -> {ROWS // 1000}k rows",
                growth,
                TARGET_RSS_GROWTH_MB,
                "MB",
                at_least=False,
            )
        ),
    ]
