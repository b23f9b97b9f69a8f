"""Exactly once when two catch-ups of one projection race (two worker processes, or a rebuild).

A catch-up reads its tracked position, then the events after it, then opens the transaction that
writes rows and moves the tracking. Whatever commits for the same projection in between must make
this batch start over: a forward-only tracking check is not enough, because the two batches can
end at different heads and the later one would re-apply what the first already wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import Cursor
from psycopg.rows import DictRow

from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import (
    Positioned,
    build_fresh,
    catch_up,
    head_position,
    swap_in,
    tracked_position,
)
from tests.integration.support import dump, expected_dump, register, rows

PROFILE = CustomerProfileProjection()


class Interleaved(CustomerProfileProjection):
    """Runs ``meanwhile`` once, when its first batch is about to be applied.

    By then this catch-up has read its position and events and opened its transaction (which
    holds no lock yet), exactly the window in which another projector or a rebuild can commit.
    """

    def __init__(self, meanwhile: Callable[[], object]) -> None:
        self.meanwhile: Callable[[], object] | None = meanwhile

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()
        super().apply(curs, schema, events, suffix)


def identity_counts(sql: psycopg.Connection[Any], tenant: Tenant) -> list[int]:
    found = rows(
        sql,
        tenant,
        "SELECT json_array_length(doc -> 'identities') AS n FROM {s}.customer_profile"
        " ORDER BY customer_id",
    )
    return sorted(r["n"] for r in found)


def test_two_racing_catch_ups_with_different_heads_apply_each_event_once(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    register(tenant, ("pos_member_no", "1"))
    catch_up(tenant, PROFILE)
    register(tenant, ("pos_member_no", "1"), ("email", "a@example.com"))  # a link: not idempotent
    linked_at = head_position(tenant)
    register(tenant, ("pos_member_no", "2"))  # the second projector's head is further on

    # The first projector commits (.., linked_at] while the second holds (.., head] in hand.
    catch_up(tenant, Interleaved(lambda: catch_up(tenant, PROFILE, until=linked_at)))

    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert identity_counts(sql, tenant) == [1, 2]
    assert dump(sql, tenant, PROFILE.tables) == expected_dump(tenant, sql, head_position(tenant))


def test_a_swap_in_during_a_live_catch_up_loses_nothing_and_doubles_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    register(tenant, ("pos_member_no", "1"))
    catch_up(tenant, PROFILE)  # live, before the link
    register(tenant, ("pos_member_no", "1"), ("email", "a@example.com"))
    build_fresh(tenant, PROFILE)  # the rebuild has the link
    register(tenant, ("pos_member_no", "2"))  # the live projector will read past the rebuild

    # The live projector read its (older) position; the swap lands before it writes.
    catch_up(tenant, Interleaved(lambda: swap_in(tenant, PROFILE)))

    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
    assert identity_counts(sql, tenant) == [1, 2]
    assert dump(sql, tenant, PROFILE.tables) == expected_dump(tenant, sql, head_position(tenant))


def test_a_catch_up_overtaken_by_another_does_not_count_the_events_it_did_not_apply(
    tenant: Tenant,
) -> None:
    register(tenant, ("pos_member_no", "1"))
    register(tenant, ("pos_member_no", "2"))

    applied = catch_up(tenant, Interleaved(lambda: catch_up(tenant, PROFILE)))

    # The other catch-up applied both registrations; this one found nothing left to do.
    assert applied == 0
    assert tracked_position(tenant, PROFILE.name) == head_position(tenant)
