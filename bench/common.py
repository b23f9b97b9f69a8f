"""What the benchmarks share: the bench database, service processes, load generation, reporting.

The load generator is ``wrk`` (one thread, C, epoll) when it is on PATH, so that on a small
machine the server gets the CPU; without it an asyncio + httpx generator runs in this process
(far more CPU per request: its figures understate the server, which the output says).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.sql import SQL, Identifier

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 16
LOAD_SECONDS = float(os.environ.get("BENCH_SECONDS") or 15)
WARMUP_SECONDS = min(3.0, LOAD_SECONDS)
SERVICE_ENV = {"MEMBERCORE_ACCESS_LOG": "0", "MEMBERCORE_LOG_LEVEL": "warning"}


# -- reporting --------------------------------------------------------------------------------


class BenchmarkFailed(RuntimeError):
    """A request of a benchmark failed: a rate over refused requests would be a lie, so the
    benchmark stops and ``python -m bench`` exits non-zero with this message."""


def expect_ok(response: httpx.Response, what: str) -> httpx.Response:
    """``response`` if it is a 2xx, else BenchmarkFailed naming its status and body."""
    if not 200 <= response.status_code < 300:
        raise BenchmarkFailed(f"{what}: {_failure(response.status_code, response.text)}")
    return response


def _failure(status: int | str, body: str) -> str:
    body = " ".join(body.split())
    return f"status {status}: {body[:500]}{'...' if len(body) > 500 else ''}"


@dataclass(frozen=True)
class Check:
    """One target from the issue: a measured figure against its bound."""

    name: str
    measured: float
    target: float
    unit: str = ""
    at_least: bool = True
    note: str = ""  # a caveat printed with the verdict

    @property
    def met(self) -> bool:
        return self.measured >= self.target if self.at_least else self.measured < self.target

    def line(self) -> str:
        bound = ">=" if self.at_least else "<"
        unit = f" {self.unit}" if self.unit else ""
        verdict = "MET" if self.met else "MISSED"
        target = f"target {bound} {fmt(self.target)}{unit}"
        note = f" [{self.note}]" if self.note else ""
        return f"{self.name}: {fmt(self.measured)}{unit} ({target}) {verdict}{note}"


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def http_note(env: Env) -> str:
    """The caveat for figures taken with the Python load generator, which competes for the CPU."""
    return (
        ""
        if env.loadgen == "wrk"
        else "Python load generator: likely its own limit, not the server's"
    )


def heading(title: str) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n== {title}", flush=True)
    print(f"   (load average before: {load} on {os.cpu_count()} CPUs)", flush=True)


def show(label: str, value: str) -> None:
    print(f"   {label:<44} {value}", flush=True)


def check(c: Check) -> Check:
    print(f"   -> {c.line()}", flush=True)
    return c


# -- the bench database -----------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    url: str  # the dedicated database every benchmark uses
    dbname: str
    server: str  # which PostgreSQL, for the report
    pgbench: str
    workdir: Path  # scratch files: wrk scripts, id lists, service logs
    loadgen: str  # "wrk" or "python"


def with_dbname(url: str, dbname: str) -> str:
    if "://" in url:
        return urlunsplit(urlsplit(url)._replace(path="/" + dbname))
    return make_conninfo(url, dbname=dbname)


def _describe(url: str) -> str:
    info = conninfo_to_dict(url)
    host = info.get("host") or "local socket"
    return f"{host}:{info.get('port') or 5432}"


def bundled_pgbench() -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench")


@contextlib.contextmanager
def bench_env() -> Iterator[Env]:
    """A fresh ``mc_bench_<hex>`` database on ``DATABASE_URL``'s server (dropped afterwards),
    or on an embedded PostgreSQL when ``DATABASE_URL`` is not set."""
    workdir = Path(tempfile.mkdtemp(prefix="mc_bench_"))
    admin_url = os.environ.get("DATABASE_URL")
    embedded: Path | None = None
    try:
        if admin_url:
            server = f"DATABASE_URL server at {_describe(admin_url)}"
            pgbench = shutil.which("pgbench") or bundled_pgbench()
        else:
            from infrastructure.database import embedded_database_url

            embedded = workdir / "data"
            admin_url = embedded_database_url(embedded)
            server = "embedded PostgreSQL (pgserver)"
            pgbench = bundled_pgbench()
        name = "mc_bench_" + secrets.token_hex(4)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(SQL("CREATE DATABASE {}").format(Identifier(name)))
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
        version = row[0] if row else "?"
        loadgen = "wrk" if shutil.which("wrk") else "python"
        if os.environ.get("BENCH_LOADGEN") == "python":  # to try the fallback where wrk exists
            loadgen = "python"
        try:
            yield Env(
                url=with_dbname(admin_url, name),
                dbname=name,
                server=f"{server}, PostgreSQL {version}, database {name}",
                pgbench=pgbench,
                workdir=workdir,
                loadgen=loadgen,
            )
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(name))
                )
    finally:
        if embedded is not None:
            from infrastructure.database import stop_embedded

            stop_embedded(embedded)
        shutil.rmtree(workdir, ignore_errors=True)


def pgbench_tps(
    env: Env, script: str, *, clients: int = 16, threads: int = 2, seconds: int = 10
) -> float:
    path = env.workdir / "pgbench.sql"
    path.write_text(script)
    out = subprocess.run(
        [
            env.pgbench,
            "-n",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-f",
            str(path),
            env.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"cannot read tps from pgbench output:\n{out}")
    return float(match.group(1))


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def membercore_argv(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "membercore"
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "infrastructure.cli", *args]


def service_env(env: Env) -> dict[str, str]:
    return {**os.environ, **SERVICE_ENV, "DATABASE_URL": env.url}


def create_tenant(env: Env, slug: str) -> str:
    """``membercore tenants create <slug>``; returns the admin API key it prints."""
    proc = subprocess.run(
        membercore_argv("tenants", "create", slug),
        cwd=ROOT,
        env=service_env(env),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchmarkFailed(
            f"membercore tenants create {slug} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    key: str = json.loads(proc.stdout.strip().splitlines()[-1])["api_key"]
    return key


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    base_url: str


@contextlib.contextmanager
def run_service(
    env: Env, name: str, argv: Sequence[str], *, port: int, ready_path: str
) -> Iterator[Service]:
    """Start ``argv`` as a process, wait until ``ready_path`` answers 200, stop it on exit."""
    log_path = env.workdir / f"{name}.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=service_env(env), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(base_url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield Service(name, proc.pid, base_url)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def background(env: Env, name: str, argv: Sequence[str]) -> Iterator[int]:
    """Run ``argv`` (a process without a port, like the worker) for the block; yields its pid."""
    log_path = env.workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=service_env(env), stdout=log, stderr=log)
    try:
        yield proc.pid
    finally:
        _stop(proc)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def membercore_service(env: Env, command: str = "serve") -> Iterator[Service]:
    port = free_port()
    argv = membercore_argv(command, "--port", str(port))
    with run_service(env, f"membercore-{command}", argv, port=port, ready_path="/health") as s:
        yield s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_HZ = os.sysconf("SC_CLK_TCK")
_PG_SERVER_PROCESSES = (
    "checkpointer", "background writer", "walwriter", "autovacuum", "logical replication",
    "stats collector", "archiver", "startup", "walsender",
)  # fmt: skip


def _process_times() -> dict[int, float]:
    """CPU seconds used so far by every process; the bench process's include its reaped
    children's (wrk, pgbench: waited for by this process)."""
    me = os.getpid()
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                times[pid] = sum(int(f) for f in fields[11 : 15 if pid == me else 13]) / _HZ
            except (OSError, ValueError, IndexError):
                continue
    return times


def _machine_busy() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / _HZ


class CpuMeter:
    """Who used the CPU during a load: named services, PostgreSQL for the bench database, the
    bench process with its children (wrk, pgbench), and every other process on the machine.

    /proc is sampled every 0.25 s from a thread, so processes that exit during the load
    (pgbench's backends) are counted up to their last sample.
    """

    def __init__(self, services: dict[str, int], dbname: str | None = None) -> None:
        self.services = {pid: name for name, pid in services.items()}
        self.dbname = dbname
        self._groups: dict[int, str] = {}
        self._first = _process_times()
        self._last = dict(self._first)
        self._began = time.monotonic()
        self._busy = _machine_busy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            now = _process_times()
            for pid in now.keys() - self._last.keys():  # classify newcomers while they live
                self._groups[pid] = self._group(pid)
            self._last.update(now)

    def _group(self, pid: int) -> str:
        if pid in self.services:
            return self.services[pid]
        if pid == os.getpid():
            return "bench process (with wrk/pgbench)"
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "other processes"
        if comm == "postgres" or cmdline.startswith("postgres"):
            if self.dbname and f" {self.dbname} " in cmdline:
                return "postgres (bench database)"
            if any(name in cmdline for name in _PG_SERVER_PROCESSES):
                return "postgres (server)"
        return "other processes"

    def report(self) -> str:
        self._stop.set()
        self._thread.join()
        self._last.update(_process_times())
        seconds = time.monotonic() - self._began
        machine = (_machine_busy() - self._busy) / seconds
        used: Counter[str] = Counter()
        for pid, cpu in self._last.items():
            delta = cpu - self._first.get(pid, 0.0)
            if delta > 0:
                group = self._groups.setdefault(pid, self._group(pid))
                used[group] += delta
        parts = [f"{name} {cpu / seconds:.0%}" for name, cpu in used.most_common()]
        cores = os.cpu_count() or 1
        return f"{', '.join(parts)} of a core; whole machine {machine:.0%} of {cores * 100}%"


# -- seeding ----------------------------------------------------------------------------------


def build_customers(start: int, count: int, tag: str) -> list[Any]:
    """``count`` new customers (a Customer.Registered each); ``tag`` keeps identities unique."""
    from domain.customer import Customer
    from domain.values import Identity

    at = datetime.now(UTC)
    return [
        Customer.register(
            customer_id=uuid4(),
            identities=[Identity("bench", f"{tag}-{i}")],
            name=f"Customer {i}",
            phone=f"+86139{i:08d}",
            email=f"c{i}.{tag}@example.com",
            birthday=None,
            attributes={"source": "bench", "tier": "gold"},
            roles=("consumer",),
            owner=None,
            referrer_id=None,
            actor="bench",
            at=at,
        )
        for i in range(start, start + count)
    ]


def seed_customers(tenant: Any, count: int, *, batch: int = 5000) -> list[UUID]:
    """Save ``count`` customers into ``tenant`` in batches of ``batch`` aggregates per save."""
    tag = secrets.token_hex(3)
    ids: list[UUID] = []
    for start in range(0, count, batch):
        customers = build_customers(start, min(batch, count - start), tag)
        tenant.app.save(*customers)
        ids.extend(c.id for c in customers)
    return ids


# -- load generation --------------------------------------------------------------------------

# ``response`` counts every answer outside 2xx (wrk's own status error counts only >= 400) and
# keeps the first one, which ``done`` prints for the report (one line, from every thread).
_LUA_COMMON = """
tid = 0
local counter = 0
bad = 0
failure = ""
local threads = {}
function setup(thread)
  nthreads = (nthreads or 0) + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if failure == "" then failure = status .. " " .. (body or "") end
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local nbad = 0
  local first = ""
  for _, thread in ipairs(threads) do
    nbad = nbad + thread:get("bad")
    if first == "" then first = thread:get("failure") end
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"bad":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, nbad))
  io.write("BENCH_FAILURE " .. string.gsub(first, "%s+", " ") .. "\\n")
end
"""


@dataclass(frozen=True)
class Workload:
    """One kind of request, as a wrk Lua script and as a Python request factory.

    ``lua`` defines ``request()`` (its ``init(args)`` gets ``args[1]``: a per-run nonce);
    ``make(nonce, worker, n)`` returns (method, path, body) for the Python generator.
    """

    name: str
    lua: str
    make: Callable[[str, int, int], tuple[str, str, bytes | None]]
    headers: dict[str, str]


def _lua_headers(headers: dict[str, str]) -> str:
    return "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())


def register_workload(api_key: str) -> Workload:
    """POST /v1/customers, each request a new identity (nonce-thread-counter) and a new valid
    mobile number (+86 139, the run's number in two digits, the request's in six: a run past
    a million requests sends invalid numbers, and fails, rather than repeating one)."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    lua = (
        _LUA_COMMON
        + _lua_headers(headers)
        + """
wrk.method = "POST"
local prefix = "x"
local phone = "+86139"
function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  -- one wrk thread (-t1): the run number and the counter make the number unique
  phone = string.format("+86139%02d", tonumber(args[1]:match("^r(%d+)x")) % 100)
end
function request()
  counter = counter + 1
  local v = prefix .. counter
  return wrk.format(nil, "/v1/customers", nil,
    '{"identities":[{"type":"bench","value":"' .. v .. '"}],"name":"Bench Customer",' ..
    '"email":"' .. v .. '@example.com","phone":"' .. phone .. string.format("%06d", counter) ..
    '"}')
end
"""
    )

    def make(nonce: str, worker: int, n: int) -> tuple[str, str, bytes | None]:
        v = f"{nonce}-{worker}-{n}"
        index = (n - 1) * CONNECTIONS + worker  # unique over the run's workers
        body = {
            "identities": [{"type": "bench", "value": v}],
            "name": "Bench Customer",
            "email": f"{v}@example.com",
            "phone": f"+86139{run_number(nonce) % 100:02d}{index:06d}",
        }
        return "POST", "/v1/customers", json.dumps(body).encode()

    return Workload("POST /v1/customers", lua, make, headers)


def get_workload(
    name: str, paths: Sequence[str], headers: dict[str, str], workdir: Path
) -> Workload:
    """GET a path chosen at random from ``paths`` for every request."""
    paths_file = workdir / f"paths-{secrets.token_hex(3)}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    lua = (
        _LUA_COMMON
        + _lua_headers(headers)
        + f"""
local paths = {{}}
for line in io.lines("{paths_file}") do paths[#paths + 1] = line end
function init(args)
  math.randomseed(os.time() * 100 + tid)
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""
    )
    chosen = list(paths)

    def make(nonce: str, worker: int, n: int) -> tuple[str, str, bytes | None]:
        return "GET", random.choice(chosen), None

    return Workload(name, lua, make, headers)


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    failed: int  # non-2xx answers and socket errors
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu: str = ""  # CpuMeter.report() over the load, when services were named
    first_failure: str = ""  # the first non-2xx answer or socket error, for the error message

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.failed) / self.seconds

    def describe(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{fmt(self.ok_per_second)} req/s  (p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms,"
            f" {self.requests} requests in {self.seconds:.1f} s{failed}, {self.tool})"
        )


def load(
    env: Env,
    base_url: str,
    workload: Workload,
    seconds: float = LOAD_SECONDS,
    *,
    services: dict[str, int] | None = None,
) -> LoadResult:
    """Drive ``workload`` with 16 connections for ``seconds``; meter the CPU of ``services``.

    Raises BenchmarkFailed if any request failed (a non-2xx answer or a socket error)."""
    # The run number leads the nonce so that workloads can derive values unique per run
    # from it (numbers, like the register workload's phones) as well as strings.
    nonce = f"r{next(_RUNS)}x{secrets.token_hex(3)}"
    meter = CpuMeter(services or {}, env.dbname)
    if env.loadgen == "wrk":
        result = _wrk(env, base_url, workload, seconds, nonce)
    else:
        result = asyncio.run(_python_load(base_url, workload, seconds, nonce))
    if services:
        result = replace(result, cpu=meter.report())
    if result.failed:
        raise BenchmarkFailed(
            f"{workload.name}: {result.failed} of {result.requests} requests failed;"
            f" the first: {result.first_failure}"
        )
    return result


_RUNS = itertools.count(1)


def run_number(nonce: str) -> int:
    """The run number ``load`` puts in a nonce."""
    return int(nonce[1:].partition("x")[0])


def warm_up(env: Env, base_url: str, workload: Workload) -> None:
    load(env, base_url, workload, WARMUP_SECONDS)


def _wrk(env: Env, base_url: str, workload: Workload, seconds: float, nonce: str) -> LoadResult:
    script = env.workdir / f"wrk-{secrets.token_hex(3)}.lua"
    script.write_text(workload.lua)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url,
            "--",
            nonce,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    failed = r["bad"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    failure = next(
        (ln.removeprefix("BENCH_FAILURE ") for ln in out.splitlines() if ln.startswith("BENCH_F")),
        "",
    )
    if not failure and failed:
        failure = (
            f"socket errors: connect {r['connect']}, read {r['read']}, write {r['write']},"
            f" timeout {r['timeout']}"
        )
    elif failure:
        status, _, body = failure.partition(" ")
        failure = _failure(status, body)
    return LoadResult(
        tool="wrk -t1",
        requests=r["requests"],
        failed=failed,
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        first_failure=failure,
    )


async def _python_load(base_url: str, workload: Workload, seconds: float, nonce: str) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    failures: list[str] = []
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=workload.headers, limits=limits, timeout=10.0
    ) as client:
        deadline = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                method, path, body = workload.make(nonce, w, n)
                started = time.perf_counter()
                try:
                    response = await client.request(method, path, content=body)
                except httpx.HTTPError as e:
                    errors += 1
                    failures.append(f"{type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1
                if not failures and not 200 <= response.status_code < 300:
                    failures.append(_failure(response.status_code, response.text))

        began = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    non_2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    return LoadResult(
        tool="python asyncio+httpx (wrk not found: figures understate the server)",
        requests=len(latencies) + errors,
        failed=non_2xx + errors,
        seconds=elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=latencies[-1] * 1000 if latencies else 0.0,
        first_failure=failures[0] if failures else "",
    )
