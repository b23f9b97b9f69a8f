"""PostgreSQL crashes (``pg_ctl stop -m immediate``) while orders and redemptions run over HTTP,
and starts again: the service answers 503 with ``Retry-After`` while it is down (never a 500),
serves again without being restarted, and every acknowledged command is stored exactly once,
none half-written. The server is a cluster of the test's own (tests/integration/pg_cluster.py),
never the one the rest of the suite uses."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infrastructure.settings import Settings
from tests.api.support import assert_problem
from tests.integration.faults_support import (
    Client,
    Command,
    Shop,
    check_balances,
    check_nothing_lost_or_doubled,
    check_replays_answer_the_first_answer,
    fault_settings,
    run_all,
    serving,
    statuses,
)
from tests.integration.pg_cluster import Cluster

DOWN_SECONDS = 6.0
# The pools try to reconnect at least every second: the service serves again within this.
RECOVERY_SECONDS = 5.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Not pytest's tmp_path: the server runs as another user when tests run as root, and
    # every folder above its data directory must let that user through.
    server = Cluster(Path(tempfile.mkdtemp(prefix="mc-faults-pg-"))).init()
    server.start()
    try:
        yield server
    finally:
        server.remove()


class Crash(threading.Thread):
    """Once ``after`` commands are acknowledged: stop the server at once, send a request of its
    own while it is down (the ``probe``), start it again."""

    def __init__(self, cluster: Cluster, client: Client, shop: Shop, commands: list[Command],
                 after: int) -> None:  # fmt: skip
        super().__init__(name="crash", daemon=True)
        self.cluster, self.client, self.shop = cluster, client, shop
        self.commands, self.after = commands, after
        self.stopped_at = self.started_at = 0.0
        self.probe: httpx.Response | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while sum(c.acknowledged for c in self.commands) < self.after:
                time.sleep(0.01)
            self.cluster.stop("immediate")
            self.stopped_at = time.monotonic()
            # The workload's requests in flight may outlast the outage (they retry); a request
            # made and answered while the server is down shows what the service says then.
            probe = self.shop.redemption(self.shop.customers[0], "r-probe", 1)
            self.probe = self.client.post(probe.url, json=probe.body, headers=self.shop.headers)
            time.sleep(max(0.0, self.stopped_at + DOWN_SECONDS - time.monotonic()))
            self.cluster.start()
            self.started_at = time.monotonic()
        except BaseException as e:  # reported by the test
            self.error = e


def test_a_crashed_and_restarted_server_loses_no_acknowledged_command_and_never_500(
    settings: Settings, cluster: Cluster
) -> None:
    with serving(fault_settings(settings, cluster.url)) as (client, runtime):
        shop = Shop.open(client, runtime, customers=4)
        commands = shop.workload(per_customer=40)
        crash = Crash(cluster, client, shop, commands, after=len(commands) // 10)
        crash.start()
        run_all(client, shop.headers, commands, concurrency=12, seconds=150)
        crash.join()
        assert crash.error is None, (crash.error, cluster.server_log()[-3000:])

        seen = statuses(commands)
        assert 500 not in seen, seen
        assert crash.probe is not None
        assert_problem(crash.probe, 503, "service_unavailable")
        assert crash.probe.headers["Retry-After"] == "1"
        before = [c for c in commands if c.answered_at and c.answered_at < crash.stopped_at]
        after = [c for c in commands if c.answered_at and c.answered_at > crash.started_at]
        assert before, "the server went down before any command was acknowledged"
        assert after, "no command was acknowledged after the server came back"
        recovered = min(c.answered_at or 0 for c in after) - crash.started_at
        assert recovered < RECOVERY_SECONDS, timeline(commands, crash)
        unsettled = [(c.client_id, c.statuses) for c in commands if not c.acknowledged]
        assert not unsettled, unsettled

        check_nothing_lost_or_doubled(shop.tenant, commands)
        check_replays_answer_the_first_answer(client, shop.headers, commands)
        check_balances(client, shop, commands)
        # The read pool's connections died with the server too: the first one back fails (and
        # has the pool replace the others), the next read succeeds.
        first, then = client.get("/health"), client.get("/health")
        assert first.status_code in (200, 503), first.text
        assert then.status_code == 200, then.text


def timeline(commands: list[Command], crash: Crash) -> dict[str, object]:
    """When the server went down and came back, and when commands were answered (seconds from
    the first answer)."""
    t0 = min(c.answered_at or crash.stopped_at for c in commands)
    answered = sorted((c.answered_at or 0) - t0 for c in commands)
    return {
        "down": round(crash.stopped_at - t0, 2),
        "up": round(crash.started_at - t0, 2),
        "answered": [round(t, 2) for t in answered[:: max(1, len(answered) // 20)]],
    }
