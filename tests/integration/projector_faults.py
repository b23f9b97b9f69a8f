"""What the projection fault tests share, whatever the projection.

* Kill (D3): a projector process catching the tables up in small batches is SIGKILLed at random
  points (often between a batch's rows and its tracking record); whatever it reached, the
  tables hold exactly the events up to its tracking position, and resumed to the head they
  equal one pass over the log.
* Tailing (D4): a projector catching up over and over in small batches while writers commit.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from infrastructure.tenancy import Tenant
from projections.engine import Projection, catch_up, head_position, tracked_position
from tests.integration.support import dump, expected_dump

ROOT = Path(__file__).resolve().parents[2]
# Writes one round of events for the projection (round number, the run's random source).
WriteRound = Callable[[Tenant, int, random.Random], None]


def kill_during_catch_up(
    database_url: str, tenant: Tenant, projection: Projection, rng: random.Random
) -> None:
    """Start a projector process; once it has made progress, SIGKILL it a moment later."""
    start = tracked_position(tenant, projection.name)
    module = "tests.integration.projector_process"
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", module, database_url, tenant.slug, "2", projection.name],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while tracked_position(tenant, projection.name) == start:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the projector process made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def run_kills(
    database_url: str,
    tenant: Tenant,
    sql: psycopg.Connection[Any],
    projection: Projection,
    write_round: WriteRound,
    *,
    rounds: int,
    seed: int,
) -> None:
    """``rounds`` times: write a round, kill a projector in the middle of catching it up, and
    compare the tables with the log up to where it got; then resume to the head."""
    rng = random.Random(seed)
    partial = 0
    for round_ in range(rounds):
        write_round(tenant, round_, rng)
        kill_during_catch_up(database_url, tenant, projection, rng)
        reached = tracked_position(tenant, projection.name)
        partial += reached < head_position(tenant)
        # Whatever the kill interrupted, the tables hold exactly the events up to the tracking.
        assert dump(sql, tenant, projection.tables) == expected_dump(
            tenant, sql, reached, projection
        ), f"seed {seed}, round {round_}"
    assert partial, "no kill landed before the projector reached the head"

    catch_up(tenant, projection)

    head = head_position(tenant)
    assert tracked_position(tenant, projection.name) == head
    assert dump(sql, tenant, projection.tables) == expected_dump(tenant, sql, head, projection)


@contextmanager
def tailing(tenant: Tenant, projection: Projection) -> Iterator[list[int]]:
    """A projector catching up over and over in batches of 3 while the block runs, then to the
    head; the events each pass applied."""
    done = threading.Event()
    passes: list[int] = []

    def behind() -> bool:
        return tracked_position(tenant, projection.name) < head_position(tenant)

    def tail() -> None:
        while not done.is_set() or behind():
            passes.append(catch_up(tenant, projection, batch_size=3))

    tailer = threading.Thread(target=tail)
    tailer.start()
    try:
        yield passes
    finally:
        done.set()
        tailer.join(60)
