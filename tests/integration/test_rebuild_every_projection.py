"""D1 for every registered projection: rebuilt from event 0 after a mixed workload (every Customer
event, merges and their undo, erasures whose keys are gone), the tables equal the live ones byte
for byte; swapping the rebuild in changes nothing."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pytest

from domain.customer import Customer
from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections.engine import (
    REBUILD_SUFFIX,
    Projection,
    build_fresh,
    catch_up,
    head_position,
    rebuild,
    tracked_position,
)
from projections.registry import PROJECTIONS
from tests.integration.customer_events import ACTOR, Clock, erase, merge, person, undo_merge
from tests.integration.support import dump, events

CUSTOMER_TOPICS = {
    v.TOPIC
    for v in vars(Customer).values()
    if isinstance(v, type) and issubclass(v, Customer.Event | Customer.Created)
} - {Customer.Event.TOPIC, Customer.Created.TOPIC}


def activity(
    tenant: Tenant, clock: Clock, rng: random.Random, prefix: str, n: int
) -> list[Customer]:
    """``n`` customers and a mix of every kind of change, merges and undos."""
    people: list[Customer] = [
        person(
            tenant, clock, i, prefix, roles=["consumer", "agent"] if i % 4 == 0 else ["consumer"]
        )
        for i in range(n)
    ]
    shared = Identity("store_phone", f"{prefix}-021-555")
    for i, c in enumerate(people):
        at = clock()
        if i % 2 == 0:
            c.link_identities([Identity("jd_pin", f"{prefix}J{i}"), shared], actor=ACTOR, at=at)
        if i % 3 == 0:
            c.change_profile(
                {"name": f"Renamed{prefix}{i}", "attributes.city": None, "attributes.tier": i},
                channel=rng.choice(["app", "pos", None]),
                actor=ACTOR,
                at=clock(),
            )
        if i % 5 == 0:
            c.add_role("distributor", actor=ACTOR, at=clock())
            c.end_role("consumer", reason="upgraded", actor=ACTOR, at=clock())
        if i % 4 == 1:
            c.set_parent_agent(people[0].id, actor=ACTOR, at=clock())
        c.assign_owner(f"guide-{i % 3}", reason=None, actor=ACTOR, at=clock())
        if i % 6 == 5:
            c.end_owner(by="guide-x", reason="left", actor=ACTOR, at=clock())
        c.record_consent(
            purpose="marketing",
            channel=rng.choice(["sms", "email"]),
            granted=rng.random() < 0.7,
            policy_version="v1",
            source="app",
            actor=ACTOR,
            at=clock(),
        )
        if i > 0 and i % 2 == 0:
            c.suggest_match(people[i - 1].id, "store_phone", actor=ACTOR, at=clock())
        if i % 7 == 3:
            c.unlink_identities([Identity("member_no", f"M{prefix}{i}")], actor=ACTOR, at=clock())
        tenant.app.save(c)
    # Merges: some stay, some are undone; a merged-away customer and a survivor get erased.
    for i in range(0, n - 1, 5):
        merge_id = merge(tenant, clock, people[i], people[i + 1])
        if i % 10 == 0:
            undo_merge(tenant, clock, people[i], people[i + 1], merge_id)
    return people


def erasures(tenant: Tenant, clock: Clock, prefix: str, people: list[Customer]) -> None:
    """Erase a few (a survivor, a merged-away, restored ones), then change some others."""
    n = len(people)
    # 1: merged away and restored by the undo; 5: a survivor; 6: merged away into 5; 11: restored.
    for i in (1, 2, 5, 6, 11, 15):
        if i < n:
            erase(tenant, clock, people[i])
    for i in range(3, n, 4):
        c = people[i]
        if not c.erased and c.merged_into is None:
            c.change_profile(
                {"email": f"late{prefix}{i}@x.cn"}, channel="app", actor=ACTOR, at=clock()
            )
            tenant.app.save(c)


def live_and_rebuilt(
    sql: psycopg.Connection[Any], tenant: Tenant, p: Projection
) -> tuple[Any, Any]:
    build_fresh(tenant, p, batch_size=11)
    return dump(sql, tenant, p.tables), dump(sql, tenant, [t + REBUILD_SUFFIX for t in p.tables])


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_rebuild_equals_the_live_tables_after_a_mixed_workload_with_erasures(
    tenant: Tenant, sql: psycopg.Connection[Any], projection: Projection
) -> None:
    clock, rng = Clock(), random.Random(7)
    first = activity(tenant, clock, rng, "a", 12)
    catch_up(tenant, projection, batch_size=5)  # live, in many batches, while the keys exist
    erasures(tenant, clock, "a", first)
    second = activity(tenant, clock, rng, "b", 25)
    catch_up(tenant, projection, batch_size=7)
    erasures(tenant, clock, "b", second)  # erased before the live projection saw them
    catch_up(tenant, projection, batch_size=3)

    topics = {r["topic"] for r in events(sql, tenant)}
    assert {t for t in CUSTOMER_TOPICS if t not in topics} == set()
    live, rebuilt = live_and_rebuilt(sql, tenant, projection)

    assert live == rebuilt
    assert all(live), "every table has rows"
    rebuild(tenant, projection, batch_size=13)
    assert dump(sql, tenant, projection.tables) == live
    assert tracked_position(tenant, projection.name) == head_position(tenant)


def test_the_workload_erases_keys_so_the_rebuild_decodes_emptied_events(tenant: Tenant) -> None:
    # The comparison above is not vacuous: the live projection saw the personal values of
    # customers erased later, the rebuild sees them emptied.
    clock = Clock()
    c = person(tenant, clock, 1)
    registered = tenant.app.recorder.select_events(c.id)[0]
    plain: Any = tenant.app.mapper.to_domain_event(registered)
    assert plain.name == "Namep1"
    erase(tenant, clock, c)
    emptied: Any = tenant.app.mapper.to_domain_event(registered)
    assert (emptied.name, emptied.identities, emptied.attributes) == (None, (), {})
