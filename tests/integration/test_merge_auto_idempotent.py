"""An auto-merge made by a registration under an Idempotency-Key takes its merge ids from the key
(or from the command's ``customer_id``, an import row's): the same keyed registration run again
on the same state records the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.sql import SQL, Identifier

from application.kernel import Caller
from application.registration import RegisterCustomer
from domain.merge import Merge
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.conftest import new_slug
from tests.integration.merge_support import undo
from tests.integration.support import Registered, run_registration

SURVIVOR, SOURCE, BASE = uuid4(), uuid4(), uuid4()
KEY = "auto-merge-key"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def register(
    tenant: Tenant,
    *identities: tuple[str, str],
    key: str | None = None,
    customer_id: UUID | None = None,
) -> Registered:
    """Register as the API does, under ``key`` when given; the caller names one tenant label in
    every world, so that the ids derived from a key are the same in each."""
    caller = Caller("k", "world", tenant.idempotency)
    command = RegisterCustomer(identities=list(identities), customer_id=customer_id)
    return run_registration(tenant.app, command, caller, client_id=key)


def world(runtime: Runtime, sql: psycopg.Connection[Any], secret_from: Tenant | None) -> Tenant:
    """Two customers, made with fixed ids and times; the same identity secret as ``secret_from``."""
    tenant = runtime.tenants.create(new_slug())
    if secret_from is not None:
        sql.execute(
            SQL(
                "UPDATE {}.secrets SET value = (SELECT value FROM {}.secrets WHERE name = %s)"
            ).format(Identifier(tenant.schema), Identifier(secret_from.schema))
            + SQL(" WHERE name = %s"),
            ("identity_hmac", "identity_hmac"),
        )
        sql.commit()
    tenant.app.clock = Clock()  # type: ignore[method-assign]
    register(tenant, ("wechat_unionid", "u1"), customer_id=SURVIVOR)
    register(tenant, ("pos_member_no", "p1"), customer_id=SOURCE)
    return tenant


def log_after(tenant: Tenant, position: int) -> list[Any]:
    """The events after ``position``: stored state as is, sealed ones decoded (their ciphertext
    is under each tenant's own random key)."""
    out = []
    for note in tenant.app.recorder.select_notifications(start=position + 1, limit=1000):
        if b'"sealed' in note.state:
            out.append((note.topic, tenant.app.mapper.to_domain_event(note)))
        else:
            out.append((note.topic, note.originator_id, note.originator_version, note.state))
    return out


def test_a_keyed_registration_that_auto_merges_records_the_same_events_when_run_again(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    first = world(runtime, sql, None)
    again = world(runtime, sql, first)
    start = first.app.recorder.max_notification_id() or 0
    assert start == (again.app.recorder.max_notification_id() or 0)

    one = register(first, ("wechat_unionid", "u1"), ("pos_member_no", "p1"), key=KEY)
    two = register(again, ("wechat_unionid", "u1"), ("pos_member_no", "p1"), key=KEY)

    assert one.merged == two.merged
    assert len(one.merged) == 1
    merge = first.app.repository.get(UUID(one.merged[0]))
    assert isinstance(merge, Merge)
    assert (merge.survivor_id, merge.source_id) == (SURVIVOR, SOURCE)
    assert log_after(first, start) == log_after(again, start)
    assert [t for t, *_ in log_after(first, start)].count(Merge.Merged.TOPIC) == 1


def test_a_registration_without_a_key_auto_merges_under_a_new_merge_id(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    first = world(runtime, sql, None)
    again = world(runtime, sql, first)
    one = register(first, ("wechat_unionid", "u1"), ("pos_member_no", "p1"))
    two = register(again, ("wechat_unionid", "u1"), ("pos_member_no", "p1"))

    assert len(one.merged) == len(two.merged) == 1
    assert one.merged != two.merged


def test_an_auto_merge_whose_earlier_merge_was_undone_takes_the_next_derived_id(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    tenant = world(runtime, sql, None)
    identities = (("wechat_unionid", "u1"), ("pos_member_no", "p1"))
    # The same merge base each time (as a keyed retry has): an import row's customer id.
    (merged,) = register(tenant, *identities, customer_id=BASE).merged
    undo(tenant.app, UUID(merged), "k")

    (again,) = register(tenant, *identities, customer_id=BASE).merged

    assert again != merged
    merge = tenant.app.repository.get(UUID(again))
    assert (merge.survivor_id, merge.source_id, merge.undone) == (SURVIVOR, SOURCE, False)
