"""Group commit: saves queued behind a running commit share one transaction, each its own outcome.

The batch is made deterministic by holding the events table lock from another connection: the
first save (the leader) blocks on it, the next saves queue up, and releasing the lock lets the
leader commit alone, after which the queued saves are committed together in one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from psycopg.sql import SQL, Identifier

from domain.customer import Customer
from domain.values import Identity
from infrastructure.eventstore import TenantRecorder
from infrastructure.tenancy import Tenant
from tests.integration.support import events, register, wait_until


def new_customer(tenant: Tenant, value: str) -> Customer:
    return Customer.register(
        customer_id=uuid4(),
        identities=[Identity("pos_member_no", value)],
        name=None, phone=None, email=None, birthday=None, attributes={}, roles=["consumer"],
        owner=None, referrer_id=None, actor="t", at=tenant.app.clock(),
    )  # fmt: skip


TakeLock = Callable[[], Callable[[], None]]


class Saves:
    """Runs ``app.save`` calls in threads, in a known queue order, and collects outcomes."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.recorder: TenantRecorder = tenant.app.tenant_recorder
        self.threads: list[threading.Thread] = []
        self.outcomes: dict[str, Any] = {}
        self.batches: list[list[int]] = []  # sizes of the events of each save, per batch

    def pending(self) -> int:
        with self.recorder._cv:
            return len(self.recorder._pending)

    def start(self, name: str, *objs: Any, **kwargs: Any) -> None:
        def target() -> None:
            try:
                self.outcomes[name] = self.tenant.app.save(*objs, **kwargs)
            except Exception as e:
                self.outcomes[name] = e

        thread = threading.Thread(target=target, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture
def saves(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Saves:
    spy = Saves(tenant)
    commit = spy.recorder._commit

    def recording_commit(batch: list[Any]) -> None:
        spy.batches.append([len(s.events) for s in batch])
        commit(batch)

    monkeypatch.setattr(spy.recorder, "_commit", recording_commit)
    return spy


@pytest.fixture
def table_lock(database_url: str, tenant: Tenant) -> Iterator[TakeLock]:
    """Takes the tenant's events table lock when called; returns the function that releases it."""
    conn = psycopg.connect(database_url)
    conn.execute("SET idle_in_transaction_session_timeout = '30s'")
    conn.commit()

    def take() -> Callable[[], None]:
        conn.execute(
            SQL("LOCK TABLE {}.membercore_events IN EXCLUSIVE MODE").format(
                Identifier(tenant.schema)
            )
        )
        return conn.commit

    try:
        yield take
    finally:
        conn.rollback()
        conn.close()


def queue_behind_a_blocked_leader(
    saves: Saves, tenant: Tenant, table_lock: TakeLock
) -> Callable[[], None]:
    """Start a leader save that blocks on the table lock, with its batch already taken.

    Returns the function that releases the lock.
    """
    release = table_lock()
    saves.batches.clear()
    saves.start("leader", new_customer(tenant, "leader"))
    wait_until(lambda: saves.recorder._leader and saves.pending() == 0, what="leader")
    return release


def test_a_stale_save_in_a_batch_is_refused_alone_and_the_batchmate_commits(
    tenant: Tenant, saves: Saves, table_lock: TakeLock, sql: psycopg.Connection[Any]
) -> None:
    existing = register(tenant, ("pos_member_no", "1")).customer_id
    copy_b = tenant.app.repository.get(existing)
    copy_c = tenant.app.repository.get(existing)
    copy_b.link_identities([Identity("jd_pin", "b")], actor="t", at=tenant.app.clock())
    copy_c.link_identities([Identity("jd_pin", "c")], actor="t", at=tenant.app.clock())

    release = queue_behind_a_blocked_leader(saves, tenant, table_lock)
    saves.start("b", copy_b)
    wait_until(lambda: saves.pending() == 1)
    saves.start("c", copy_c)  # the same stream version as b: stale once b is in
    wait_until(lambda: saves.pending() == 2)
    release()
    saves.join()

    assert saves.batches == [[1], [1, 1]]
    assert not isinstance(saves.outcomes["leader"], Exception)
    assert not isinstance(saves.outcomes["b"], Exception)
    assert isinstance(saves.outcomes["c"], IntegrityError)
    customer = tenant.app.repository.get(existing)
    assert customer.identities == (Identity("pos_member_no", "1"), Identity("jd_pin", "b"))
    stream = [e for e in events(sql, tenant) if e["originator_id"] == existing]
    assert [e["originator_version"] for e in stream] == [1, 2]


def test_a_save_conflicting_with_a_stored_event_is_refused_alone_in_its_batch(
    tenant: Tenant, saves: Saves, table_lock: TakeLock, sql: psycopg.Connection[Any]
) -> None:
    existing = register(tenant, ("pos_member_no", "1")).customer_id
    stale = tenant.app.repository.get(existing)
    register(tenant, ("pos_member_no", "1"), ("email", "taken@example.com"))  # stores version 2
    stale.link_identities([Identity("jd_pin", "stale")], actor="t", at=tenant.app.clock())
    fresh = new_customer(tenant, "fresh")
    written: list[tuple[str, int]] = []

    release = queue_behind_a_blocked_leader(saves, tenant, table_lock)
    saves.start("stale", stale, side_effect=lambda curs, pos: written.append(("stale", pos)))
    wait_until(lambda: saves.pending() == 1)
    saves.start("fresh", fresh, side_effect=lambda curs, pos: written.append(("fresh", pos)))
    wait_until(lambda: saves.pending() == 2)
    release()
    saves.join()

    assert saves.batches == [[1], [1, 1]]
    assert isinstance(saves.outcomes["stale"], IntegrityError)
    (recording,) = saves.outcomes["fresh"]
    # Only the accepted save's side effect ran, given the position of its event.
    assert written == [("fresh", recording.notification.id)]
    log = events(sql, tenant)
    assert [e["originator_version"] for e in log if e["originator_id"] == existing] == [1, 2]
    assert [e["notification_id"] for e in log if e["originator_id"] == fresh.id] == [
        recording.notification.id
    ]


def test_a_batch_whose_transaction_fails_writes_nothing_and_fails_every_save_in_it(
    tenant: Tenant, saves: Saves, table_lock: TakeLock, sql: psycopg.Connection[Any]
) -> None:
    # One transaction per batch: a save whose side effect breaks the transaction takes the
    # whole batch down with it (all-or-nothing per batch; callers retry).
    before = events(sql, tenant)

    def broken(curs: Any, position: int) -> None:
        curs.execute("SELECT 1/0")

    release = queue_behind_a_blocked_leader(saves, tenant, table_lock)
    saves.start("ok", new_customer(tenant, "ok"))
    wait_until(lambda: saves.pending() == 1)
    saves.start("broken", new_customer(tenant, "broken"), side_effect=broken)
    wait_until(lambda: saves.pending() == 2)
    release()
    saves.join()

    assert saves.batches == [[1], [1, 1]]
    assert isinstance(saves.outcomes["broken"], Exception)
    assert isinstance(saves.outcomes["ok"], Exception)
    log = events(sql, tenant)
    assert len(log) == len(before) + 1  # the leader's own batch only


def test_many_queued_saves_are_committed_in_one_transaction_in_queue_order(
    tenant: Tenant, saves: Saves, table_lock: TakeLock, sql: psycopg.Connection[Any]
) -> None:
    customers = [new_customer(tenant, str(n)) for n in range(20)]

    release = queue_behind_a_blocked_leader(saves, tenant, table_lock)
    for n, customer in enumerate(customers):
        saves.start(str(n), customer)
        wait_until(lambda n=n: saves.pending() == n + 1)
    release()
    saves.join()

    assert saves.batches == [[1], [1] * 20]
    positions = [saves.outcomes[str(n)][0].notification.id for n in range(20)]
    assert positions == sorted(positions)
    log = events(sql, tenant)
    assert [e["originator_id"] for e in log[-20:]] == [c.id for c in customers]
