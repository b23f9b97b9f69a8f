"""The PostgreSQL idempotency store: claim, complete, replay, refuse, release, recover (C1-C8)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from application.errors import IdempotencyKeyReused, RequestInProgress
from application.idempotency import IdempotencyKey, StoredAnswer
from application.kernel import Caller, Outcome
from application.registration import RegisterCustomer
from domain.values import Identity
from infrastructure.idempotency import CLAIM_SECONDS
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.conftest import new_slug
from tests.integration.support import events, register, rows, run_at_once, run_registration

REQUEST = RegisterCustomer(identities=[("phone", "+8613800138000")], name="Li Lei")
KEY = IdempotencyKey("RegisterCustomer", "client-key-1", REQUEST.fingerprint())
OTHER_BODY = IdempotencyKey(
    "RegisterCustomer", "client-key-1", replace(REQUEST, name="Han Meimei").fingerprint()
)
RESPONSE = StoredAnswer("created", {"customer_id": "abc", "matched": False}, 7)


def claim_row(sql: psycopg.Connection[Any], tenant: Tenant, key: IdempotencyKey) -> Any:
    found = rows(
        sql,
        tenant,
        "SELECT state, outcome, body, position, locked_until > now() AS locked"
        " FROM {s}.idempotency_keys WHERE scope = %s AND key = %s",
        key.scope,
        key.key,
    )
    return found[0] if found else None


def test_a_commands_fingerprint_is_independent_of_mapping_order_and_covers_every_field() -> None:
    attributes = RegisterCustomer([("phone", "+1")], attributes={"city": "Hangzhou", "vip": True})
    reordered = RegisterCustomer([("phone", "+1")], attributes={"vip": True, "city": "Hangzhou"})

    assert reordered.fingerprint() == attributes.fingerprint()
    assert OTHER_BODY.fingerprint != KEY.fingerprint


def test_begin_claims_a_new_key(tenant: Tenant, sql: psycopg.Connection[Any]) -> None:
    assert tenant.idempotency.begin(KEY) is None

    row = claim_row(sql, tenant, KEY)
    assert row["state"] == "processing"
    assert row["locked"] is True


def test_begin_while_the_first_request_is_in_flight_raises_request_in_progress(
    tenant: Tenant,
) -> None:
    tenant.idempotency.begin(KEY)

    with pytest.raises(RequestInProgress):
        tenant.idempotency.begin(KEY)


def test_concurrent_begins_of_one_key_claim_it_exactly_once(tenant: Tenant) -> None:
    def work(_: int) -> str:
        try:
            return "claimed" if tenant.idempotency.begin(KEY) is None else "replayed"
        except RequestInProgress:
            return "in progress"

    outcomes = run_at_once(8, work)

    assert sorted(outcomes) == ["claimed"] + ["in progress"] * 7


def test_a_completed_key_replays_the_stored_response(tenant: Tenant) -> None:
    tenant.idempotency.begin(KEY)
    tenant.idempotency.complete(KEY, RESPONSE)

    assert tenant.idempotency.begin(KEY) == RESPONSE
    assert tenant.idempotency.begin(KEY) == RESPONSE


@pytest.mark.parametrize("completed", [False, True], ids=["in-flight", "completed"])
def test_the_same_key_with_another_body_raises_key_reused(tenant: Tenant, completed: bool) -> None:
    tenant.idempotency.begin(KEY)
    if completed:
        tenant.idempotency.complete(KEY, RESPONSE)

    with pytest.raises(IdempotencyKeyReused):
        tenant.idempotency.begin(OTHER_BODY)


def test_the_same_key_in_another_scope_is_another_request(tenant: Tenant) -> None:
    tenant.idempotency.begin(KEY)
    tenant.idempotency.complete(KEY, RESPONSE)
    elsewhere = IdempotencyKey("LinkIdentities", KEY.key, KEY.fingerprint)

    assert tenant.idempotency.begin(elsewhere) is None


def test_the_same_key_in_another_tenant_does_not_collide(tenant: Tenant, runtime: Runtime) -> None:
    other = runtime.tenants.create(new_slug())
    tenant.idempotency.begin(KEY)
    tenant.idempotency.complete(KEY, RESPONSE)

    assert other.idempotency.begin(KEY) is None


def test_release_drops_an_unfinished_claim_so_the_client_can_retry(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    tenant.idempotency.begin(KEY)

    tenant.idempotency.release(KEY)

    assert claim_row(sql, tenant, KEY) is None
    assert tenant.idempotency.begin(KEY) is None


def test_release_keeps_a_completed_response(tenant: Tenant) -> None:
    tenant.idempotency.begin(KEY)
    tenant.idempotency.complete(KEY, RESPONSE)

    tenant.idempotency.release(KEY)

    assert tenant.idempotency.begin(KEY) == RESPONSE


def claim_then_crash(tenant: Tenant, sql: psycopg.Connection[Any]) -> None:
    """Claim KEY and leave it processing past its lock, as an owner that crashed would."""
    tenant.idempotency.begin(KEY)
    rows(
        sql,
        tenant,
        "UPDATE {s}.idempotency_keys SET locked_until = now() - interval '1 second'"
        " WHERE scope = %s AND key = %s RETURNING 1",
        KEY.scope,
        KEY.key,
    )


def test_a_stale_claim_is_taken_over_and_locked_again(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # C8: the first owner crashed and left the key processing past its lock.
    claim_then_crash(tenant, sql)

    assert tenant.idempotency.begin(KEY) is None

    row = claim_row(sql, tenant, KEY)
    assert row["state"] == "processing"
    assert row["locked"] is True
    with pytest.raises(RequestInProgress):
        tenant.idempotency.begin(KEY)


def test_a_claim_within_its_lock_time_is_not_taken_over(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    tenant.idempotency.begin(KEY)
    rows(
        sql,
        tenant,
        "UPDATE {s}.idempotency_keys SET locked_until = now() + interval '1 second'"
        " WHERE scope = %s AND key = %s RETURNING 1",
        KEY.scope,
        KEY.key,
    )

    with pytest.raises(RequestInProgress):
        tenant.idempotency.begin(KEY)
    assert CLAIM_SECONDS > 1


def test_completion_is_written_in_the_same_transaction_as_the_events(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    store = tenant.idempotency

    result = run_registration(
        tenant.app, REQUEST, Caller("t", tenant.slug, store), client_id=KEY.key
    )

    assert result.outcome is Outcome.CREATED
    row = claim_row(sql, tenant, KEY)
    assert row["state"] == "done"
    assert row["outcome"] == "created"
    body = {"customer_id": str(result.customer_id), "matched": False}
    assert msgspec.json.decode(row["body"]) == body
    assert row["position"] == result.position == events(sql, tenant)[-1]["notification_id"]
    assert store.begin(KEY) == StoredAnswer("created", body, result.position)


def test_a_save_refused_by_the_event_store_leaves_the_claim_unfinished(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    store = tenant.idempotency
    store.begin(KEY)
    first = register(tenant, ("pos_member_no", "1"))
    stale = tenant.app.repository.get(first.customer_id)
    register(tenant, ("pos_member_no", "1"), ("email", "a@example.com"))  # takes version 2
    stale.link_identities([Identity("jd_pin", "x")], actor="t", at=tenant.app.clock())

    with pytest.raises(IntegrityError):
        tenant.app.save(stale, side_effect=store.completion(KEY, StoredAnswer("done", {}, None)))

    assert claim_row(sql, tenant, KEY)["state"] == "processing"


def test_concurrent_retries_of_a_stale_claim_take_it_over_exactly_once(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    claim_then_crash(tenant, sql)

    def work(_: int) -> str:
        try:
            return "claimed" if tenant.idempotency.begin(KEY) is None else "replayed"
        except RequestInProgress:
            return "in progress"

    assert sorted(run_at_once(8, work)) == ["claimed"] + ["in progress"] * 7
