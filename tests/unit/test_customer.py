"""Customer and IdentityClaim aggregates: given events -> when command -> then events."""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.customer import Customer
from domain.customer_tags import MAX_TAGS, parse_tag
from domain.errors import InvalidInput, TagLimitReached
from domain.identity_claim import IdentityClaim
from domain.values import Identity
from infrastructure.crypto import claim_id

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PHONE = Identity("phone", "+8613800138000")
UNIONID = Identity("wechat_unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
EMAIL = Identity("email", "li.lei@example.com")


def register(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "customer_id": UUID("982b55cd-79ed-4383-8da3-bc5c9afc6b84"),
        "identities": [PHONE],
        "name": "Li Lei",
        "phone": "+8613800138000",
        "email": "li.lei@example.com",
        "birthday": date(1990, 5, 1),
        "attributes": {"city": "Shanghai"},
        "roles": ["consumer"],
        "owner": None,
        "referrer_id": None,
        "actor": "cd4ccfeeafcc0e88",
        "at": AT,
    }
    fields.update(overrides)
    return Customer.register(**fields)


def replay(events: list[Any]) -> Any:
    aggregate = None
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate


def test_register_records_one_registered_event_carrying_every_field() -> None:
    referrer = uuid4()
    customer = register(
        identities=[PHONE, UNIONID],
        roles=["consumer", "agent"],
        owner="guide-7",
        referrer_id=referrer,
    )

    (event,) = customer.collect_events()

    assert isinstance(event, Customer.Registered)
    assert event.originator_id == UUID("982b55cd-79ed-4383-8da3-bc5c9afc6b84")
    assert event.originator_version == 1
    assert event.timestamp == AT
    assert event.identities == (PHONE, UNIONID)
    assert event.name == "Li Lei"
    assert event.phone == "+8613800138000"
    assert event.email == "li.lei@example.com"
    assert event.birthday == date(1990, 5, 1)
    assert event.attributes == {"city": "Shanghai"}
    assert event.roles == ("consumer", "agent")
    assert event.owner == "guide-7"
    assert event.referrer_id == referrer
    assert event.actor == "cd4ccfeeafcc0e88"


def test_register_sets_state_from_the_registered_event() -> None:
    customer = register(identities=[PHONE, UNIONID])

    assert customer.id == UUID("982b55cd-79ed-4383-8da3-bc5c9afc6b84")
    assert customer.version == 1
    assert customer.identities == (PHONE, UNIONID)
    assert customer.name == "Li Lei"
    assert customer.birthday == date(1990, 5, 1)
    assert customer.attributes == {"city": "Shanghai"}
    assert customer.roles == {"consumer": AT}
    assert customer.created_on == AT


def test_register_drops_duplicate_roles_keeping_their_order() -> None:
    customer = register(roles=["agent", "consumer", "agent"])

    (event,) = customer.collect_events()

    assert event.roles == ("agent", "consumer")


def test_register_copies_attributes_so_later_changes_to_the_input_do_not_leak_in() -> None:
    attributes = {"city": "Shanghai"}
    customer = register(attributes=attributes)
    attributes["city"] = "Beijing"

    (event,) = customer.collect_events()

    assert event.attributes == {"city": "Shanghai"}
    assert customer.attributes == {"city": "Shanghai"}


def test_link_identities_records_only_identities_not_held_yet() -> None:
    customer = register(identities=[PHONE])
    customer.collect_events()
    later = AT + timedelta(days=1)

    customer.link_identities([PHONE, UNIONID, EMAIL, UNIONID], actor="pos", at=later)

    (event,) = customer.collect_events()
    assert isinstance(event, Customer.IdentitiesLinked)
    assert event.identities == (UNIONID, EMAIL)
    assert event.actor == "pos"
    assert event.timestamp == later
    assert event.originator_version == 2
    assert customer.identities == (PHONE, UNIONID, EMAIL)
    assert customer.version == 2


def test_linking_only_held_identities_records_nothing() -> None:
    customer = register(identities=[PHONE, UNIONID])
    customer.collect_events()

    customer.link_identities([UNIONID, PHONE], actor="pos", at=AT)
    customer.link_identities([], actor="pos", at=AT)

    assert customer.collect_events() == []
    assert customer.version == 1
    assert customer.identities == (PHONE, UNIONID)


def test_replaying_collected_events_rebuilds_the_live_state() -> None:
    customer = register(identities=[PHONE])
    customer.link_identities([UNIONID], actor="a", at=AT + timedelta(seconds=1))
    customer.link_identities([UNIONID, EMAIL], actor="b", at=AT + timedelta(seconds=2))

    events = customer.collect_events()
    replayed = replay(events)

    assert [type(e) for e in events] == [
        Customer.Registered,
        Customer.IdentitiesLinked,
        Customer.IdentitiesLinked,
    ]
    assert replayed == customer
    assert replayed.identities == (PHONE, UNIONID, EMAIL)
    assert replayed.version == 3
    assert replayed.modified_on == AT + timedelta(seconds=2)


identities = st.builds(
    Identity,
    st.sampled_from(["phone", "email", "wechat_unionid", "jd_pin"]),
    st.text(alphabet="abc123", min_size=1, max_size=3),
)


@given(first=st.lists(identities, min_size=1, max_size=4), links=st.lists(st.lists(identities)))
def test_replay_equals_live_state_for_any_sequence_of_links(
    first: list[Identity], links: list[list[Identity]]
) -> None:
    customer = register(identities=list(dict.fromkeys(first)))
    for n, batch in enumerate(links):
        customer.link_identities(batch, actor="t", at=AT + timedelta(seconds=n))

    replayed = replay(customer.collect_events())

    assert replayed == customer
    # Every identity is held once, in the order it was first seen.
    assert customer.identities == tuple(dict.fromkeys([*first, *(i for b in links for i in b)]))


def test_claim_id_is_a_keyed_hash_of_type_and_value() -> None:
    secret, other = b"k" * 32, b"o" * 32

    assert claim_id(secret, PHONE) == claim_id(secret, Identity("phone", "+8613800138000"))
    assert claim_id(secret, PHONE) != claim_id(secret, Identity("phone", "+8613800138001"))
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert claim_id(secret, Identity("ab", "c")) != claim_id(secret, Identity("a", "bc"))
    # Another tenant's secret gives other ids: ids reveal nothing across tenants.
    assert claim_id(secret, PHONE) != claim_id(other, PHONE)
    # Fixed forever for a given secret: changing the encoding would orphan every stored claim.
    assert claim_id(secret, PHONE) == UUID(
        bytes=hmac.digest(secret, b"phone\x1f+8613800138000", "sha256")[:16]
    )


def test_claim_records_the_identity_type_and_holder_under_the_given_claim_id() -> None:
    holder = uuid4()
    cid = claim_id(b"k" * 32, UNIONID)

    claim = IdentityClaim.claim(UNIONID, holder, claim_id=cid, at=AT)

    (event,) = claim.collect_events()
    assert isinstance(event, IdentityClaim.Claimed)
    assert event.originator_id == cid
    assert event.originator_version == 1
    assert event.identity_type == "wechat_unionid"
    assert event.customer_id == holder
    assert claim.holders == (holder,)
    assert "o6_bmjrPTlm6" not in repr(vars(claim)), "a claim never stores the identity value"
    assert replay([event]) == claim


# -- static tags --------------------------------------------------------------------------------


def test_tag_codes_are_folded_lower_cased_and_checked() -> None:
    assert parse_tag(" \uff36\uff29\uff30 ") == "vip"  # full-width VIP
    assert parse_tag("segment:2026-q1_x") == "segment:2026-q1_x"
    for bad in ("", "a b", "li@x.cn", "+86138", "x" * 65, "标签"):
        with pytest.raises(InvalidInput):
            parse_tag(bad)


def test_adding_only_new_tags_is_recorded_and_removing_an_absent_one_records_nothing() -> None:
    c = register()
    c.collect_events()

    first = c.add_tags(["vip", "b2b", "vip"], actor="a", at=AT, channel="pos")
    again = c.add_tags(["vip"], actor="a", at=AT)
    removed = c.remove_tag("b2b", actor="a", at=AT)
    absent = c.remove_tag("b2b", actor="a", at=AT)

    assert (first, again, removed, absent) == (("vip", "b2b"), (), True, False)
    added, gone = c.collect_events()
    assert isinstance(added, Customer.TagsAdded)
    assert added.tags == ("vip", "b2b")
    assert added.channel == "pos"
    assert isinstance(gone, Customer.TagRemoved)
    assert gone.tag == "b2b"
    assert list(c.tags) == ["vip"]


def test_more_tags_than_the_limit_are_refused_and_record_nothing() -> None:
    c = register()
    c.add_tags([f"t{n}" for n in range(MAX_TAGS - 1)], actor="a", at=AT)
    c.collect_events()

    with pytest.raises(TagLimitReached):
        c.add_tags(["x", "y"], actor="a", at=AT)

    assert c.collect_events() == []
    assert c.add_tags(["x"], actor="a", at=AT) == ("x",)
