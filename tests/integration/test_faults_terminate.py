"""The server terminates in-flight command transactions (``pg_terminate_backend``) while orders
and redemptions run concurrently over HTTP: no 500, every command settles (clients retry a 503
with the same client id), each has exactly one effect, an order's account, level and order are
stored together or not at all, and a replay answers the first answer."""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from tests.integration.faults_support import (
    Client,
    Shop,
    check_balances,
    check_nothing_lost_or_doubled,
    check_replays_answer_the_first_answer,
    fault_settings,
    run_all,
    serving,
    statuses,
    with_params,
)

# One backend of the service inside a transaction that has written (it holds an xid) or waits
# for the event table's lock: an in-flight command save.
IN_FLIGHT = """
SELECT pid, backend_xid IS NOT NULL AS writing FROM pg_stat_activity
WHERE application_name = %s AND backend_type = 'client backend' AND xact_start IS NOT NULL
  AND state <> 'idle' AND (backend_xid IS NOT NULL OR wait_event_type = 'Lock')
"""


class Terminator(threading.Thread):
    """Terminates one in-flight transaction of the service every few milliseconds."""

    def __init__(self, url: str, app_name: str) -> None:
        super().__init__(name="terminator", daemon=True)
        self.url, self.app_name = url, app_name
        self.done = threading.Event()
        self.writes = self.waits = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.is_set():
                rows = conn.execute(IN_FLIGHT, (self.app_name,)).fetchall()
                if rows:
                    pid, writing = random.choice(rows)
                    killed = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
                    if killed and killed[0]:
                        self.writes += writing
                        self.waits += not writing
                    # Let some saves through between kills.
                    time.sleep(random.uniform(0.005, 0.04))
                else:
                    time.sleep(0.001)


@pytest.fixture
def served(settings: Settings, database_url: str) -> Iterator[tuple[Client, Runtime, str]]:
    app_name = f"mc_faults_{secrets.token_hex(4)}"
    url = with_params(database_url, application_name=app_name)
    with serving(fault_settings(settings, url, pool_max=8)) as (client, runtime):
        yield client, runtime, app_name


def test_terminated_command_transactions_lose_nothing_double_nothing_and_never_500(
    served: tuple[Client, Runtime, str], database_url: str
) -> None:
    client, runtime, app_name = served
    shop = Shop.open(client, runtime, customers=4)
    commands = shop.workload(per_customer=8)

    terminator = Terminator(database_url, app_name)
    terminator.start()
    try:
        run_all(client, shop.headers, commands, concurrency=12, seconds=120)
    finally:
        terminator.done.set()
        terminator.join()

    seen = statuses(commands)
    assert 500 not in seen, seen
    assert terminator.writes >= 3, (terminator.writes, terminator.waits)
    unsettled = [(c.client_id, c.statuses) for c in commands if not c.acknowledged]
    assert not unsettled, unsettled
    check_nothing_lost_or_doubled(shop.tenant, commands)
    check_replays_answer_the_first_answer(client, shop.headers, commands)
    check_balances(client, shop, commands)
