"""decide_registration against a reference model: identity -> the one customer holding it."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.errors import IdentityConflict
from domain.registration import Matched, NewCustomer, decide_registration
from domain.values import Identity

POOL = [Identity(t, v) for t in ("phone", "wechat_unionid", "jd_pin") for v in ("1", "2", "3", "4")]
requests = st.lists(st.sampled_from(POOL), min_size=1, max_size=6)

A, B = UUID(int=1), UUID(int=2)
P1, P2 = Identity("phone", "1"), Identity("phone", "2")
W1, J1 = Identity("wechat_unionid", "1"), Identity("jd_pin", "1")


def test_no_identity_held_decides_a_new_customer_holding_each_identity_once() -> None:
    assert decide_registration([P1, W1, P1], {}) == NewCustomer((P1, W1))


def test_identities_held_by_one_customer_match_it_and_link_the_rest() -> None:
    assert decide_registration([J1, P1, W1], {P1: A}) == Matched(A, (J1, W1))


def test_identities_all_held_by_one_customer_match_it_with_nothing_to_link() -> None:
    assert decide_registration([P1, W1], {P1: A, W1: A, P2: B}) == Matched(A, ())


def test_identities_held_by_two_customers_conflict_naming_both_sorted() -> None:
    with pytest.raises(IdentityConflict) as raised:
        decide_registration([P2, J1, P1], {P1: A, P2: B})

    assert raised.value.customer_ids == (A, B)
    assert raised.value.code == "identity_conflict"


class Registrations(RuleBasedStateMachine):
    """Registers random identity sets; the model is what the event store would hold."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[Identity, UUID] = {}

    def customers(self) -> dict[UUID, list[Identity]]:
        held: dict[UUID, list[Identity]] = {}
        for identity, customer in self.owners.items():
            held.setdefault(customer, []).append(identity)
        return held

    @rule(requested=requests)
    def register(self, requested: list[Identity]) -> None:
        holders = {self.owners[i] for i in requested if i in self.owners}
        before = dict(self.owners)
        if len(holders) > 1:
            with pytest.raises(IdentityConflict) as raised:
                decide_registration(requested, self.owners)
            assert set(raised.value.customer_ids) == holders
            return

        decision = decide_registration(requested, self.owners)

        unheld = tuple(i for i in dict.fromkeys(requested) if i not in self.owners)
        if holders:
            # Some identity is held: never a new customer, always the one holder.
            (holder,) = holders
            assert decision == Matched(holder, unheld)
            for identity in unheld:
                self.owners[identity] = holder
        else:
            # None held: a new customer holding exactly the requested identities, once each.
            assert decision == NewCustomer(unheld)
            customer = UUID(int=len(set(self.owners.values())) + 1)
            for identity in decision.identities:
                self.owners[identity] = customer
        # Nobody loses or changes an identity by a registration.
        assert all(self.owners[i] == c for i, c in before.items())

    @precondition(lambda self: bool(self.owners))
    @rule(data=st.data())
    def re_register_held_subset(self, data: st.DataObject) -> None:
        customers = self.customers()
        customer = data.draw(st.sampled_from(sorted(customers)))
        subset = data.draw(st.lists(st.sampled_from(customers[customer]), min_size=1, max_size=5))

        assert decide_registration(subset, self.owners) == Matched(customer, ())

    @precondition(lambda self: len(set(self.owners.values())) >= 2)
    @rule(data=st.data())
    def mix_identities_of_two_customers(self, data: st.DataObject) -> None:
        customers = self.customers()
        first, second = data.draw(
            st.lists(st.sampled_from(sorted(customers)), min_size=2, max_size=2, unique=True)
        )
        mixed = [
            data.draw(st.sampled_from(customers[first])),
            data.draw(st.sampled_from(customers[second])),
            *data.draw(st.lists(st.sampled_from(POOL), max_size=3)),
        ]
        mixed = data.draw(st.permutations(mixed))

        with pytest.raises(IdentityConflict) as raised:
            decide_registration(mixed, self.owners)

        assert {first, second} <= set(raised.value.customer_ids)

    @invariant()
    def every_identity_maps_to_exactly_one_customer(self) -> None:
        # The model is a function identity -> customer; each customer's identity sets are disjoint.
        seen: set[Identity] = set()
        for held in self.customers().values():
            assert not seen & set(held)
            seen |= set(held)
        assert seen == set(self.owners)


TestRegistrationModel = Registrations.TestCase


@given(requested=requests, owners=st.dictionaries(st.sampled_from(POOL), st.sampled_from([A, B])))
def test_a_new_customer_is_decided_iff_no_requested_identity_is_held(
    requested: list[Identity], owners: dict[Identity, UUID]
) -> None:
    held = any(i in owners for i in requested)
    try:
        decision = decide_registration(requested, owners)
    except IdentityConflict:
        assert held
        return
    assert isinstance(decision, NewCustomer) == (not held)
