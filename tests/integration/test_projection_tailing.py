"""D4: a projector tailing the log while writers commit slowly skips nothing."""

from __future__ import annotations

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
from tests.integration.projector_faults import tailing
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
    slow = Caller("t", tenant.slug, SlowCompletion(tenant.idempotency))

    # Catch up over and over, in small batches, while the writers are still committing.
    with tailing(tenant, PROFILE) as passes:
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

    assert len(passes) > 1, "the projector ran while the writers wrote"
    registered = {
        e["originator_id"] for e in events(sql, tenant) if e["topic"] == Customer.Registered.TOPIC
    }
    projected = {
        r["customer_id"] for r in rows(sql, tenant, "SELECT customer_id FROM {s}.customer_profile")
    }
    assert len(registered) == 60
    assert projected == registered
