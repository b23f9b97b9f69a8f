"""A8: stored events cannot be changed or removed, whoever asks (triggers in the database)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from infrastructure.tenancy import Tenant
from tests.integration.support import events, register, rows


@pytest.fixture
def stored(tenant: Tenant, sql: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    register(tenant, ("pos_member_no", "1"), name="Li Lei")
    register(tenant, ("pos_member_no", "1"), ("email", "li@example.com"))
    log = events(sql, tenant)
    assert len(log) == 4
    return log


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {s}.membercore_events SET topic = 'membercore.Forged'",
        "UPDATE {s}.membercore_events SET state = 'null'::bytea WHERE originator_version = 2",
        "DELETE FROM {s}.membercore_events",
        "DELETE FROM {s}.membercore_events WHERE originator_version = 2",
    ],
    ids=["update-all", "update-one", "delete-all", "delete-one"],
)
def test_updating_or_deleting_stored_events_raises_in_the_database(
    tenant: Tenant, sql: psycopg.Connection[Any], stored: list[dict[str, Any]], statement: str
) -> None:
    with pytest.raises(psycopg.errors.RestrictViolation, match="events are immutable"):
        rows(sql, tenant, statement + " RETURNING 1")

    assert events(sql, tenant) == stored


def test_truncating_the_events_table_raises_in_the_database(
    tenant: Tenant, sql: psycopg.Connection[Any], stored: list[dict[str, Any]]
) -> None:
    with pytest.raises(psycopg.errors.RestrictViolation, match="TRUNCATE"):
        sql.execute(f"TRUNCATE {tenant.schema}.membercore_events")

    assert events(sql, tenant) == stored


def test_stored_event_state_is_unchanged_after_a_refused_update(
    tenant: Tenant, sql: psycopg.Connection[Any], stored: list[dict[str, Any]]
) -> None:
    before = rows(sql, tenant, "SELECT state FROM {s}.membercore_events ORDER BY notification_id")

    with pytest.raises(psycopg.errors.RestrictViolation):
        rows(sql, tenant, "UPDATE {s}.membercore_events SET state = '{{}}'::bytea RETURNING 1")

    after = rows(sql, tenant, "SELECT state FROM {s}.membercore_events ORDER BY notification_id")
    assert after == before
    # And the application still reads its aggregates from them.
    assert tenant.app.repository.get(stored[0]["originator_id"]).name == "Li Lei"


def test_appending_events_is_still_allowed(
    tenant: Tenant, sql: psycopg.Connection[Any], stored: list[dict[str, Any]]
) -> None:
    register(tenant, ("pos_member_no", "2"))

    assert len(events(sql, tenant)) == len(stored) + 2
