"""The customer profile read model: every Customer event changes the document as documented."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections import queries
from projections.customer_history import CustomerHistoryProjection
from projections.customer_profile import CustomerProfileProjection
from projections.customer_profile.document import blank_profile
from projections.engine import catch_up
from projections.merge_candidates import MergeCandidatesProjection
from tests.integration.customer_events import (
    ACTOR,
    Clock,
    doc,
    erase,
    merge,
    new_customer,
    person,
    project,
    table_text,
    undo_merge,
)
from tests.integration.support import rows

PROFILE = CustomerProfileProjection()


def identity_rows(sql: psycopg.Connection[Any], tenant: Tenant) -> set[tuple[str, str, UUID]]:
    found = rows(sql, tenant, "SELECT type, value, customer_id FROM {s}.customer_identity")
    return {(r["type"], r["value"], r["customer_id"]) for r in found}


def columns(sql: psycopg.Connection[Any], tenant: Tenant, customer_id: UUID) -> dict[str, Any]:
    (row,) = rows(
        sql,
        tenant,
        "SELECT phone, email, owner, position FROM {s}.customer_profile WHERE customer_id = %s",
        customer_id,
    )
    return dict(row)


def test_a_registration_makes_the_full_document_and_its_identity_rows(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    referrer = uuid4()
    c = new_customer(
        tenant,
        clock,
        ("wechat_unionid", "o6_x"),
        ("phone", "13800138000"),
        name="Li Lei",
        phone="13800138000",
        email="li.lei@example.com",
        birthday=date(1990, 5, 1),
        attributes={"city": "Shanghai", "vip": True},
        roles=["consumer", "agent"],
        owner="guide-7",
        referrer_id=referrer,
        channel="tmall",
        store_id="S1",
    )
    project(tenant, PROFILE)

    at = c.created_on.isoformat()
    assert list(doc(sql, tenant, c.id).items()) == list(
        {
            "customer_id": str(c.id),
            "identities": [
                {"type": "wechat_unionid", "value": "o6_x"},
                {"type": "phone", "value": "13800138000"},
            ],
            "name": "Li Lei",
            "phone": "13800138000",
            "email": "li.lei@example.com",
            "birthday": "1990-05-01",
            "attributes": {"city": "Shanghai", "vip": True},
            "roles": ["consumer", "agent"],
            "role_since": {"consumer": at, "agent": at},
            "parent_agent_id": None,
            "owner": "guide-7",
            "referrer_id": str(referrer),
            "channel": "tmall",
            "store_id": "S1",
            "consents": [],
            "tags": [],
            "points": {},
            "levels": {},
            "wallet": None,
            "stats": {
                "order_count": 0,
                "total_spend": 0,
                "first_order_at": None,
                "last_order_at": None,
                "avg_order_value": 0,
                "refund_count": 0,
                "purchase_days": 0,
            },
            "rfm": None,
            "clv": None,
            "merged_into": None,
            "merge_id": None,
            "erased": False,
            "erased_at": None,
            "registered_at": at,
            "updated_at": at,
        }.items()
    )
    assert identity_rows(sql, tenant) == {
        ("wechat_unionid", "o6_x", c.id),
        ("phone", "13800138000", c.id),
    }
    assert columns(sql, tenant, c.id) == {
        "phone": "13800138000",
        "email": "li.lei@example.com",
        "owner": "guide-7",
        "position": tenant.app.last_position_of(c.id),
    }


def test_identities_linked_and_unlinked_follow_in_the_document_and_the_rows(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    c = new_customer(tenant, clock, ("member_no", "M1"))
    project(tenant, PROFILE)
    c.link_identities(
        [Identity("jd_pin", "J1"), Identity("tmall_ouid", "T1")], actor=ACTOR, at=clock()
    )
    tenant.app.save(c)
    project(tenant, PROFILE)
    assert identity_rows(sql, tenant) == {
        ("member_no", "M1", c.id),
        ("jd_pin", "J1", c.id),
        ("tmall_ouid", "T1", c.id),
    }

    c.unlink_identities([Identity("member_no", "M1")], actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, PROFILE)

    d = doc(sql, tenant, c.id)
    assert d["identities"] == [
        {"type": "jd_pin", "value": "J1"},
        {"type": "tmall_ouid", "value": "T1"},
    ]
    assert d["updated_at"] == clock.now.isoformat()
    assert identity_rows(sql, tenant) == {("jd_pin", "J1", c.id), ("tmall_ouid", "T1", c.id)}


def test_a_shared_identity_value_has_a_row_per_customer(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a = new_customer(tenant, clock, ("store_phone", "021-555"), ("member_no", "A"))
    b = new_customer(tenant, clock, ("store_phone", "021-555"), ("member_no", "B"))
    project(tenant, PROFILE)

    assert {
        r["customer_id"]
        for r in rows(
            sql,
            tenant,
            "SELECT customer_id FROM {s}.customer_identity WHERE type = %s AND value = %s",
            "store_phone",
            "021-555",
        )
    } == {a.id, b.id}
    b.unlink_identities([Identity("store_phone", "021-555")], actor=ACTOR, at=clock())
    tenant.app.save(b)
    project(tenant, PROFILE)
    assert ("store_phone", "021-555", a.id) in identity_rows(sql, tenant)
    assert ("store_phone", "021-555", b.id) not in identity_rows(sql, tenant)


def test_profile_changes_set_and_clear_fields_and_attributes(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    c = new_customer(
        tenant, clock, ("member_no", "M1"), name="Ann", phone="1", attributes={"city": "SH"}
    )
    c.change_profile(
        {
            "name": "Anne",
            "phone": None,
            "email": "anne@example.com",
            "birthday": "1991-02-03",
            "channel": "app",
            "store_id": "S9",
            "attributes.city": None,
            "attributes.size": "M",
        },
        channel="app",
        actor=ACTOR,
        at=clock(),
    )
    tenant.app.save(c)
    project(tenant, PROFILE)

    d = doc(sql, tenant, c.id)
    assert (d["name"], d["phone"], d["email"], d["birthday"]) == (
        "Anne",
        None,
        "anne@example.com",
        "1991-02-03",
    )
    assert (d["channel"], d["store_id"]) == ("app", "S9")
    assert d["attributes"] == {"size": "M"}
    assert columns(sql, tenant, c.id)["phone"] is None
    assert columns(sql, tenant, c.id)["email"] == "anne@example.com"


def test_roles_parent_agent_and_consents(tenant: Tenant, sql: psycopg.Connection[Any]) -> None:
    clock = Clock()
    parent = new_customer(tenant, clock, ("member_no", "P"), roles=["agent"])
    c = new_customer(tenant, clock, ("member_no", "C"))
    c.add_role("agent", actor=ACTOR, at=(added := clock()))
    c.set_parent_agent(parent.id, actor=ACTOR, at=clock())
    c.record_consent(
        purpose="marketing",
        channel="sms",
        granted=True,
        policy_version="v1",
        source="app",
        actor=ACTOR,
        at=clock(),
    )
    c.record_consent(
        purpose="marketing",
        channel="email",
        granted=True,
        policy_version="v1",
        source=None,
        actor=ACTOR,
        at=clock(),
    )
    c.record_consent(
        purpose="marketing",
        channel="sms",
        granted=False,
        policy_version="v2",
        source="pos",
        actor=ACTOR,
        at=(withdrawn := clock()),
    )
    tenant.app.save(c)
    project(tenant, PROFILE, batch_size=2)

    d = doc(sql, tenant, c.id)
    assert d["roles"] == ["consumer", "agent"]
    assert d["role_since"]["agent"] == added.isoformat()
    assert d["parent_agent_id"] == str(parent.id)
    assert d["consents"] == [
        {
            "purpose": "marketing",
            "channel": "sms",
            "granted": False,
            "policy_version": "v2",
            "source": "pos",
            "at": withdrawn.isoformat(),
        },
        {
            "purpose": "marketing",
            "channel": "email",
            "granted": True,
            "policy_version": "v1",
            "source": None,
            "at": d["consents"][1]["at"],
        },
    ]

    c.end_role("consumer", reason="left", actor=ACTOR, at=clock())
    c.set_parent_agent(None, actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, PROFILE)
    d = doc(sql, tenant, c.id)
    assert d["roles"] == ["agent"]
    assert d["role_since"] == {"agent": added.isoformat()}
    assert d["parent_agent_id"] is None


def test_owner_assigned_and_ended_and_the_owner_queries(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a = new_customer(tenant, clock, ("member_no", "A"), owner="guide-1")
    b = new_customer(tenant, clock, ("member_no", "B"))
    c = new_customer(tenant, clock, ("member_no", "C"), owner="guide-1")
    b.assign_owner("guide-1", reason="walk-in", actor=ACTOR, at=clock())
    c.end_owner(by="guide-1", reason="left", actor=ACTOR, at=clock())
    tenant.app.save(b, c)
    project(tenant, PROFILE)

    assert doc(sql, tenant, b.id)["owner"] == "guide-1"
    assert doc(sql, tenant, c.id)["owner"] is None
    with tenant.datastore.transaction(commit=False) as curs:
        assert queries.owned_by(curs, tenant.schema, "guide-1") == sorted([a.id, b.id])

    b.assign_owner("guide-2", reason="handover", actor=ACTOR, at=clock())
    tenant.app.save(b)
    project(tenant, PROFILE)
    with tenant.datastore.transaction(commit=False) as curs:
        assert queries.owned_by(curs, tenant.schema, "guide-1") == [a.id]
        assert queries.owned_by(curs, tenant.schema, "guide-2") == [b.id]


@pytest.mark.anyio
async def test_profile_ids_by_owner_pages_in_id_order_and_skips_merged_and_erased(
    tenant: Tenant, database_url: str
) -> None:
    clock = Clock()
    owned = [new_customer(tenant, clock, ("member_no", f"O{n}"), owner="g") for n in range(5)]
    merge(tenant, clock, owned[0], owned[1])  # owned[1] is merged away
    erase(tenant, clock, owned[2])
    project(tenant, PROFILE)

    expected = sorted([owned[0].id, owned[3].id, owned[4].id])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        first = await queries.profile_ids_by_owner(conn, tenant.schema, "g", None, 2)
        rest = await queries.profile_ids_by_owner(conn, tenant.schema, "g", first[-1], 2)
        assert await queries.profile_ids_by_owner(conn, tenant.schema, "nobody", None, 10) == []
    assert first + rest == expected


def test_a_merge_moves_identities_fields_and_roles_and_its_undo_gives_them_back(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    survivor = new_customer(
        tenant, clock, ("member_no", "S"), name="Sam", attributes={"city": "SH"}
    )
    source = new_customer(
        tenant,
        clock,
        ("member_no", "X"),
        ("jd_pin", "J"),
        name="Samuel",
        email="sam@example.com",
        attributes={"size": "L"},
        roles=["consumer", "agent"],
        owner="guide-3",
    )
    project(tenant, PROFILE)

    merge_id = merge(tenant, clock, survivor, source)
    project(tenant, PROFILE)

    s, x = doc(sql, tenant, survivor.id), doc(sql, tenant, source.id)
    assert s["identities"] == [
        {"type": "member_no", "value": "S"},
        {"type": "member_no", "value": "X"},
        {"type": "jd_pin", "value": "J"},
    ]
    assert (s["name"], s["email"], s["owner"]) == ("Sam", "sam@example.com", "guide-3")
    assert s["attributes"] == {"city": "SH", "size": "L"}
    assert s["roles"] == ["consumer", "agent"]
    assert (x["merged_into"], x["merge_id"]) == (str(survivor.id), str(merge_id))
    assert columns(sql, tenant, source.id)["owner"] is None  # not owned while merged away
    assert identity_rows(sql, tenant) == {
        ("member_no", "S", survivor.id),
        ("member_no", "X", survivor.id),
        ("jd_pin", "J", survivor.id),
    }

    undo_merge(tenant, clock, survivor, source, merge_id)
    project(tenant, PROFILE)

    s, x = doc(sql, tenant, survivor.id), doc(sql, tenant, source.id)
    assert s["identities"] == [{"type": "member_no", "value": "S"}]
    assert (s["name"], s["email"], s["owner"]) == ("Sam", None, None)
    assert s["attributes"] == {"city": "SH"}
    assert s["roles"] == ["consumer"]
    assert (x["merged_into"], x["merge_id"]) == (None, None)
    assert x["identities"] == [
        {"type": "member_no", "value": "X"},
        {"type": "jd_pin", "value": "J"},
    ]
    assert columns(sql, tenant, source.id)["owner"] == "guide-3"
    assert identity_rows(sql, tenant) == {
        ("member_no", "S", survivor.id),
        ("member_no", "X", source.id),
        ("jd_pin", "J", source.id),
    }


def test_tags_show_sorted_follow_a_merge_and_its_undo_and_stay_after_erasure(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    survivor = new_customer(tenant, clock, ("member_no", "TS"), save=False)
    source = new_customer(tenant, clock, ("member_no", "TX"), save=False)
    survivor.add_tags(["vip", "b2b", "old"], actor=ACTOR, at=clock())
    survivor.remove_tag("old", actor=ACTOR, at=clock())
    source.add_tags(["vip", "churn_risk"], actor=ACTOR, at=clock())
    tenant.app.save(survivor, source)
    project(tenant, PROFILE)
    assert doc(sql, tenant, survivor.id)["tags"] == ["b2b", "vip"]

    merge_id = merge(tenant, clock, survivor, source)
    project(tenant, PROFILE)
    assert doc(sql, tenant, survivor.id)["tags"] == ["b2b", "churn_risk", "vip"]

    undo_merge(tenant, clock, survivor, source, merge_id)
    erase(tenant, clock, source)
    project(tenant, PROFILE)
    assert doc(sql, tenant, survivor.id)["tags"] == ["b2b", "vip"]
    assert doc(sql, tenant, source.id)["tags"] == ["churn_risk", "vip"]


def test_erasure_leaves_no_personal_value_in_any_read_model(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    projections = (PROFILE, CustomerHistoryProjection(), MergeCandidatesProjection())
    c = person(tenant, clock, 1, owner="guide-1", roles=["consumer", "agent"])
    other = person(tenant, clock, 2)
    c.change_profile(
        {"name": "Second Name", "attributes.hobby": "Chess Club"},
        channel="app",
        actor=ACTOR,
        at=clock(),
    )
    c.link_identities([Identity("jd_pin", "JDPIN-secret")], actor=ACTOR, at=clock())
    c.suggest_match(other.id, "phone", actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, *projections)  # the live tables hold the values before the erasure
    personal = [
        "Namep1",
        "Second Name",
        c.phone,
        c.email,
        "Mp1",
        "Up1",
        "JDPIN-secret",
        "Cityp1",
        "Chess Club",
        "1990-01-02",
    ]
    tables = (
        "customer_profile",
        "customer_identity",
        "customer_history",
        "customer_history_state",
        "merge_candidates",
    )
    text = table_text(sql, tenant, *tables)
    assert all(value in text for value in personal)

    erase(tenant, clock, c)
    project(tenant, *projections)

    text = table_text(sql, tenant, *tables)
    assert [value for value in personal if value in text] == []
    assert "Namep2" in text  # the other customer is untouched
    d = doc(sql, tenant, c.id)
    assert d["erased"] is True
    assert d["erased_at"] == clock.now.isoformat()
    assert (d["identities"], d["name"], d["phone"], d["email"], d["birthday"]) == (
        [],
        None,
        None,
        None,
        None,
    )
    assert (d["attributes"], d["owner"], d["consents"]) == ({}, None, [])
    assert d["roles"] == ["consumer", "agent"]
    assert d["stats"]["order_count"] == 0
    assert d["customer_id"] == str(c.id)
    assert columns(sql, tenant, c.id) == {
        "phone": None,
        "email": None,
        "owner": None,
        "position": tenant.app.last_position_of(c.id),
    }
    assert {r[2] for r in identity_rows(sql, tenant)} == {other.id}
    kinds = rows(
        sql,
        tenant,
        "SELECT kind, changes::text AS changes FROM {s}.customer_history"
        " WHERE customer_id = %s ORDER BY position",
        c.id,
    )
    assert [r["kind"] for r in kinds] == [
        "registered",
        "profile_changed",
        "identities_linked",
        "erased",
    ]
    assert {r["changes"] for r in kinds} == {"[]"}


def test_a_merged_away_customer_keeps_its_row_and_erasure_keeps_merged_into(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    survivor = person(tenant, clock, 1)
    source = person(tenant, clock, 2)
    merge(tenant, clock, survivor, source)
    erase(tenant, clock, source)
    project(tenant, PROFILE)

    d = doc(sql, tenant, source.id)
    assert (d["merged_into"], d["erased"], d["name"]) == (str(survivor.id), True, None)
    assert {r[2] for r in identity_rows(sql, tenant)} == {survivor.id}


def test_events_of_one_batch_or_many_give_the_same_tables(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    a, b = person(tenant, clock, 1), person(tenant, clock, 2)
    merge_id = merge(tenant, clock, a, b)
    a.change_profile({"name": "After"}, channel=None, actor=ACTOR, at=clock())
    tenant.app.save(a)
    undo_merge(tenant, clock, a, b, merge_id)
    b.unlink_identities([Identity("member_no", "Mp2")], actor=ACTOR, at=clock())
    tenant.app.save(b)

    catch_up(tenant, PROFILE)
    whole = _profile_dump(sql, tenant, "")
    with tenant.datastore.transaction(commit=True) as curs:
        PROFILE.create_tables(curs, tenant.schema, "_one")
    catch_up(tenant, PROFILE, batch_size=1, tracking_name="one#", suffix="_one")
    assert _profile_dump(sql, tenant, "_one") == whole


def _profile_dump(sql: psycopg.Connection[Any], tenant: Tenant, suffix: str) -> list[Any]:
    return [
        sql.execute(
            SQL("SELECT t::text FROM {}.{} t ORDER BY 1").format(
                Identifier(tenant.schema), Identifier(table + suffix)
            )
        ).fetchall()
        for table in PROFILE.tables
    ]


def test_install_upgrades_tables_and_documents_of_the_previous_version(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    clock = Clock()
    c = new_customer(tenant, clock, ("member_no", "M1"), name="Ann", roles=["consumer"])
    project(tenant, PROFILE)
    s = tenant.schema
    # The tables and the document as the previous version wrote them.
    sql.execute(f"ALTER TABLE {s}.customer_profile DROP COLUMN owner")
    sql.execute(f"ALTER TABLE {s}.customer_identity DROP CONSTRAINT customer_identity_pkey")
    sql.execute(f"ALTER TABLE {s}.customer_identity ADD PRIMARY KEY (type, value)")
    old = {k: v for k, v in doc(sql, tenant, c.id).items() if k not in ("role_since", "erased")}
    sql.execute(
        f"UPDATE {s}.customer_profile SET doc = %s::json", (json.dumps(old, separators=(",", ":")),)
    )

    with tenant.datastore.transaction(commit=True) as curs:
        PROFILE.install(curs, s)
        PROFILE.install(curs, s)  # idempotent
    c.assign_owner("guide-1", reason=None, actor=ACTOR, at=clock())
    tenant.app.save(c)
    project(tenant, PROFILE)

    (pk,) = rows(
        sql,
        tenant,
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'p'",
        f"{s}.customer_identity",
    )
    assert pk["def"] == "PRIMARY KEY (type, value, customer_id)"
    d = doc(sql, tenant, c.id)
    assert list(d) == list(new_profile_keys())
    assert (d["owner"], d["erased"], d["role_since"]) == (
        "guide-1",
        False,
        {"consumer": c.created_on.isoformat()},
    )
    assert columns(sql, tenant, c.id)["owner"] == "guide-1"


def new_profile_keys() -> list[str]:
    return list(blank_profile(uuid4(), "").keys())
