"""RegisterCustomer on the real event store: what it writes, and that a rejection writes nothing."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.kernel import Caller, Outcome, execute
from application.registration import RegisterCustomer
from domain.customer import Customer
from domain.errors import InvalidInput, UnknownReferrer
from domain.identity_claim import IdentityClaim
from domain.merge import Merge
from domain.values import Identity
from infrastructure.tenancy import Tenant
from tests.integration.support import events, register


def test_registering_new_identities_creates_a_customer_and_one_claim_per_identity(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    result = register(
        tenant,
        ("WeChat_UnionID", " o6_abc "),
        ("phone", "+86 138-0013-8000"),
        name=" Li Lei ",
        email=" Li.Lei@Example.COM ",
        birthday=date(1990, 5, 1),
        attributes={"city": "Shanghai"},
    )

    assert not result.matched
    assert result.outcome is Outcome.CREATED
    log = events(sql, tenant)
    # The email field is an identity too: three identities, three claims.
    assert [e["topic"] for e in log] == [
        Customer.Registered.TOPIC,
        IdentityClaim.Claimed.TOPIC,
        IdentityClaim.Claimed.TOPIC,
        IdentityClaim.Claimed.TOPIC,
    ]
    assert result.position == log[-1]["notification_id"]
    customer = tenant.app.repository.get(result.customer_id)
    assert customer.identities == (
        Identity("wechat_unionid", "o6_abc"),
        Identity("phone", "+8613800138000"),
        Identity("email", "li.lei@example.com"),
    )
    assert (customer.name, customer.email) == ("Li Lei", "li.lei@example.com")
    assert list(customer.roles) == ["consumer"]
    claim_ids = {tenant.app.claim_id(i) for i in customer.identities}
    assert {e["originator_id"] for e in log[1:]} == claim_ids


def test_phone_and_email_fields_are_identities_a_later_registration_matches_on(
    tenant: Tenant,
) -> None:
    first = register(tenant, ("pos_member_no", "P-1"), phone="+8613800138000", email="A@B.example")

    by_phone = register(tenant, ("jd_pin", "jd-1"), phone="+86 13800138000")
    by_email = register(tenant, ("email", "a@b.example"))

    assert (by_phone.customer_id, by_phone.matched) == (first.customer_id, True)
    assert (by_email.customer_id, by_email.matched) == (first.customer_id, True)
    customer = tenant.app.repository.get(first.customer_id)
    assert set(customer.identities) == {
        Identity("pos_member_no", "P-1"),
        Identity("phone", "+8613800138000"),
        Identity("email", "a@b.example"),
        Identity("jd_pin", "jd-1"),
    }


def test_registering_held_identities_again_matches_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    first = register(tenant, ("phone", "+8613800138000"), ("email", "a@example.com"))
    before = events(sql, tenant)

    again = register(tenant, ("email", "a@example.com"))

    assert (again.customer_id, again.matched, again.outcome) == (
        first.customer_id,
        True,
        Outcome.DONE,
    )
    assert again.position == before[0]["notification_id"]  # the customer's last event
    assert events(sql, tenant) == before


def test_full_width_and_ascii_spellings_of_one_identity_are_one_identity(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "+8613800138000")

    first = register(tenant, ("phone", "+8613800138000"), ("phone", full_width))
    again = register(tenant, ("PHONE", f"\u3000{full_width}"))

    assert again.customer_id == first.customer_id
    assert len([e for e in events(sql, tenant) if e["topic"] == IdentityClaim.Claimed.TOPIC]) == 1


def test_registering_held_and_new_identities_links_the_new_ones(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    first = register(tenant, ("pos_member_no", "1"))

    linked = register(tenant, ("jd_pin", "jd-1"), ("pos_member_no", "1"))

    assert linked.matched
    assert linked.customer_id == first.customer_id
    log = events(sql, tenant)
    assert [e["topic"] for e in log[2:]] == [
        Customer.IdentitiesLinked.TOPIC,
        IdentityClaim.Claimed.TOPIC,
    ]
    assert linked.position == log[-1]["notification_id"]
    customer = tenant.app.repository.get(first.customer_id)
    assert customer.identities == (Identity("pos_member_no", "1"), Identity("jd_pin", "jd-1"))


def test_identities_of_two_customers_merge_them_into_the_first_registered_and_match_it(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # Without a program every type identifies: the two are one person (SamePerson).
    one = register(tenant, ("pos_member_no", "1"))
    two = register(tenant, ("pos_member_no", "2"))

    result = register(
        tenant, ("pos_member_no", "1"), ("email", "new@example.com"), ("pos_member_no", "2")
    )

    assert (result.customer_id, result.matched) == (one.customer_id, True)
    (merge_id,) = result.merged
    merge = tenant.app.repository.get(UUID(merge_id))
    assert isinstance(merge, Merge)
    assert (merge.survivor_id, merge.source_id) == (one.customer_id, two.customer_id)
    assert merge.reason == "identity:pos_member_no"
    assert tenant.app.repository.get(two.customer_id).merged_into == one.customer_id
    assert set(tenant.app.repository.get(one.customer_id).identities) == {
        Identity("pos_member_no", "1"),
        Identity("pos_member_no", "2"),
        Identity("email", "new@example.com"),
    }
    assert [e["topic"] for e in events(sql, tenant)].count(Merge.Merged.TOPIC) == 1


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        (RegisterCustomer(identities=[]), ["identities"]),
        (
            RegisterCustomer(
                identities=[("pos_member_no", "1"), ("9bad", ""), ("email", "x" * 300)]
            ),
            ["identities[1].type", "identities[1].value", "identities[2].value"],
        ),
        (
            RegisterCustomer(identities=[("pos_member_no", "1")], roles=["agent", "Bad-Role"]),
            ["roles[1]"],
        ),
        (
            # Without a program there is no default country: a phone needs +<country code>.
            RegisterCustomer(identities=[("phone", "13800138000")], email="not-an-email"),
            ["identities[0].value", "email"],
        ),
        (
            RegisterCustomer(identities=[("pos_member_no", "1")], phone="+86 1"),
            ["phone"],
        ),
    ],
    ids=["no-identities", "bad-identities", "bad-role", "bad-phone-and-email", "bad-phone-field"],
)
def test_invalid_input_names_every_bad_field_and_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any], command: RegisterCustomer, fields: list[str]
) -> None:
    with pytest.raises(InvalidInput) as raised:
        execute(tenant.app, command, Caller("t"))

    assert [p.field for p in raised.value.problems] == fields
    assert events(sql, tenant) == []


def test_an_unknown_referrer_is_refused_writing_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    register(tenant, ("pos_member_no", "1"))
    before = events(sql, tenant)
    # An aggregate, but not a customer.
    claim_id = tenant.app.claim_id(Identity("pos_member_no", "1"))

    for referrer in (uuid4(), claim_id):
        with pytest.raises(UnknownReferrer):
            register(tenant, ("pos_member_no", "2"), referrer_id=referrer)

    assert events(sql, tenant) == before


def test_a_known_referrer_is_recorded(tenant: Tenant) -> None:
    referrer = register(tenant, ("pos_member_no", "1")).customer_id

    referred = register(tenant, ("pos_member_no", "2"), referrer_id=referrer)

    assert tenant.app.repository.get(referred.customer_id).referrer_id == referrer
