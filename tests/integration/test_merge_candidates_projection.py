"""The merge candidates read model: suggested pairs, until one side is merged or erased."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest

from infrastructure.tenancy import Tenant
from projections import queries
from projections.engine import catch_up
from projections.merge_candidates import MergeCandidatesProjection
from tests.integration.customer_events import (
    ACTOR,
    Clock,
    erase,
    merge,
    new_customer,
    project,
    undo_merge,
)
from tests.integration.support import dump, rows

CANDIDATES = MergeCandidatesProjection()


def pairs(sql: psycopg.Connection[Any], tenant: Tenant) -> set[tuple[UUID, UUID, str]]:
    found = rows(sql, tenant, "SELECT customer_id, other_id, reason FROM {s}.merge_candidates")
    return {(r["customer_id"], r["other_id"], r["reason"]) for r in found}


def test_a_suggestion_is_listed_with_its_reason_time_and_position(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a = new_customer(tenant, clock, ("member_no", "A"))
    b = new_customer(tenant, clock, ("member_no", "B"))
    b.suggest_match(a.id, "phone", actor=ACTOR, at=(at := clock()))
    tenant.app.save(b)
    project(tenant, CANDIDATES)

    (row,) = rows(sql, tenant, "SELECT * FROM {s}.merge_candidates")
    assert row == {
        "customer_id": b.id,
        "other_id": a.id,
        "reason": "identity:phone",
        "suggested_at": at,
        "position": tenant.app.last_position_of(b.id),
    }


def test_a_repeated_suggestion_keeps_the_first(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a = new_customer(tenant, clock, ("member_no", "A"))
    b = new_customer(tenant, clock, ("member_no", "B"))
    b.suggest_match(a.id, "phone", actor=ACTOR, at=clock())
    tenant.app.save(b)
    project(tenant, CANDIDATES)
    before = dump(sql, tenant, CANDIDATES.tables)
    b.suggest_match(a.id, "email", actor=ACTOR, at=clock())
    b.suggest_match(a.id, "email", actor=ACTOR, at=clock())
    tenant.app.save(b)
    project(tenant, CANDIDATES)

    assert dump(sql, tenant, CANDIDATES.tables) == before


def test_pairs_go_when_a_side_is_merged_away_or_erased(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a, b, c, d = (new_customer(tenant, clock, ("member_no", n)) for n in "ABCD")
    b.suggest_match(a.id, "phone", actor=ACTOR, at=clock())
    c.suggest_match(a.id, "phone", actor=ACTOR, at=clock())
    d.suggest_match(c.id, "email", actor=ACTOR, at=clock())
    tenant.app.save(b, c, d)
    project(tenant, CANDIDATES)
    assert len(pairs(sql, tenant)) == 3

    merge_id = merge(tenant, clock, a, b)  # b merged into a: the pair (b, a) goes
    project(tenant, CANDIDATES)
    assert pairs(sql, tenant) == {(c.id, a.id, "identity:phone"), (d.id, c.id, "identity:email")}

    undo_merge(tenant, clock, a, b, merge_id)  # an undo does not bring a suggestion back
    erase(tenant, clock, c)  # c erased: both its pairs go, as other and as suggester
    project(tenant, CANDIDATES)
    assert pairs(sql, tenant) == set()


def test_a_pair_merged_away_and_suggested_again_in_one_batch_is_listed(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a, b, c = (new_customer(tenant, clock, ("member_no", n)) for n in "ABC")
    b.suggest_match(a.id, "phone", actor=ACTOR, at=clock())
    tenant.app.save(b)
    project(tenant, CANDIDATES)
    merge_id = merge(tenant, clock, c, a)  # a merged into c: (b, a) goes
    undo_merge(tenant, clock, c, a, merge_id)
    b.suggest_match(a.id, "email", actor=ACTOR, at=clock())  # and is suggested again
    tenant.app.save(b)

    project(tenant, CANDIDATES)
    assert pairs(sql, tenant) == {(b.id, a.id, "identity:email")}

    with tenant.datastore.transaction(commit=True) as curs:
        CANDIDATES.create_tables(curs, tenant.schema, "_one")
    catch_up(tenant, CANDIDATES, batch_size=1, tracking_name="one#", suffix="_one")
    assert dump(sql, tenant, ["merge_candidates_one"]) == dump(sql, tenant, CANDIDATES.tables)


@pytest.mark.anyio
async def test_the_query_lists_in_suggestion_order_with_the_position_as_cursor(
    tenant: Tenant, database_url: str
) -> None:
    clock = Clock()
    first = new_customer(tenant, clock, ("member_no", "F"))
    others = [new_customer(tenant, clock, ("member_no", f"O{n}")) for n in range(5)]
    for other in others:
        other.suggest_match(first.id, "phone", actor=ACTOR, at=clock())
        tenant.app.save(other)
    project(tenant, CANDIDATES)

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        page = await queries.merge_candidates(conn, tenant.schema, None, 3)
        rest = await queries.merge_candidates(conn, tenant.schema, page[-1].position, 3)
        assert await queries.merge_candidates(conn, tenant.schema, rest[-1].position, 3) == []
    listed = page + rest
    assert [c.customer_id for c in listed] == [o.id for o in others]
    assert {(c.other_id, c.reason) for c in listed} == {(first.id, "identity:phone")}
    assert [c.suggested_at for c in listed] == sorted(c.suggested_at for c in listed)
