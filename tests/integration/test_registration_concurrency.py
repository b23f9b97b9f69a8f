"""Registration under concurrency on the real event store (B7, D5)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from application.errors import ConcurrencyConflict
from application.kernel import MAX_ATTEMPTS
from application.registration import RegisterCustomer
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.merge import Merge
from domain.values import Identity
from infrastructure.tenancy import Tenant
from tests.integration.support import events, register, rows, run_at_once, run_registration

REGISTERED = Customer.Registered.TOPIC
LINKED = Customer.IdentitiesLinked.TOPIC
CLAIMED = IdentityClaim.Claimed.TOPIC


def test_sixteen_threads_registering_one_identity_make_exactly_one_customer(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    results = run_at_once(
        16,
        lambda _: run_registration(
            tenant.app, RegisterCustomer(identities=[("wechat_unionid", "o6_race")], name="Race")
        ),
    )

    log = events(sql, tenant)
    (registered,) = [e for e in log if e["topic"] == REGISTERED]
    (claimed,) = [e for e in log if e["topic"] == CLAIMED]
    assert len(log) == 2
    assert {r.customer_id for r in results} == {registered["originator_id"]}
    assert sorted(r.matched for r in results) == [False] + [True] * 15
    assert claimed["originator_id"] == tenant.app.claim_id(Identity("wechat_unionid", "o6_race"))
    # Every caller can read its write: each position returned covers the registration.
    head = log[-1]["notification_id"]
    assert all(registered["notification_id"] <= r.position <= head for r in results)


def test_concurrent_registrations_of_distinct_identities_all_succeed_with_contiguous_versions(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    per_thread = 8

    def work(n: int) -> list[Any]:
        return [
            register(tenant, ("phone", f"+86138{n:04d}{k:04d}"), ("email", f"{n}-{k}@example.com"))
            for k in range(per_thread)
        ]

    results = [r for batch in run_at_once(24, work) for r in batch]

    assert not any(r.matched for r in results)
    assert len({r.customer_id for r in results}) == 24 * per_thread
    log = events(sql, tenant)
    assert len([e for e in log if e["topic"] == REGISTERED]) == 24 * per_thread
    assert len([e for e in log if e["topic"] == CLAIMED]) == 2 * 24 * per_thread
    assert_versions_contiguous(log)
    # Positions are unique and every save got back the position of its own last event.
    assert len({e["notification_id"] for e in log}) == len(log)
    by_stream = {e["originator_id"]: e["notification_id"] for e in log if e["topic"] == REGISTERED}
    assert all(r.position >= by_stream[r.customer_id] for r in results)


def test_as_many_concurrent_links_to_one_customer_as_attempts_all_succeed(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # B7: writers load version n; all but one conflict, re-read and re-decide. Each conflict
    # means another writer succeeded, so MAX_ATTEMPTS writers need at most MAX_ATTEMPTS tries.
    first = register(tenant, ("pos_member_no", "M-1"))
    writers = MAX_ATTEMPTS

    results = run_at_once(
        writers, lambda n: register(tenant, ("pos_member_no", "M-1"), ("jd_pin", f"jd-{n}"))
    )

    assert {r.customer_id for r in results} == {first.customer_id}
    assert all(r.matched for r in results)
    customer = tenant.app.repository.get(first.customer_id)
    assert set(customer.identities) == {Identity("pos_member_no", "M-1")} | {
        Identity("jd_pin", f"jd-{n}") for n in range(writers)
    }
    log = events(sql, tenant)
    stream = [e["originator_version"] for e in log if e["originator_id"] == first.customer_id]
    assert stream == list(range(1, writers + 2))
    assert_versions_contiguous(log)


def test_more_concurrent_links_than_attempts_lose_no_update_and_leave_no_partial_write(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # Beyond the bounded retries a writer gets a retryable ConcurrencyConflict; whatever was
    # accepted is all there, and a refused writer left neither its link nor its claim.
    first = register(tenant, ("pos_member_no", "M-1"))

    def work(n: int) -> bool:
        try:
            register(tenant, ("pos_member_no", "M-1"), ("jd_pin", f"jd-{n}"))
        except ConcurrencyConflict:
            return False
        return True

    accepted = run_at_once(16, work)

    linked = {Identity("jd_pin", f"jd-{n}") for n in range(16) if accepted[n]}
    customer = tenant.app.repository.get(first.customer_id)
    assert set(customer.identities) == {Identity("pos_member_no", "M-1")} | linked
    log = events(sql, tenant)
    claims = {e["originator_id"] for e in log if e["topic"] == CLAIMED}
    held = linked | {Identity("pos_member_no", "M-1")}
    assert claims == {tenant.app.claim_id(i) for i in held}
    assert len([e for e in log if e["topic"] == LINKED]) == len(linked)
    assert_versions_contiguous(log)


def test_racing_registrations_of_identities_of_two_customers_merge_them_exactly_once(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    one = register(tenant, ("pos_member_no", "1"))
    two = register(tenant, ("pos_member_no", "2"))

    results = run_at_once(
        8,
        lambda _: register(
            tenant, ("pos_member_no", "1"), ("pos_member_no", "2"), ("email", "x@example.com")
        ),
    )

    # Every racer answers with the first-registered customer; one merge, one email claim.
    assert {r.customer_id for r in results} == {one.customer_id}
    log = events(sql, tenant)
    assert [e["topic"] for e in log].count(Merge.Merged.TOPIC) == 1
    assert len([e for e in log if e["topic"] == CLAIMED]) == 3
    assert tenant.app.repository.get(two.customer_id).merged_into == one.customer_id
    assert set(tenant.app.repository.get(one.customer_id).identities) == {
        Identity("pos_member_no", "1"),
        Identity("pos_member_no", "2"),
        Identity("email", "x@example.com"),
    }
    assert_versions_contiguous(log)


def test_the_database_refuses_a_second_event_at_a_stream_version(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # D5: uniqueness of (stream, version) is the database's, not only the recorder's.
    first = register(tenant, ("pos_member_no", "1"))

    with pytest.raises(psycopg.errors.UniqueViolation):
        rows(
            sql,
            tenant,
            "INSERT INTO {s}.membercore_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, %s, '{{}}'::bytea) RETURNING 1",
            first.customer_id,
            REGISTERED,
        )


def test_saving_a_stale_aggregate_raises_integrity_error_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    first = register(tenant, ("pos_member_no", "1"))
    stale = tenant.app.repository.get(first.customer_id)
    register(tenant, ("pos_member_no", "1"), ("email", "a@example.com"))  # version 2 is taken
    before = events(sql, tenant)

    stale.link_identities([Identity("jd_pin", "x")], actor="t", at=tenant.app.clock())
    with pytest.raises(IntegrityError):
        tenant.app.save(stale)

    assert events(sql, tenant) == before


def assert_versions_contiguous(log: list[dict[str, Any]]) -> None:
    versions: dict[Any, list[int]] = defaultdict(list)
    for e in log:
        versions[e["originator_id"]].append(e["originator_version"])
    for stream, seen in versions.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), stream
        # Within a stream, log order is version order.
        assert seen == sorted(seen), stream
