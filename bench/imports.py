"""(d) Bulk import: ``membercore import customers`` of 100,000 NDJSON rows into a fresh tenant.

Every row is a new person with three identities (a WeChat unionid, a phone, an email), so each
row writes a Customer.Registered and three IdentityClaim.Claimed events. The CLI runs as users
run it (its own process, default chunk and parsing processes, no progress bar). Baselines in
the same run: the same kind of rows registered one at a time through ``RegisterCustomer`` (a
2,000-row sample: what a loop over POST /v1/customers does, without the HTTP), and a raw
``COPY`` of the file's lines into a plain jsonb table. Memory: the import process's peak RSS
(VmHWM) once 10,000 rows are written and at the end: constant memory means the difference stays
small whatever the file's length. Target: >= 5,000 rows/s.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from application.kernel import Caller, execute
from application.registration import RegisterCustomer
from bench.common import (
    ROOT,
    BenchmarkFailed,
    Check,
    CpuMeter,
    Env,
    check,
    create_tenant,
    fmt,
    heading,
    membercore_argv,
    service_env,
    show,
)
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


class ImportMeter(CpuMeter):
    """CpuMeter naming the import process's descendants (its parsing processes)."""

    machine = ""

    def __init__(self, importer: int, dbname: str) -> None:
        self.importer = importer
        super().__init__({"import process": importer}, dbname)

    def _group(self, pid: int) -> str:
        if pid != self.importer and _descends(pid, self.importer):
            return "parsing processes"
        return super()._group(pid)

    def used(self) -> tuple[dict[str, float], float]:
        """(CPU seconds by group, seconds metered). The bench process is left out: once it has
        reaped the import process, its children's time includes the import's."""
        whole = self.report()  # stops the sampling, takes the last sample
        seconds = time.monotonic() - self._began
        used: dict[str, float] = {}
        for pid, cpu in self._last.items():
            delta = cpu - self._first.get(pid, 0.0)
            group = self._groups.setdefault(pid, self._group(pid))
            if delta > 0 and pid != os.getpid():
                used[group] = used.get(group, 0.0) + delta
        self.machine = whole.rpartition("; ")[2]
        return used, seconds


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(8):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rpartition(")")[2].split()[1])
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def _memory_mb(pid: int) -> tuple[float, float] | None:
    """(peak RSS, current RSS) of ``pid`` in MB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {
        k: int(v.split()[0]) / 1024
        for k, _, v in (line.partition(":") for line in status.splitlines())
        if k in ("VmHWM", "VmRSS")
    }
    return (values["VmHWM"], values["VmRSS"]) if len(values) == 2 else None


def _progress(checkpoint: Path) -> int:
    try:
        return int(json.loads(checkpoint.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return 0


def _cli_import(env: Env, slug: str, path: Path) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Run ``membercore import customers``; (its summary, wall seconds, CPU and memory)."""
    checkpoint = path.with_name(path.name + ".progress.json")
    started = time.perf_counter()
    proc = subprocess.Popen(
        membercore_argv("import", "customers", str(path), "--tenant", slug, "--no-progress"),
        cwd=ROOT,
        env=service_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    meter = ImportMeter(proc.pid, env.dbname)
    marks: dict[str, Any] = {}
    while proc.poll() is None:
        memory = _memory_mb(proc.pid)
        if memory is not None:
            marks["end"] = memory
            if "early" not in marks and (done := _progress(checkpoint)) >= MEMORY_AT:
                marks["early"] = (done, *memory, time.perf_counter())
        time.sleep(0.05)
    marks["exit"] = time.perf_counter()
    seconds = marks["exit"] - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise BenchmarkFailed(f"membercore import exited {proc.returncode}: {err.strip()}")
    summary: dict[str, Any] = json.loads(out)
    if summary["rejected"]:
        first = Path(summary["report"]).read_text().partition("\n")[0]
        raise BenchmarkFailed(
            f"membercore import customers: {summary['rejected']} of {summary['rows']} rows"
            f" rejected; the first: {first[:500]}"
        )
    used, metered = meter.used()
    marks["cpu"] = (
        ", ".join(
            f"{g} {cpu / metered:.0%}" for g, cpu in sorted(used.items(), key=lambda x: -x[1])
        )
        + f" of a core; {meter.machine}"
    )
    marks["per_row"] = {g: cpu * 1e6 / ROWS for g, cpu in used.items() if g != "other processes"}
    return summary, seconds, marks


def _single_rows(runtime: Runtime, env: Env) -> float:
    """Rows/s of RegisterCustomer run once per row (the same row shape) in a fresh tenant."""
    slug = "bench_imp1_" + secrets.token_hex(3)
    create_tenant(env, slug)
    tenant = runtime.tenants.get(slug)
    tag = secrets.token_hex(3)
    caller = Caller("bench")
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
        execute(tenant.app, command, caller)
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

    summary, seconds, marks = _cli_import(env, slug, path)
    rate = ROWS / seconds
    registered, claims = _written(env, slug)
    show(
        "membercore import customers (defaults)",
        f"{fmt(rate)} rows/s ({summary['rows']:,} rows in {seconds:.1f} s with start-up;"
        f" {fmt(summary['rate'])} rows/s as it reports; {registered:,} customers,"
        f" {claims:,} claims written)",
    )
    show("   CPU during the import", marks["cpu"])
    per_row = marks["per_row"]
    show(
        "   CPU per row",
        f"{sum(per_row.values()):.0f} µs: "
        + ", ".join(f"{g} {us:.0f}" for g, us in sorted(per_row.items(), key=lambda x: -x[1])),
    )
    early_rows, early_peak, early_now, early_at = marks["early"]
    end_peak, end_now = marks["end"]
    show(
        f"   rate after the first {early_rows:,} rows",
        f"{fmt((ROWS - early_rows) / (marks['exit'] - early_at))} rows/s",
    )
    show(
        f"   import process peak RSS at {early_rows:,} rows -> end",
        f"{early_peak:.0f} MB -> {end_peak:.0f} MB (+{end_peak - early_peak:.1f} MB);"
        f" current {early_now:.0f} -> {end_now:.0f} MB",
    )
    growth = end_peak - early_peak

    again, again_seconds, _ = _cli_import(env, slug, path)
    show(
        "   the same file again (every row matched)",
        f"{fmt(ROWS / again_seconds)} rows/s, {again['matched']:,} matched,"
        f" {again['registered']} registered",
    )

    runtime = Runtime.open(Settings(database_url=env.url, log_level="warning"))
    try:
        single = _single_rows(runtime, env)
    finally:
        runtime.close()
    show(f"baseline: RegisterCustomer per row ({SAMPLE:,})", f"{fmt(single)} rows/s")
    show("   speedup of the import", f"{rate / single:.1f}x")
    copied = _copy(env, path)
    show("baseline: COPY of the raw lines into jsonb", f"{fmt(copied)} rows/s")
    show("   import / raw COPY", f"{rate / copied:.3f}")
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
