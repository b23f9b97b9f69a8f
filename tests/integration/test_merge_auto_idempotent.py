"""An auto-merge made by a registration under an Idempotency-Key takes its merge ids from the key:
the same keyed registration run again on the same state records the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.sql import SQL, Identifier

from application.context import CommandContext
from application.customers import RegisterCustomer, Registration, register_customer
from application.merges import undo_merge
from domain.merge import Merge
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.conftest import new_slug

SURVIVOR, SOURCE, KEY_ID = uuid4(), uuid4(), uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def keyed(key_id: UUID) -> CommandContext:
    """A context as the API makes it under an Idempotency-Key (ids derived from the key)."""
    return CommandContext(actor="k", complete=lambda status, body: None, new_id=lambda: key_id)


def register(tenant: Tenant, ctx: CommandContext, *identities: tuple[str, str]) -> Registration:
    return register_customer(tenant.app, RegisterCustomer(identities=list(identities)), ctx)


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
    register(tenant, keyed(SURVIVOR), ("wechat_unionid", "u1"))
    register(tenant, keyed(SOURCE), ("pos_member_no", "p1"))
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

    one = register(first, keyed(KEY_ID), ("wechat_unionid", "u1"), ("pos_member_no", "p1"))
    two = register(again, keyed(KEY_ID), ("wechat_unionid", "u1"), ("pos_member_no", "p1"))

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
    plain = CommandContext(actor="k")

    one = register(first, plain, ("wechat_unionid", "u1"), ("pos_member_no", "p1"))
    two = register(again, plain, ("wechat_unionid", "u1"), ("pos_member_no", "p1"))

    assert len(one.merged) == len(two.merged) == 1
    assert one.merged != two.merged


def test_a_keyed_auto_merge_whose_earlier_merge_was_undone_takes_the_next_derived_id(
    runtime: Runtime, sql: psycopg.Connection[Any]
) -> None:
    tenant = world(runtime, sql, None)
    identities = (("wechat_unionid", "u1"), ("pos_member_no", "p1"))
    (merged,) = register(tenant, keyed(KEY_ID), *identities).merged
    undo_merge(tenant.app, UUID(merged), CommandContext(actor="k"))

    (again,) = register(tenant, keyed(KEY_ID), *identities).merged

    assert again != merged
    merge = tenant.app.repository.get(UUID(again))
    assert (merge.survivor_id, merge.source_id, merge.undone) == (SURVIVOR, SOURCE, False)
