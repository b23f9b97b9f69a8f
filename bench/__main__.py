"""``python -m bench [NAME ...]``: run the benchmarks and print a summary.

Uses a fresh database on ``DATABASE_URL``'s server (dropped afterwards), else an embedded
PostgreSQL. Knobs for quick runs: ``BENCH_SECONDS`` (default 15) sets each HTTP load's length,
``BENCH_EVENTS`` (default 100000) the projector's log length, ``BENCH_READ_CUSTOMERS`` (20000)
the customers the read benchmark GETs; ``BENCH_LOADGEN=python`` uses the Python load generator
even where wrk is installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable

from bench import imports, order_cpu, orders, projector, read, register, replay
from bench.common import LOAD_SECONDS, BenchmarkFailed, Check, Env, bench_env
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings

BENCHMARKS: dict[str, Callable[[Env], list[Check]]] = {
    "register": register.run,
    "projector": projector.run,
    "read": read.run,
    "imports": imports.run,
    "orders": orders.run,
    "replay": replay.run,
    "order-cpu": order_cpu.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    names = parser.parse_args().names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    # The report is the output: the service's own logs (embedded PostgreSQL starting...) are not.
    configure_logging(Settings(log_level="warning"))
    # pgserver asks platformdirs for XDG_RUNTIME_DIR, which containers often lack.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    started = time.monotonic()
    checks: list[Check] = []
    with bench_env() as env:
        print(f"membercore benchmarks on {env.server}")
        print(
            f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()};"
            f" load generator: {env.loadgen}; {LOAD_SECONDS:.0f} s per HTTP load"
        )
        if env.loadgen != "wrk":
            print("   wrk not found (apt-get install -y wrk): using the asyncio+httpx generator")
        for name in names:
            try:
                checks.extend(BENCHMARKS[name](env))
            except BenchmarkFailed as e:
                # No figure for a benchmark whose requests failed, and none for the rest.
                print(f"\npython -m bench: {name} failed: {e}", file=sys.stderr, flush=True)
                return 1

    met = sum(c.met for c in checks)
    print(f"\n== summary: {met}/{len(checks)} targets met ({time.monotonic() - started:.0f} s)")
    for c in checks:
        print(f"   {c.line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
