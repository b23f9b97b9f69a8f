"""The customer history read model: one row per change, with before and after values."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections import queries
from projections.customer_history import CustomerHistoryProjection
from tests.integration.customer_events import (
    ACTOR,
    T0,
    Clock,
    erase,
    merge,
    new_customer,
    person,
    project,
    undo_merge,
)
from tests.integration.support import rows

HISTORY = CustomerHistoryProjection()


def history(sql: psycopg.Connection[Any], tenant: Tenant, customer_id: UUID) -> list[Any]:
    return rows(
        sql,
        tenant,
        "SELECT kind, actor, channel, changes FROM {s}.customer_history"
        " WHERE customer_id = %s ORDER BY position",
        customer_id,
    )


def ch(field: str, before: Any, after: Any) -> dict[str, Any]:
    return {"field": field, "before": before, "after": after}


def test_registration_and_profile_changes_record_before_and_after(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    referrer = uuid4()
    c = new_customer(
        tenant,
        clock,
        ("member_no", "M1"),
        name="Ann",
        phone="138",
        birthday=date(1990, 5, 1),
        attributes={"city": "SH"},
        owner="guide-1",
        referrer_id=referrer,
        channel="tmall",
    )
    project(tenant, HISTORY)
    c.change_profile(
        {"name": "Anne", "phone": None, "email": "a@x.cn", "attributes.city": "BJ"},
        channel="app",
        actor="k-other",
        at=clock(),
    )
    tenant.app.save(c)
    project(tenant, HISTORY)

    assert history(sql, tenant, c.id) == [
        {
            "kind": "registered",
            "actor": ACTOR,
            "channel": "tmall",
            "changes": [
                ch("identities", None, [{"type": "member_no", "value": "M1"}]),
                ch("name", None, "Ann"),
                ch("phone", None, "138"),
                ch("birthday", None, "1990-05-01"),
                ch("attributes.city", None, "SH"),
                ch("roles", None, "consumer"),
                ch("owner", None, "guide-1"),
                ch("channel", None, "tmall"),
                ch("referrer_id", None, str(referrer)),
            ],
        },
        {
            "kind": "profile_changed",
            "actor": "k-other",
            "channel": "app",
            "changes": [
                ch("name", "Ann", "Anne"),
                ch("phone", "138", None),
                ch("email", None, "a@x.cn"),
                ch("attributes.city", "SH", "BJ"),
            ],
        },
    ]
    (state,) = rows(sql, tenant, "SELECT fields FROM {s}.customer_history_state")
    assert state["fields"] == {
        "name": "Anne",
        "birthday": "1990-05-01",
        "attributes.city": "BJ",
        "owner": "guide-1",
        "channel": "tmall",
        "email": "a@x.cn",
    }


def test_every_other_kind_of_change_has_its_row(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    parent = new_customer(tenant, clock, ("member_no", "P"))
    c = new_customer(tenant, clock, ("member_no", "C"), owner="g1")
    c.link_identities([Identity("jd_pin", "J")], actor=ACTOR, at=clock())
    c.unlink_identities([Identity("member_no", "C")], actor=ACTOR, at=clock())
    c.add_role("agent", actor=ACTOR, at=clock())
    c.end_role("consumer", reason=None, actor=ACTOR, at=clock())
    c.set_parent_agent(parent.id, actor=ACTOR, at=clock())
    c.assign_owner("g2", reason=None, actor=ACTOR, at=clock())
    c.end_owner(by="g2", reason=None, actor=ACTOR, at=clock())
    for granted in (True, False):
        c.record_consent(
            purpose="marketing",
            channel="sms",
            granted=granted,
            policy_version="v1",
            source=None,
            actor=ACTOR,
            at=clock(),
        )
    tenant.app.save(c)
    project(tenant, HISTORY, batch_size=3)

    found = [(r["kind"], r["changes"]) for r in history(sql, tenant, c.id)][1:]
    assert found == [
        ("identities_linked", [ch("identities", None, [{"type": "jd_pin", "value": "J"}])]),
        ("identities_unlinked", [ch("identities", [{"type": "member_no", "value": "C"}], None)]),
        ("role_added", [ch("roles", None, "agent")]),
        ("role_ended", [ch("roles", "consumer", None)]),
        ("parent_agent_set", [ch("parent_agent_id", None, str(parent.id))]),
        ("owner_assigned", [ch("owner", "g1", "g2")]),
        ("owner_ended", [ch("owner", "g2", None)]),
        ("consent_given", [ch("consents.marketing.sms", None, True)]),
        ("consent_withdrawn", [ch("consents.marketing.sms", True, False)]),
    ]


def test_tag_rows_and_the_channel_each_command_came_through(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    c = new_customer(tenant, clock, ("member_no", "T"), owner="g1")
    c.add_tags(["vip", "b2b"], actor=ACTOR, at=clock(), channel="pos")
    c.remove_tag("b2b", actor="k-guide", at=clock(), channel="wecom")
    c.link_identities([Identity("jd_pin", "TJ")], actor=ACTOR, at=clock(), channel="jd")
    c.add_role("agent", actor=ACTOR, at=clock(), channel="app")
    c.assign_owner("g2", reason=None, actor=ACTOR, at=clock(), channel="crm")
    c.record_consent(
        purpose="marketing",
        channel="sms",
        granted=True,
        policy_version="v1",
        source=None,
        actor=ACTOR,
        at=clock(),
        via="mini_program",
    )
    c.end_role("agent", reason=None, actor=ACTOR, at=clock())  # no channel named
    tenant.app.save(c)
    project(tenant, HISTORY)

    found = [
        (r["kind"], r["actor"], r["channel"], r["changes"]) for r in history(sql, tenant, c.id)
    ]
    assert found[1:] == [
        ("tags_added", ACTOR, "pos", [ch("tags", None, "vip"), ch("tags", None, "b2b")]),
        ("tag_removed", "k-guide", "wecom", [ch("tags", "b2b", None)]),
        (
            "identities_linked",
            ACTOR,
            "jd",
            [ch("identities", None, [{"type": "jd_pin", "value": "TJ"}])],
        ),
        ("role_added", ACTOR, "app", [ch("roles", None, "agent")]),
        ("owner_assigned", ACTOR, "crm", [ch("owner", "g1", "g2")]),
        ("consent_given", ACTOR, "mini_program", [ch("consents.marketing.sms", None, True)]),
        ("role_ended", ACTOR, None, [ch("roles", "agent", None)]),
    ]


def test_a_merge_and_its_undo_record_the_tags_they_move(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    survivor = new_customer(tenant, clock, ("member_no", "TS"))
    source = new_customer(tenant, clock, ("member_no", "TX"), save=False)
    survivor.add_tags(["vip"], actor=ACTOR, at=clock())
    source.add_tags(["vip", "new"], actor=ACTOR, at=clock())
    tenant.app.save(survivor, source)
    merge_id = merge(tenant, clock, survivor, source)
    undo_merge(tenant, clock, survivor, source, merge_id)
    project(tenant, HISTORY)

    found = [(r["kind"], r["changes"]) for r in history(sql, tenant, survivor.id)][2:]
    ids = [{"type": "member_no", "value": "TX"}]
    assert found == [
        ("absorbed", [ch("identities", None, ids), ch("tags", None, "new")]),
        ("absorption_undone", [ch("identities", ids, None), ch("tags", "new", None)]),
    ]


def test_merge_and_its_undo_on_both_sides(tenant: Tenant, sql: psycopg.Connection[Any]) -> None:
    clock = Clock()
    survivor = new_customer(tenant, clock, ("member_no", "S"), name="Sam")
    source = new_customer(
        tenant, clock, ("member_no", "X"), name="Samuel", email="s@x.cn", roles=["agent"]
    )
    merge_id = merge(tenant, clock, survivor, source)
    undo_merge(tenant, clock, survivor, source, merge_id)
    project(tenant, HISTORY)

    ids = [{"type": "member_no", "value": "X"}]  # what the merge moves
    assert [(r["kind"], r["changes"]) for r in history(sql, tenant, survivor.id)][1:] == [
        (
            "absorbed",
            [ch("identities", None, ids), ch("email", None, "s@x.cn"), ch("roles", None, "agent")],
        ),
        (
            "absorption_undone",
            [ch("identities", ids, None), ch("email", "s@x.cn", None), ch("roles", "agent", None)],
        ),
    ]
    assert [(r["kind"], r["changes"]) for r in history(sql, tenant, source.id)][1:] == [
        ("merged_into", [ch("merged_into", None, str(survivor.id))]),
        ("merge_undone", [ch("merged_into", str(survivor.id), None), ch("identities", None, ids)]),
    ]


def test_erasure_empties_every_row_of_the_customer_and_drops_its_state(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    c, other = person(tenant, clock, 1), person(tenant, clock, 2)
    c.change_profile({"name": "New"}, channel="app", actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, HISTORY)  # rows of an earlier batch
    c.change_profile({"name": "Newer"}, channel="app", actor=ACTOR, at=clock())
    tenant.app.save(c)
    erase(tenant, clock, c)  # rows of the same batch as the erasure
    project(tenant, HISTORY)

    found = history(sql, tenant, c.id)
    assert [(r["kind"], r["actor"], r["changes"]) for r in found] == [
        ("registered", ACTOR, []),
        ("profile_changed", ACTOR, []),
        ("profile_changed", ACTOR, []),
        ("erased", ACTOR, []),
    ]
    assert found[0]["channel"] == "mini_program"
    states = rows(sql, tenant, "SELECT customer_id FROM {s}.customer_history_state")
    assert [s["customer_id"] for s in states] == [other.id]
    assert history(sql, tenant, other.id)[0]["changes"] != []


@pytest.mark.anyio
async def test_the_history_query_pages_by_position(tenant: Tenant, database_url: str) -> None:
    clock = Clock()
    c = new_customer(tenant, clock, ("member_no", "M"))
    for n in range(4):
        c.change_profile({"name": f"N{n}"}, channel=None, actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, HISTORY)

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        first = await queries.history(conn, tenant.schema, c.id, 0, 3)
        rest = await queries.history(conn, tenant.schema, c.id, first[-1].position, 3)
        assert await queries.history(conn, tenant.schema, uuid4(), 0, 3) == []
    entries = first + rest
    assert [e.kind for e in entries] == ["registered"] + ["profile_changed"] * 4
    assert [e.position for e in entries] == sorted(e.position for e in entries)
    assert entries[2].changes == [ch("name", "N0", "N1")]
    assert [e.at for e in entries] == [T0 + timedelta(seconds=n) for n in range(1, 6)]
    assert {e.customer_id for e in entries} == {c.id}
    assert entries[0].actor == ACTOR
