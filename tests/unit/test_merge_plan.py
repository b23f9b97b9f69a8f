"""Merging two customers and undoing it, on the pure domain objects (no database).

plan_merge picks each field's value by the program's survivorship rule; absorb/merge_away record
it; plan_undo gives back what the merge gave, except what changed since.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.customer import Customer
from domain.errors import CannotMerge, MergeNotUndoable
from domain.merge import (
    absorb,
    give_back,
    merge_away,
    plan_merge,
    plan_undo,
    restore,
)
from domain.program import BUILT_IN_ROLES, MERGEABLE_FIELDS, SURVIVORSHIP, ProgramRules
from domain.values import Identity

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def customer(
    *identities: Identity | str,
    minute: float = 0,
    roles: tuple[str, ...] = ("consumer",),
    **fields: Any,
) -> Customer:
    values: dict[str, Any] = {
        "name": None, "phone": None, "email": None, "birthday": None, "attributes": {},
        "owner": None, "channel": None, "store_id": None, **fields,
    }  # fmt: skip
    held = [i if isinstance(i, Identity) else Identity("pos_member_no", i) for i in identities]
    return Customer.register(
        customer_id=uuid4(),
        identities=held or [Identity("pos_member_no", uuid4().hex)],
        roles=roles,
        referrer_id=None,
        actor="t",
        at=at(minute),
        **values,
    )


def rules(default: str = "non_empty", **fields: str) -> ProgramRules:
    return ProgramRules(
        version=1,
        default_survivorship=default,
        survivorship={k.replace("__", "."): v for k, v in fields.items()},
    )


def merge(survivor: Customer, source: Customer, program: ProgramRules, minute: float) -> UUID:
    merge_id = uuid4()
    plan = plan_merge(survivor, source, program)
    absorb(survivor, source.id, merge_id, plan, actor="t", at=at(minute))
    merge_away(source, survivor.id, merge_id, actor="t", at=at(minute))
    return merge_id


def undo(survivor: Customer, source: Customer, merge_id: UUID, minute: float) -> None:
    """What UndoMerge does with the two customers (identities the source still shares kept)."""
    shared = tuple(i for i in source.identities if i in survivor.identities)
    plan = plan_undo(survivor, merge_id)
    kept = tuple(i for i in shared if i not in plan.identities)
    give_back(survivor, merge_id, plan, actor="t", at=at(minute))
    restore(source, merge_id, (*plan.identities, *kept), actor="t", at=at(minute))


# -- survivorship, field by field -------------------------------------------------------------


def test_survivor_wins_keeps_the_survivors_value_even_an_empty_one() -> None:
    survivor = customer(name="Old", minute=0)
    source = customer(name="New", email="n@example.com", minute=5)

    plan = plan_merge(survivor, source, rules("survivor_wins"))

    assert plan.fields == {}
    assert plan.previous == {}


def test_non_empty_keeps_the_survivors_value_and_fills_its_empty_fields() -> None:
    survivor = customer(name="Old", attributes={"city": "上海"})
    source = customer(name="New", email="n@example.com", birthday=date(1990, 5, 1), minute=5)

    plan = plan_merge(survivor, source, rules("non_empty"))

    assert plan.fields == {"email": "n@example.com", "birthday": "1990-05-01"}
    assert plan.previous == {"email": None, "birthday": None}


def test_newest_takes_the_value_set_last_on_either_side() -> None:
    survivor = customer(name="Survivor", email="s@example.com", minute=0)
    source = customer(name="Source", email="o@example.com", minute=5)
    survivor.change_profile({"email": "s2@example.com"}, channel=None, actor="t", at=at(10))

    plan = plan_merge(survivor, source, rules("newest"))

    # name: the source's is newer (5 > 0); email: the survivor changed it later (10 > 5).
    assert plan.fields == {"name": "Source"}
    assert plan.previous == {"name": "Survivor"}


def test_oldest_takes_the_value_set_first_on_either_side() -> None:
    survivor = customer(name="Survivor", email="s@example.com", minute=5)
    source = customer(name="Source", email="o@example.com", minute=0)
    source.change_profile({"email": "o2@example.com"}, channel=None, actor="t", at=at(10))

    plan = plan_merge(survivor, source, rules("oldest"))

    assert plan.fields == {"name": "Source"}


def test_each_field_follows_its_own_rule_and_the_rest_the_default() -> None:
    survivor = customer(
        name="S", email="s@example.com", store_id="s1", attributes={"city": "A"}, minute=0
    )
    source = customer(
        name="O",
        email="o@example.com",
        phone="+8613800138000",
        store_id="o1",
        attributes={"city": "B", "size": "M"},
        minute=5,
    )
    program = rules("survivor_wins", name="newest", phone="non_empty", attributes__city="newest")

    plan = plan_merge(survivor, source, program)

    assert plan.fields == {"name": "O", "phone": "+8613800138000", "attributes.city": "B"}
    assert plan.previous == {"name": "S", "phone": None, "attributes.city": "A"}


def test_the_plan_moves_only_identities_and_roles_the_survivor_lacks() -> None:
    shared = Identity("phone", "+8613800138000")
    survivor = customer("s", shared, roles=("consumer",))
    source = customer("o", shared, Identity("jd_pin", "j"), roles=("consumer", "agent"))

    plan = plan_merge(survivor, source, rules())

    assert plan.identities == (Identity("pos_member_no", "o"), Identity("jd_pin", "j"))
    assert plan.roles == ("agent",)


def test_absorbing_applies_the_plan_and_the_source_points_to_the_survivor() -> None:
    survivor = customer("s", name="S", roles=("consumer",))
    source = customer("o", email="o@example.com", roles=("agent",), minute=1)

    merge_id = merge(survivor, source, rules(), minute=2)

    assert survivor.identities == (Identity("pos_member_no", "s"), Identity("pos_member_no", "o"))
    assert survivor.fields() == {"name": "S", "email": "o@example.com"}
    assert set(survivor.roles) == {"consumer", "agent"}
    assert survivor.absorbed[merge_id].source_id == source.id
    assert (source.merged_into, source.merge_id) == (survivor.id, merge_id)


@pytest.mark.parametrize("who", ["survivor", "source"])
def test_a_merged_away_or_erased_customer_cannot_be_merged(who: str) -> None:
    a, b, c = customer("a"), customer("b"), customer("c")
    merge(c, a if who == "survivor" else b, rules(), 1)

    with pytest.raises(CannotMerge):
        plan_merge(a, b, rules())

    d, e = customer("d"), customer("e")
    (d if who == "survivor" else e).erase(reason=None, actor="t", at=at(1))
    with pytest.raises(CannotMerge):
        plan_merge(d, e, rules())


def test_a_customer_cannot_be_merged_into_itself() -> None:
    a = customer("a")

    with pytest.raises(CannotMerge):
        plan_merge(a, a, rules())


def test_newest_and_oldest_compare_an_owner_assigned_after_registration() -> None:
    # Found: OwnerAssigned does not record when the owner field changed (``changed_at``), so a
    # newest/oldest rule on ``owner`` looked up a time that was never set (KeyError).
    survivor = customer("s", minute=0)
    source = customer("o", minute=1)
    survivor.assign_owner("guide-1", reason=None, actor="t", at=at(2))
    source.assign_owner("guide-2", reason=None, actor="t", at=at(3))

    assert plan_merge(survivor, source, rules(owner="newest")).fields == {"owner": "guide-2"}
    assert plan_merge(survivor, source, rules(owner="oldest")).fields == {}


# -- undo -------------------------------------------------------------------------------------


def test_undo_restores_only_the_fields_unchanged_since_the_merge() -> None:
    survivor = customer("s", name="S", minute=0)
    source = customer("o", name="O", email="o@example.com", birthday=date(1990, 1, 2), minute=1)
    merge_id = merge(survivor, source, rules("newest"), minute=2)
    assert survivor.fields() == {
        "name": "O",
        "email": "o@example.com",
        "birthday": "1990-01-02",
    }
    # After the merge someone corrects the email: that correction stays on undo.
    survivor.change_profile({"email": "fixed@example.com"}, channel=None, actor="t", at=at(3))

    plan = plan_undo(survivor, merge_id)

    assert plan.fields == {"name": "S", "birthday": None}
    give_back(survivor, merge_id, plan, actor="t", at=at(4))
    assert survivor.fields() == {"name": "S", "email": "fixed@example.com"}


def test_undo_does_not_give_back_identities_unlinked_or_roles_ended_since_the_merge() -> None:
    survivor = customer("s", roles=("consumer",))
    source = customer("o", Identity("jd_pin", "j"), roles=("consumer", "agent", "guide"))
    merge_id = merge(survivor, source, rules(), minute=1)
    survivor.unlink_identities([Identity("jd_pin", "j")], actor="t", at=at(2))
    survivor.end_role("guide", reason=None, actor="t", at=at(2))

    plan = plan_undo(survivor, merge_id)

    assert plan.identities == (Identity("pos_member_no", "o"),)
    assert plan.roles == ("agent",)


def test_the_merge_adds_the_source_tags_the_survivor_lacks_as_a_union() -> None:
    survivor, source = customer("s"), customer("o")
    survivor.add_tags(["vip", "b2b"], actor="t", at=at(0.5))
    source.add_tags(["vip", "new", "churn_risk"], actor="t", at=at(0.5))

    plan = plan_merge(survivor, source, rules())
    merge(survivor, source, rules(), minute=1)

    assert plan.tags == ("churn_risk", "new")
    assert sorted(survivor.tags) == ["b2b", "churn_risk", "new", "vip"]
    assert survivor.tags["vip"] == at(0.5)  # its own tag keeps its own time


def test_undo_takes_back_the_merge_tags_except_those_removed_or_put_on_again_since() -> None:
    survivor, source = customer("s"), customer("o")
    survivor.add_tags(["own"], actor="t", at=at(0.5))
    source.add_tags(["kept", "gone", "again", "own"], actor="t", at=at(0.5))
    merge_id = merge(survivor, source, rules(), minute=1)
    survivor.remove_tag("gone", actor="t", at=at(2))
    survivor.remove_tag("again", actor="t", at=at(2))
    survivor.add_tags(["again"], actor="t", at=at(3))

    plan = plan_undo(survivor, merge_id)
    give_back(survivor, merge_id, plan, actor="t", at=at(4))

    assert plan.tags == ("kept",)
    assert sorted(survivor.tags) == ["again", "own"]


def test_undo_of_a_merge_the_customer_did_not_survive_is_refused() -> None:
    a, b = customer("a"), customer("b")

    with pytest.raises(MergeNotUndoable):
        plan_undo(a, uuid4())
    merge_id = merge(a, b, rules(), 1)
    with pytest.raises(MergeNotUndoable):
        plan_undo(b, merge_id)


def test_undo_is_refused_while_the_survivor_is_merged_on() -> None:
    a, b, c = customer("a"), customer("b"), customer("c")
    first = merge(a, b, rules(), 1)
    merge(c, a, rules(), 2)

    with pytest.raises(MergeNotUndoable):
        plan_undo(a, first)


def test_restore_refuses_a_merge_the_source_was_not_merged_by() -> None:
    a, b = customer("a"), customer("b")
    merge(a, b, rules(), 1)

    with pytest.raises(MergeNotUndoable):
        restore(b, uuid4(), b.identities, actor="t", at=at(2))


# -- merge then undo restores both exactly (property) -----------------------------------------

POOL = [Identity(t, v) for t in ("phone", "jd_pin", "pos_member_no") for v in ("1", "2", "3")]
texts = st.none() | st.sampled_from(["a", "b", "李雷", "x y"])
attribute_values = st.none() | st.sampled_from(["S", "M", 1, 2.5, True, False])


@st.composite
def customers(draw: st.DrawFn) -> Customer:
    identities = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True))
    registered = customer(
        *identities,
        minute=draw(st.integers(0, 100)),
        roles=tuple(draw(st.lists(st.sampled_from(BUILT_IN_ROLES), max_size=3, unique=True))),
        name=draw(texts),
        phone=draw(st.none() | st.sampled_from(["+8613800138000", "+8613900000001"])),
        email=draw(st.none() | st.sampled_from(["a@example.com", "b@example.com"])),
        birthday=draw(st.none() | st.dates(date(1950, 1, 1), date(2010, 1, 1))),
        owner=draw(texts),
        channel=draw(texts),
        store_id=draw(texts),
        attributes=draw(st.dictionaries(st.sampled_from(["city", "size", "n"]), attribute_values)),
    )
    tags = draw(st.lists(st.sampled_from(["vip", "b2b", "new", "churn_risk"]), unique=True))
    if tags:
        registered.add_tags(tags, actor="t", at=at(150))
    # Later profile changes, so newest/oldest have different times to compare.
    for n in range(draw(st.integers(0, 2))):
        changes = draw(
            st.dictionaries(
                st.sampled_from(["name", "email", "channel", "attributes.city", "attributes.x"]),
                texts,
                max_size=3,
            )
        )
        registered.change_profile(changes, channel=None, actor="t", at=at(200 + n))
    return registered


programs = st.builds(
    lambda default, fields: ProgramRules(
        version=1, default_survivorship=default, survivorship=fields
    ),
    st.sampled_from(SURVIVORSHIP),
    st.dictionaries(
        st.sampled_from([*MERGEABLE_FIELDS, "attributes.city", "attributes.size"]),
        st.sampled_from(SURVIVORSHIP),
    ),
)


def state(c: Customer) -> tuple[Any, ...]:
    return (
        c.identities,
        c.fields(),
        dict(c.roles),
        dict(c.tags),
        c.merged_into,
        c.merge_id,
        c.absorbed,
        c.erased,
    )


@given(a=customers(), b=customers(), program=programs)
def test_merge_then_undo_restores_both_customers_exactly(
    a: Customer, b: Customer, program: ProgramRules
) -> None:
    before_a, before_b = state(a), state(b)

    merge_id = merge(a, b, program, minute=500)
    assert set(before_a[0]) | set(before_b[0]) == set(a.identities)  # the survivor holds both
    undo(a, b, merge_id, minute=501)

    assert state(a) == before_a
    after_b = state(b)
    # The source gets every identity back; those it shared with the survivor come last.
    assert set(after_b[0]) == set(before_b[0])
    assert len(after_b[0]) == len(before_b[0])
    assert after_b[1:] == before_b[1:]


@given(a=customers(), b=customers(), program=programs)
def test_merge_then_undo_keeps_the_order_of_identities_when_none_is_shared(
    a: Customer, b: Customer, program: ProgramRules
) -> None:
    if set(a.identities) & set(b.identities):
        return
    before_b = b.identities

    undo(a, b, merge(a, b, program, minute=500), minute=501)

    assert b.identities == before_b


@given(a=customers(), b=customers(), program=programs)
def test_replaying_the_merge_and_undo_events_gives_the_same_state(
    a: Customer, b: Customer, program: ProgramRules
) -> None:
    undo(a, b, merge(a, b, program, minute=500), minute=501)

    for live in (a, b):
        replayed: Any = None
        for event in live.collect_events():
            replayed = event.mutate(replayed)
        assert state(replayed) == state(live)
        assert replayed.changed_at == live.changed_at
