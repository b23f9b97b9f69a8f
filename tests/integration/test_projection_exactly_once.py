"""Projections apply every event exactly once: rows and tracking commit together (D1, D3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.identity_claim import IdentityClaim
from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import Positioned, catch_up, head_position, tracked_position
from tests.integration.support import dump, expected_dump, register, rows

PROFILE = CustomerProfileProjection()
TABLES = PROFILE.tables


def populate(tenant: Tenant, customers: int = 6) -> list[Any]:
    """Registrations, some with later identity links: events of both projected topics."""
    ids = [
        register(tenant, ("pos_member_no", str(n)), name=f"n{n}").customer_id
        for n in range(customers)
    ]
    for n in range(0, customers, 2):
        register(tenant, ("pos_member_no", str(n)), ("email", f"{n}@example.com"))
    return ids


def test_catch_up_applies_every_event_once_and_nothing_the_second_time(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    ids = populate(tenant)

    first = catch_up(tenant, PROFILE)
    after_first = dump(sql, tenant, TABLES)
    second = catch_up(tenant, PROFILE)

    assert first == len(ids) + len(ids) // 2  # registrations and links; claims are not read
    assert second == 0
    assert dump(sql, tenant, TABLES) == after_first
    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    profiles = rows(sql, tenant, "SELECT customer_id FROM {s}.customer_profile")
    assert sorted(r["customer_id"] for r in profiles) == sorted(ids)
    identities = rows(sql, tenant, "SELECT count(*) AS n FROM {s}.customer_identity")
    assert identities == [{"n": len(ids) + len(ids) // 2}]


def test_catch_up_moves_tracking_to_the_head_over_events_it_does_not_read(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    (customer, *_) = populate(tenant, 2)
    catch_up(tenant, PROFILE)
    before = dump(sql, tenant, TABLES)
    # A tail of events this projection ignores (an identity claim on its own).
    identity = Identity("pos_member_no", "x")
    claim_id = tenant.app.claim_id(identity)
    tenant.app.save(
        IdentityClaim.claim(identity, customer, claim_id=claim_id, at=tenant.app.clock())
    )
    assert tracked_position(tenant, PROFILE.name) < head_position(tenant)

    assert catch_up(tenant, PROFILE) == 0
    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert dump(sql, tenant, TABLES) == before


def test_catch_up_in_small_batches_equals_catch_up_in_one_batch(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 9)

    applied = catch_up(tenant, PROFILE, batch_size=2)

    assert applied == 9 + 5
    assert dump(sql, tenant, TABLES) == expected_dump(tenant, sql, head_position(tenant))


def linked_profiles(curs: Any, tenant: Tenant) -> int:
    curs.execute(
        f"SELECT count(*) AS n FROM {tenant.schema}.customer_profile"
        " WHERE json_array_length(doc -> 'identities') > 1"
    )
    return int(curs.fetchone()["n"])


def test_redelivering_an_already_tracked_batch_raises_and_leaves_rows_unchanged(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 4)
    catch_up(tenant, PROFILE)
    before = dump(sql, tenant, TABLES)
    # The registrations again: applying them resets the linked profiles to one identity.
    notes = tenant.app.recorder.select_notifications(
        start=0, limit=100, topics=sorted(PROFILE.topics)
    )
    old = [Positioned(n.id, tenant.app.mapper.to_domain_event(n)) for n in notes[:4]]
    seen_inside: list[int] = []

    def redeliver() -> None:
        with tenant.datastore.transaction(commit=True) as curs:
            PROFILE.apply(curs, tenant.schema, old)
            seen_inside.append(linked_profiles(curs, tenant))
            tenant.tracking._insert_tracking(curs, Tracking(PROFILE.name, old[-1].position))

    with pytest.raises(IntegrityError):
        redeliver()

    assert seen_inside == [0], "the re-delivered rows were written inside the transaction"
    assert linked_profiles(sql.cursor(), tenant) == 2
    assert dump(sql, tenant, TABLES) == before


class KilledAfterWriting(CustomerProfileProjection):
    """Writes its rows, then dies before the tracking record, on the ``fatal``-th batch."""

    def __init__(self, fatal: int) -> None:
        self.fatal = fatal
        self.batches = 0

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        super().apply(curs, schema, events, suffix)
        self.batches += 1
        if self.batches == self.fatal:
            raise RuntimeError("projector killed mid-batch")


def test_a_projector_killed_mid_batch_leaves_no_partial_rows(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 6)

    with pytest.raises(RuntimeError, match="killed"):
        catch_up(tenant, KilledAfterWriting(fatal=1), batch_size=1000)

    assert dump(sql, tenant, TABLES) == [[], []]
    assert tracked_position(tenant, PROFILE.name) == 0


def test_a_projector_killed_mid_batch_resumes_with_nothing_lost_or_doubled(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    populate(tenant, 6)  # 6 registrations, then 3 links: 9 events in batches of 2

    with pytest.raises(RuntimeError, match="killed"):
        catch_up(tenant, KilledAfterWriting(fatal=3), batch_size=2)

    # Two whole batches are in, the third left nothing behind.
    reached = tracked_position(tenant, PROFILE.name)
    notes = tenant.app.recorder.select_notifications(
        start=0, limit=100, topics=sorted(PROFILE.topics)
    )
    assert reached == notes[3].id
    assert dump(sql, tenant, TABLES) == expected_dump(tenant, sql, reached)

    resumed = catch_up(tenant, PROFILE, batch_size=2)

    assert resumed == 9 - 4
    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert dump(sql, tenant, TABLES) == expected_dump(tenant, sql, head_position(tenant))
    # Doubling would repeat linked identities in the documents.
    docs = rows(sql, tenant, "SELECT doc::json -> 'identities' AS ids FROM {s}.customer_profile")
    assert sorted(len(d["ids"]) for d in docs) == [1, 1, 1, 2, 2, 2]
