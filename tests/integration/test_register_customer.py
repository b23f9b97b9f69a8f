"""RegisterCustomer on the real event store: what it writes, and that a rejection writes nothing."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from application.context import CommandContext
from application.customers import RegisterCustomer, register_customer
from domain.customer import Customer, IdentityClaim
from domain.errors import IdentityConflict, InvalidInput, UnknownReferrer
from domain.values import Identity
from infrastructure.tenancy import Tenant
from tests.integration.support import events, register


def test_registering_new_identities_creates_a_customer_and_one_claim_per_identity(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    result = register(
        tenant,
        ("WeChat_UnionID", " o6_abc "),
        ("phone", "13800138000"),
        name=" Li Lei ",
        email=" Li.Lei@Example.COM ",
        birthday=date(1990, 5, 1),
        attributes={"city": "Shanghai"},
    )

    assert not result.matched
    assert result.status == 201
    log = events(sql, tenant)
    assert [e["topic"] for e in log] == [
        Customer.Registered.TOPIC,
        IdentityClaim.Claimed.TOPIC,
        IdentityClaim.Claimed.TOPIC,
    ]
    assert result.position == log[-1]["notification_id"]
    customer = tenant.app.repository.get(result.customer_id)
    assert customer.identities == (
        Identity("wechat_unionid", "o6_abc"),
        Identity("phone", "13800138000"),
    )
    assert (customer.name, customer.email) == ("Li Lei", "li.lei@example.com")
    assert customer.roles == ("consumer",)
    assert {e["originator_id"] for e in log[1:]} == {i.claim_id for i in customer.identities}


def test_registering_held_identities_again_matches_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    first = register(tenant, ("phone", "13800138000"), ("email", "a@example.com"))
    before = events(sql, tenant)

    again = register(tenant, ("email", "a@example.com"))

    assert (again.customer_id, again.matched, again.status) == (first.customer_id, True, 200)
    assert again.position == before[0]["notification_id"]  # the customer's last event
    assert events(sql, tenant) == before


def test_full_width_and_ascii_spellings_of_one_identity_are_one_identity(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "13800138000")

    first = register(tenant, ("phone", "13800138000"), ("phone", full_width))
    again = register(tenant, ("PHONE", f"\u3000{full_width}"))

    assert again.customer_id == first.customer_id
    assert len([e for e in events(sql, tenant) if e["topic"] == IdentityClaim.Claimed.TOPIC]) == 1


def test_registering_held_and_new_identities_links_the_new_ones(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    first = register(tenant, ("phone", "1"))

    linked = register(tenant, ("jd_pin", "jd-1"), ("phone", "1"))

    assert linked.matched
    assert linked.customer_id == first.customer_id
    log = events(sql, tenant)
    assert [e["topic"] for e in log[2:]] == [
        Customer.IdentitiesLinked.TOPIC,
        IdentityClaim.Claimed.TOPIC,
    ]
    assert linked.position == log[-1]["notification_id"]
    customer = tenant.app.repository.get(first.customer_id)
    assert customer.identities == (Identity("phone", "1"), Identity("jd_pin", "jd-1"))


def test_identities_of_two_customers_are_refused_with_identity_conflict_writing_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    one = register(tenant, ("phone", "1"))
    two = register(tenant, ("phone", "2"))
    before = events(sql, tenant)

    with pytest.raises(IdentityConflict) as raised:
        register(tenant, ("phone", "1"), ("email", "new@example.com"), ("phone", "2"))

    assert set(raised.value.customer_ids) == {one.customer_id, two.customer_id}
    assert events(sql, tenant) == before


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        (RegisterCustomer(identities=[]), ["identities"]),
        (
            RegisterCustomer(identities=[("phone", "1"), ("9bad", ""), ("email", "x" * 300)]),
            ["identities[1].type", "identities[1].value", "identities[2].value"],
        ),
        (RegisterCustomer(identities=[("phone", "1")], roles=["agent", "Bad-Role"]), ["roles[1]"]),
    ],
    ids=["no-identities", "bad-identities", "bad-role"],
)
def test_invalid_input_names_every_bad_field_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any], command: RegisterCustomer, fields: list[str]
) -> None:
    with pytest.raises(InvalidInput) as raised:
        register_customer(tenant.app, command, CommandContext("t"))

    assert [p.field for p in raised.value.problems] == fields
    assert events(sql, tenant) == []


def test_an_unknown_referrer_is_refused_writing_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    register(tenant, ("phone", "1"))
    before = events(sql, tenant)
    claim_id = Identity("phone", "1").claim_id  # an aggregate, but not a customer

    for referrer in (uuid4(), claim_id):
        with pytest.raises(UnknownReferrer):
            register(tenant, ("phone", "2"), referrer_id=referrer)

    assert events(sql, tenant) == before


def test_a_known_referrer_is_recorded(tenant: Tenant) -> None:
    referrer = register(tenant, ("phone", "1")).customer_id

    referred = register(tenant, ("phone", "2"), referrer_id=referrer)

    assert tenant.app.repository.get(referred.customer_id).referrer_id == referrer
