"""The behaviours table: idempotent appends by event id, immutability by trigger with the one
erasure exception, concurrent batches, provisioning of new and upgraded tenants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.behaviors import (
    BehaviorInput,
    BehaviorsRecorded,
    Outcome,
    RecordBehaviors,
    parse_behaviors,
    record_behaviors,
)
from application.kernel import Caller, execute
from application.privacy import EraseCustomer
from domain.customer import Customer
from infrastructure.behaviors import (
    PostgresBehaviorStore,
    erase_customer_behaviors,
    install_behaviors,
)
from infrastructure.runtime import Runtime
from infrastructure.tenancy import TENANT_SCHEMA_VERSION, Tenant, Tenants
from tests.integration.support import events, register, rows, run_at_once

AT = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


def behavior(customer_id: UUID, n: int, type_: str = "search", **changes: Any) -> BehaviorInput:
    data: dict[str, Any] = {
        "search": {"query": f"tea {n}", "results": n},
        "product_view": {"sku": f"SKU-{n % 3}", "category": "tea"},
        "feedback": {"rating": 4, "text": "nice"},
    }[type_]
    base = BehaviorInput(
        event_id=f"ev-{n:05d}",
        customer_id=customer_id,
        type=type_,
        occurred_at=AT + timedelta(minutes=n),
        data=data,
        channel="app",
    )
    return replace(base, **changes)


def record(tenant: Tenant, *items: BehaviorInput) -> BehaviorsRecorded:
    return record_behaviors(PostgresBehaviorStore(tenant.datastore), RecordBehaviors(list(items)))


def outcomes(result: BehaviorsRecorded) -> list[tuple[str, Outcome, str | None]]:
    return [(r.event_id, r.outcome, r.error.code if r.error else None) for r in result.results]


def stored(sql: psycopg.Connection[Any], tenant: Tenant) -> list[dict[str, Any]]:
    return rows(
        sql,
        tenant,
        "SELECT position, event_id, customer_id, type, occurred_at, recorded_at, channel, data,"
        " fingerprint FROM {s}.behaviors ORDER BY position",
    )


@pytest.fixture
def customer(tenant: Tenant) -> UUID:
    return register(tenant, ("member_no", "m-1")).customer_id


@pytest.fixture
def recorded(tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    record(tenant, *(behavior(customer, n) for n in range(3)))
    before = stored(sql, tenant)
    assert len(before) == 3
    return before


# -- appending --------------------------------------------------------------------------------


def test_recorded_behaviours_are_stored_normalised_with_their_fingerprint(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    item = behavior(customer, 1, data={"query": " \uff47reen tea ", "results": 3})

    result = record(tenant, item)

    assert outcomes(result) == [("ev-00001", Outcome.ACCEPTED, None)]
    [row] = stored(sql, tenant)
    assert (row["event_id"], row["customer_id"], row["type"], row["channel"]) == (
        "ev-00001",
        customer,
        "search",
        "app",
    )
    assert row["occurred_at"] == item.occurred_at
    assert row["data"] == {"query": "green tea", "results": 3}
    assert len(row["fingerprint"]) == 32
    assert row["recorded_at"] is not None


def test_a_replayed_batch_stores_nothing_new_and_answers_replayed(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    again = record(tenant, *(behavior(customer, n) for n in range(3)))

    assert [o for _, o, _ in outcomes(again)] == [Outcome.REPLAYED] * 3
    assert stored(sql, tenant) == recorded


def test_a_known_event_id_with_other_content_is_rejected_and_the_stored_row_kept(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    changed = behavior(customer, 1, data={"query": "other", "results": 0})

    result = record(tenant, changed, behavior(customer, 7))

    assert outcomes(result) == [
        ("ev-00001", Outcome.REJECTED, "idempotency_key_reused"),
        ("ev-00007", Outcome.ACCEPTED, None),
    ]
    after = stored(sql, tenant)
    assert after[:3] == recorded
    assert [r["event_id"] for r in after[3:]] == ["ev-00007"]


def test_items_of_unknown_customers_are_rejected_and_only_registered_customers_count(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    # An identity claim is an aggregate of the tenant too, but not a customer.
    other_streams = {
        e["originator_id"] for e in events(sql, tenant) if e["topic"] != Customer.Registered.TOPIC
    }
    assert other_streams
    claim = next(iter(other_streams))

    result = record(
        tenant,
        behavior(customer, 0),
        behavior(uuid4(), 1),
        behavior(claim, 2),
        behavior(customer, 3),
    )

    assert outcomes(result) == [
        ("ev-00000", Outcome.ACCEPTED, None),
        ("ev-00001", Outcome.REJECTED, "customer_not_found"),
        ("ev-00002", Outcome.REJECTED, "customer_not_found"),
        ("ev-00003", Outcome.ACCEPTED, None),
    ]
    assert [r["event_id"] for r in stored(sql, tenant)] == ["ev-00000", "ev-00003"]


def test_a_customer_of_another_tenant_is_unknown_here(
    runtime: Runtime, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    elsewhere = runtime.tenants.create(f"o_{uuid4().hex[:10]}")
    stranger = register(elsewhere, ("member_no", "m-1")).customer_id

    result = record(tenant, behavior(stranger, 0))

    assert outcomes(result) == [("ev-00000", Outcome.REJECTED, "customer_not_found")]
    assert stored(sql, tenant) == []


def test_duplicate_ids_in_one_batch_first_wins_identical_replays_different_rejected(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    first = behavior(customer, 1)
    different = behavior(customer, 1, data={"query": "else"})

    result = record(tenant, first, first, different)

    assert outcomes(result) == [
        ("ev-00001", Outcome.ACCEPTED, None),
        ("ev-00001", Outcome.REPLAYED, None),
        ("ev-00001", Outcome.REJECTED, "idempotency_key_reused"),
    ]
    [row] = stored(sql, tenant)
    assert row["data"] == {"query": "tea 1", "results": 1}


def test_concurrent_identical_batches_from_two_threads_insert_each_behaviour_once(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    for round_ in range(5):
        items = [behavior(customer, round_ * 1000 + n) for n in range(200)]

        results = run_at_once(2, lambda _, items=items: record(tenant, *items))

        for n, item in enumerate(items):
            pair = sorted(r.results[n].outcome for r in results)
            assert pair == [Outcome.ACCEPTED, Outcome.REPLAYED], (item.event_id, pair)
    event_ids = [r["event_id"] for r in stored(sql, tenant)]
    assert len(event_ids) == len(set(event_ids)) == 1000


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    # The store itself, without the command's retry on database errors (which would hide one).
    store = PostgresBehaviorStore(tenant.datastore)
    for round_ in range(5):
        items = parse_behaviors([behavior(customer, round_ * 1000 + n) for n in range(300)])
        batches = [items, items[::-1], items[100:] + items[:100]]

        taken = run_at_once(3, lambda i, batches=batches: store.append(batches[i]).taken)

        # Every id went in once: each batch saw as taken exactly the ids another batch stored.
        assert sum(len(items) - len(t) for t in taken) == len(items)
        assert all(fp == b.fingerprint for t in taken for b in items if (fp := t.get(b.event_id)))
    assert len(stored(sql, tenant)) == 1500


# -- immutability -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {s}.behaviors SET type = 'page_view'",
        "UPDATE {s}.behaviors SET data = '{{}}'::jsonb WHERE event_id = 'ev-00001'",
        "DELETE FROM {s}.behaviors",
        "DELETE FROM {s}.behaviors WHERE event_id = 'ev-00001'",
    ],
    ids=["update-all", "update-one", "delete-all", "delete-one"],
)
def test_updating_or_deleting_behaviours_raises_in_the_database(
    tenant: Tenant, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]], statement: str
) -> None:
    with pytest.raises(psycopg.errors.RestrictViolation, match="behaviors are immutable"):
        rows(sql, tenant, statement + " RETURNING 1")

    assert stored(sql, tenant) == recorded


def test_truncating_the_behaviours_table_raises_in_the_database(
    tenant: Tenant, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    with pytest.raises(psycopg.errors.RestrictViolation, match="TRUNCATE"):
        sql.execute(f"TRUNCATE {tenant.schema}.behaviors")

    assert stored(sql, tenant) == recorded


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {s}.behaviors SET type = 'page_view'",
        "UPDATE {s}.behaviors SET data = '{{}}'::jsonb",  # fingerprint kept
        "UPDATE {s}.behaviors SET data = '{{}}'::jsonb, fingerprint = '', occurred_at = now()",
        "UPDATE {s}.behaviors SET data = '{{\"query\": \"x\"}}'::jsonb, fingerprint = ''",
        "DELETE FROM {s}.behaviors",
    ],
    ids=["other-column", "data-only", "data-and-time", "data-not-blank", "delete"],
)
def test_the_erasure_setting_allows_only_blanking_data_and_fingerprint(
    tenant: Tenant, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]], statement: str
) -> None:
    def in_an_erasure_transaction() -> None:
        with sql.transaction():
            sql.execute("SET LOCAL membercore.erasure = 'on'")
            rows(sql, tenant, statement + " RETURNING 1")

    with pytest.raises(psycopg.errors.RestrictViolation):
        in_an_erasure_transaction()

    assert stored(sql, tenant) == recorded


def test_erasing_a_customer_blanks_their_data_only_and_keeps_type_times_and_counts(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    other = register(tenant, ("member_no", "m-2")).customer_id
    record(tenant, behavior(other, 9))
    others_row = stored(sql, tenant)[-1]

    with sql.transaction(), sql.cursor() as curs:
        erased = erase_customer_behaviors(curs, tenant.schema, customer)

    assert erased == 3
    after = stored(sql, tenant)
    for before, now in zip(recorded, after[:3], strict=True):
        assert now["data"] == {}
        assert now["fingerprint"] == b""
        unchanged = ("position", "event_id", "customer_id", "type", "occurred_at", "recorded_at")
        assert {k: now[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after[3] == others_row


def test_erasing_twice_changes_nothing_the_second_time(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    with sql.transaction(), sql.cursor() as curs:
        erase_customer_behaviors(curs, tenant.schema, customer)
    once = stored(sql, tenant)

    with sql.transaction(), sql.cursor() as curs:
        assert erase_customer_behaviors(curs, tenant.schema, customer) == 0

    assert stored(sql, tenant) == once


def test_after_erasing_the_same_transaction_can_no_longer_change_behaviours(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    other = register(tenant, ("member_no", "m-2")).customer_id
    record(tenant, behavior(other, 9))
    before = stored(sql, tenant)

    def erase_then_blank_everything() -> None:
        with sql.transaction():
            with sql.cursor() as curs:
                erase_customer_behaviors(curs, tenant.schema, customer)
            rows(sql, tenant, "UPDATE {s}.behaviors SET data = '{{}}'::jsonb, fingerprint = ''")

    with pytest.raises(psycopg.errors.RestrictViolation):
        erase_then_blank_everything()

    assert stored(sql, tenant) == before  # the failed transaction took the erasure with it


def test_erasing_outside_a_transaction_is_refused(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    # SET LOCAL outside a transaction sets nothing, so the trigger refuses the update.
    with pytest.raises(psycopg.errors.RestrictViolation), sql.cursor() as curs:
        erase_customer_behaviors(curs, tenant.schema, customer)

    assert stored(sql, tenant) == recorded


def test_replaying_an_erased_behaviour_answers_replayed_and_does_not_restore_its_data(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    with sql.transaction(), sql.cursor() as curs:
        erase_customer_behaviors(curs, tenant.schema, customer)

    again = record(tenant, behavior(customer, 1))

    assert outcomes(again) == [("ev-00001", Outcome.REPLAYED, None)]
    assert all(r["data"] == {} for r in stored(sql, tenant))


def test_erasing_the_customer_blanks_their_behaviours_and_refuses_new_ones(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    execute(tenant.app, EraseCustomer(customer, "request"), Caller("t"))

    assert [(r["data"], r["fingerprint"]) for r in stored(sql, tenant)] == [({}, b"")] * 3
    result = record(tenant, behavior(customer, 1), behavior(customer, 5))
    assert outcomes(result) == [
        ("ev-00001", Outcome.REJECTED, "customer_erased"),
        ("ev-00005", Outcome.REJECTED, "customer_erased"),
    ]
    assert len(stored(sql, tenant)) == 3


def test_batches_racing_an_erasure_leave_no_data_of_the_erased_customer(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    def work(n: int) -> None:
        if n == 0:
            execute(tenant.app, EraseCustomer(customer, None), Caller("t"))
            return
        for batch in range(15):
            start = n * 10_000 + batch * 10
            record(tenant, *(behavior(customer, start + i) for i in range(10)))

    run_at_once(4, work)

    kept = [r["event_id"] for r in stored(sql, tenant) if r["data"] != {}]
    assert kept == []


def test_appending_is_still_allowed(
    tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    record(tenant, behavior(customer, 5))

    assert len(stored(sql, tenant)) == len(recorded) + 1


# -- provisioning -----------------------------------------------------------------------------


def test_installing_again_is_idempotent_and_keeps_the_guards(
    tenant: Tenant, sql: psycopg.Connection[Any], recorded: list[dict[str, Any]]
) -> None:
    with tenant.datastore.transaction(commit=True) as curs:
        install_behaviors(curs, tenant.schema)
        install_behaviors(curs, tenant.schema)

    assert stored(sql, tenant) == recorded
    with pytest.raises(psycopg.errors.RestrictViolation):
        rows(sql, tenant, "DELETE FROM {s}.behaviors RETURNING 1")


def test_tenants_created_at_once_all_get_the_table(runtime: Runtime) -> None:
    created = run_at_once(4, lambda n: runtime.tenants.create(f"b{n}_{uuid4().hex[:10]}"))

    for tenant in created:
        customer = register(tenant, ("member_no", "m-1")).customer_id
        assert outcomes(record(tenant, behavior(customer, 0)))[0][1] is Outcome.ACCEPTED


def test_a_tenant_upgraded_from_an_older_schema_version_gets_the_table(
    runtime: Runtime, tenant: Tenant, customer: UUID, sql: psycopg.Connection[Any]
) -> None:
    # As a tenant provisioned before behaviours existed: no table, an older schema version.
    sql.execute(f"DROP TABLE {tenant.schema}.behaviors")
    sql.execute(
        "UPDATE membercore.tenants SET schema_version = %s WHERE slug = %s",
        (TENANT_SCHEMA_VERSION - 1, tenant.slug),
    )

    upgraded = Tenants(runtime.pool, installers=runtime.tenants.installers).get(tenant.slug)

    assert outcomes(record(upgraded, behavior(customer, 0)))[0][1] is Outcome.ACCEPTED
    with pytest.raises(psycopg.errors.RestrictViolation):
        rows(sql, tenant, "DELETE FROM {s}.behaviors RETURNING 1")
