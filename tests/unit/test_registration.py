"""decide_registration against a reference model: identity -> the one customer holding it.

Without a program every identity type identifies its person; identities of several customers
decide ``SamePerson`` (the application merges them, then decides again)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.program import DEFAULT_RULES, IdentityRule, ProgramRules
from domain.registration import (
    Decision,
    Matched,
    NewCustomer,
    SamePerson,
    Suggestion,
    decide_registration,
)
from domain.values import Identity

POOL = [Identity(t, v) for t in ("phone", "wechat_unionid", "jd_pin") for v in ("1", "2", "3", "4")]
requests = st.lists(st.sampled_from(POOL), min_size=1, max_size=6)

A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)
P1, P2 = Identity("phone", "1"), Identity("phone", "2")
W1, J1 = Identity("wechat_unionid", "1"), Identity("jd_pin", "1")


def decide(
    requested: Sequence[Identity],
    owners: Mapping[Identity, UUID],
    rules: ProgramRules = DEFAULT_RULES,
) -> Decision:
    """decide_registration with one holder per identity (what identifying types allow)."""
    return decide_registration(requested, {i: (c,) for i, c in owners.items()}, rules)


def test_no_identity_held_decides_a_new_customer_holding_each_identity_once() -> None:
    assert decide([P1, W1, P1], {}) == NewCustomer((P1, W1))


def test_identities_held_by_one_customer_match_it_and_link_the_rest() -> None:
    assert decide([J1, P1, W1], {P1: A}) == Matched(A, (J1, W1))


def test_identities_all_held_by_one_customer_match_it_with_nothing_to_link() -> None:
    assert decide([P1, W1], {P1: A, W1: A, P2: B}) == Matched(A, ())


def test_identities_held_by_two_customers_decide_same_person_with_the_type_per_customer() -> None:
    decision = decide([P2, J1, P1, W1], {P1: A, P2: B, W1: B})

    assert decision == SamePerson((B, A), {B: "phone", A: "phone"})


def test_a_suggesting_type_never_matches_but_names_its_holders_as_candidates() -> None:
    rules = ProgramRules(version=1, identity_rules={"phone": IdentityRule("suggest", 3)})

    assert decide([P1, J1], {P1: A}, rules) == NewCustomer((P1, J1), (Suggestion(A, "phone"),))
    shared = decide_registration([P1, W1], {P1: (A, C), W1: (B,)}, rules)
    assert shared == Matched(B, (P1,), (Suggestion(A, "phone"), Suggestion(C, "phone")))


def test_a_suggestion_never_names_the_matched_customer_itself() -> None:
    rules = ProgramRules(version=1, identity_rules={"phone": IdentityRule("suggest", 3)})

    assert decide([P1, W1], {P1: A, W1: A}, rules) == Matched(A, ())


def test_a_type_matched_on_none_is_only_held() -> None:
    rules = ProgramRules(version=1, default_identity_rule=IdentityRule("none", 5))

    assert decide([P1, W1], {P1: A, W1: B}, rules) == NewCustomer((P1, W1))


class Registrations(RuleBasedStateMachine):
    """Registers random identity sets; the model is what the event store would hold.

    ``SamePerson`` is followed, as the application does, by merging every named customer into
    the first registered (the lowest id here) and deciding again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[Identity, UUID] = {}
        self.registered = 0

    def customers(self) -> dict[UUID, list[Identity]]:
        held: dict[UUID, list[Identity]] = {}
        for identity, customer in self.owners.items():
            held.setdefault(customer, []).append(identity)
        return held

    @rule(requested=requests)
    def register(self, requested: list[Identity]) -> None:
        holders = {self.owners[i] for i in requested if i in self.owners}
        before = dict(self.owners)
        decision = decide(requested, self.owners)
        if len(holders) > 1:
            assert isinstance(decision, SamePerson)
            assert set(decision.customer_ids) == holders
            assert len(decision.customer_ids) == len(holders)
            for customer, type_ in decision.reasons.items():
                assert any(i.type == type_ and self.owners.get(i) == customer for i in requested)
            survivor = min(holders)
            self.owners = {i: survivor if c in holders else c for i, c in self.owners.items()}
            decision = decide(requested, self.owners)
            holders = {survivor}

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
            self.registered += 1
            customer = UUID(int=self.registered)
            for identity in decision.identities:
                self.owners[identity] = customer
        # Nobody loses an identity by a registration; only a merge moves one.
        assert set(before) <= set(self.owners)

    @precondition(lambda self: bool(self.owners))
    @rule(data=st.data())
    def re_register_held_subset(self, data: st.DataObject) -> None:
        customers = self.customers()
        customer = data.draw(st.sampled_from(sorted(customers)))
        subset = data.draw(st.lists(st.sampled_from(customers[customer]), min_size=1, max_size=5))

        assert decide(subset, self.owners) == Matched(customer, ())

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

        decision = decide(mixed, self.owners)

        assert isinstance(decision, SamePerson)
        assert {first, second} <= set(decision.customer_ids)

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
    held = {owners[i] for i in requested if i in owners}

    decision = decide(requested, owners)

    assert isinstance(decision, NewCustomer) == (not held)
    assert isinstance(decision, SamePerson) == (len(held) > 1)
