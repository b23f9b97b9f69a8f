"""D4: a projector tailing the log while writers commit slowly skips nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from application.app import both
from application.idempotency import IdempotencyKey, StoredAnswer
from application.kernel import Caller, execute
from application.registration import RegisterCustomer
from domain.customer import Customer
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up, head_position, tracked_position
from tests.integration.support import events, rows, run_at_once

PROFILE = CustomerProfileProjection()


class SlowCompletion:
    """The tenant's idempotency store, whose completion holds the saving transaction open a
    while after its insert."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def completion(self, key: IdempotencyKey, answer: StoredAnswer) -> Any:
        def sleep_in_transaction(curs: Any, position: int) -> None:
            time.sleep(0.01)

        return both(self.store.completion(key, answer), sleep_in_transaction)


def test_a_tailing_projector_sees_every_event_committed_by_slow_writers(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    done = threading.Event()
    passes: list[int] = []

    def tail() -> None:
        # Catch up over and over, in small batches, while the writers are still committing.
        while not done.is_set() or tracked_position(tenant, PROFILE.name) < head_position(tenant):
            passes.append(catch_up(tenant, PROFILE, batch_size=3))

    slow = Caller("t", tenant.slug, SlowCompletion(tenant.idempotency))
    tailer = threading.Thread(target=tail)
    tailer.start()
    try:
        run_at_once(
            6,
            lambda n: [
                execute(
                    tenant.app,
                    RegisterCustomer(identities=[("pos_member_no", f"{n}-{k}")]),
                    slow,
                    client_id=f"tail-{n}-{k}",
                )
                for k in range(10)
            ],
        )
    finally:
        done.set()
        tailer.join(60)

    assert len(passes) > 1, "the projector ran while the writers wrote"
    registered = {
        e["originator_id"] for e in events(sql, tenant) if e["topic"] == Customer.Registered.TOPIC
    }
    projected = {
        r["customer_id"] for r in rows(sql, tenant, "SELECT customer_id FROM {s}.customer_profile")
    }
    assert len(registered) == 60
    assert projected == registered
