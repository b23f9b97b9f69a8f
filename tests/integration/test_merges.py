"""MergeCustomers and UndoMerge on the real event store: claims, state, races, auto-merge."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.context import CommandContext
from application.customers import ChangeProfile, UnlinkIdentity
from application.errors import ConcurrencyConflict
from application.kernel import Caller, Outcome, execute
from application.privacy import EraseCustomer
from application.program import define_program
from domain.customer import Customer
from domain.errors import (
    CannotMerge,
    CustomerErased,
    CustomerMerged,
    IdentityNotHeld,
    LastIdentity,
    MergeNotUndoable,
)
from domain.merge import Merge
from domain.values import Identity
from infrastructure.runtime import Runtime
from infrastructure.tenancy import Tenant
from tests.conftest import new_slug
from tests.integration.merge_support import merge, merge_id_of, merged, undo
from tests.integration.support import events, register, run_at_once

CTX = CommandContext(actor="test")
# Database-backed properties: a quarter of the profile's examples (15 by default).
DB_EXAMPLES = max(15, settings.default.max_examples // 4)


def customer(tenant: Tenant, customer_id: UUID) -> Customer:
    found = tenant.app.repository.get(customer_id)
    assert isinstance(found, Customer)
    return found


def holders(tenant: Tenant, identity: Identity) -> tuple[UUID, ...] | None:
    """The holders of the identity's claim (None: it was never claimed)."""
    claim_id = tenant.app.claim_id(identity)
    if claim_id not in tenant.app.repository:
        return None
    holders: tuple[UUID, ...] = tenant.app.repository.get(claim_id).holders
    return holders


def snapshot(tenant: Tenant, customer_id: UUID) -> tuple[Any, ...]:
    c = customer(tenant, customer_id)
    return (c.identities, c.fields(), dict(c.roles), c.merged_into, c.absorbed)


def assert_claims_consistent(
    tenant: Tenant, customer_ids: Iterable[UUID], identities: Iterable[Identity]
) -> None:
    """Each claim is held by exactly the active customers holding its identity."""
    everyone = [customer(tenant, c) for c in customer_ids]
    active = [c for c in everyone if c.merged_into is None and not c.erased]
    for identity in identities:
        expected = {c.id for c in active if identity in c.identities}
        found = holders(tenant, identity)
        assert set(found or ()) == expected, (identity, found, expected)
    for c in everyone:
        if c.merged_into is not None:
            for identity in identities:
                assert c.id not in (holders(tenant, identity) or ()), (c.id, identity)
    for c in active:  # every identity an active customer holds has a claim naming it
        for identity in c.identities:
            assert c.id in (holders(tenant, identity) or ()), (c.id, identity)


def test_merge_moves_every_identity_claim_of_the_source_to_the_survivor(
    tenant: Tenant,
) -> None:
    a = register(tenant, ("pos_member_no", "A-1"), name="A").customer_id
    b = register(
        tenant, ("pos_member_no", "B-1"), ("jd_pin", "jd-b"), email="b@example.com"
    ).customer_id

    result = merge(tenant.app, a, b)

    assert result.outcome is Outcome.CREATED
    assert (result.body["survivor_id"], result.body["source_id"]) == (str(a), str(b))
    assert result.body["moved"] == {"identity_claim": 3}
    for identity in (
        Identity("pos_member_no", "A-1"),
        Identity("pos_member_no", "B-1"),
        Identity("jd_pin", "jd-b"),
        Identity("email", "b@example.com"),
    ):
        assert holders(tenant, identity) == (a,), identity
    survivor, source = customer(tenant, a), customer(tenant, b)
    assert set(survivor.identities) == {
        Identity("pos_member_no", "A-1"),
        Identity("pos_member_no", "B-1"),
        Identity("jd_pin", "jd-b"),
        Identity("email", "b@example.com"),
    }
    assert survivor.fields() == {"name": "A", "email": "b@example.com"}  # non_empty default
    assert (source.merged_into, source.merge_id) == (a, merge_id_of(result))
    record = tenant.app.repository.get(merge_id_of(result))
    assert isinstance(record, Merge)
    assert (record.survivor_id, record.source_id, record.reason) == (a, b, "manual")
    assert [m.kind for m in record.moves] == ["identity_claim"] * 3


def test_undo_restores_claims_identities_fields_and_roles_exactly(tenant: Tenant) -> None:
    a = register(
        tenant,
        ("pos_member_no", "A-1"),
        name="Li Lei",
        birthday=date(1990, 5, 1),
        attributes={"city": "Shanghai"},
    ).customer_id
    b = register(
        tenant,
        ("pos_member_no", "B-1"),
        ("wechat_unionid", "o6_b"),
        name="Lei Li",
        phone="+8613800138000",
        attributes={"city": "Beijing", "size": "M"},
        roles=["consumer", "agent"],
        store_id="s-9",
    ).customer_id
    before = snapshot(tenant, a), snapshot(tenant, b)
    identities = [*customer(tenant, a).identities, *customer(tenant, b).identities]

    merged = merge(tenant.app, a, b)
    assert snapshot(tenant, a) != before[0]
    undone = undo(tenant.app, merge_id_of(merged))

    assert undone.outcome is Outcome.DONE
    assert undone.body == merged.body
    assert undone.position > merged.position
    assert (snapshot(tenant, a), snapshot(tenant, b)) == before
    for identity in customer(tenant, a).identities:
        assert holders(tenant, identity) == (a,)
    for identity in customer(tenant, b).identities:
        assert holders(tenant, identity) == (b,)
    assert tenant.app.repository.get(merge_id_of(merged)).undone
    assert_claims_consistent(tenant, [a, b], identities)


def test_undo_keeps_a_change_made_to_the_survivor_after_the_merge(tenant: Tenant) -> None:
    a = register(tenant, ("pos_member_no", "A-1")).customer_id
    b = register(tenant, ("pos_member_no", "B-1"), name="From B", email="b@example.com")
    merge_id = merged(tenant.app, a, b.customer_id)
    execute(tenant.app, ChangeProfile(a, {"name": "Corrected"}, {}), Caller(CTX.actor))

    undo(tenant.app, merge_id)

    assert customer(tenant, a).fields() == {"name": "Corrected"}
    assert customer(tenant, b.customer_id).fields() == {
        "name": "From B",
        "email": "b@example.com",
    }


def test_a_shared_identity_stays_with_the_survivor_alone_and_is_shared_again_on_undo(
    tenant: Tenant,
) -> None:
    program = {
        "currency": "CNY",
        "timezone": "UTC",
        "point_types": [{"code": "points"}],
        "identity": {"rules": {"phone": {"match": "suggest", "max_customers": 3}}},
    }
    define_program(tenant.app, program, CTX.actor)
    shared = Identity("phone", "+8613800138000")
    a = register(tenant, ("pos_member_no", "A"), phone=shared.value).customer_id
    b = register(tenant, ("pos_member_no", "B"), phone=shared.value).customer_id
    assert holders(tenant, shared) == (a, b)  # a suggestion, not a match

    answer = merge(tenant.app, a, b)

    # The program has a point type: the source's (empty) account is closed, the survivor's opened.
    assert answer.body["moved"] == {
        "identity_claim": 1,
        "identity_claim_shared": 1,
        "points_account": 1,
        "points_account_in": 1,
    }
    assert holders(tenant, shared) == (a,)
    undo(tenant.app, merge_id_of(answer))
    assert set(holders(tenant, shared) or ()) == {a, b}
    assert shared in customer(tenant, b).identities
    assert_claims_consistent(
        tenant, [a, b], [shared, Identity("pos_member_no", "A"), Identity("pos_member_no", "B")]
    )


def test_a_merged_away_customer_cannot_be_merged_again_either_way(tenant: Tenant) -> None:
    a, b, c = (register(tenant, ("pos_member_no", n)).customer_id for n in "abc")
    merge(tenant.app, a, b)

    with pytest.raises(CannotMerge):
        merge(tenant.app, c, b)
    with pytest.raises(CannotMerge):
        merge(tenant.app, b, c)
    with pytest.raises(CannotMerge):
        merge(tenant.app, a, a)


def test_undoing_a_merge_twice_is_refused_the_second_time(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    a, b = (register(tenant, ("pos_member_no", n)).customer_id for n in "ab")
    merge_id = merged(tenant.app, a, b)
    undo(tenant.app, merge_id)
    before = events(sql, tenant)

    with pytest.raises(MergeNotUndoable):
        undo(tenant.app, merge_id)

    assert events(sql, tenant) == before


def test_a_merge_whose_survivor_was_merged_on_cannot_be_undone_until_that_is(
    tenant: Tenant,
) -> None:
    a, b, c = (register(tenant, ("pos_member_no", n)).customer_id for n in "abc")
    first = merged(tenant.app, a, b)
    second = merged(tenant.app, c, a)

    with pytest.raises(MergeNotUndoable):
        undo(tenant.app, first)
    undo(tenant.app, second)
    undo(tenant.app, first)

    assert {customer(tenant, x).merged_into for x in (a, b, c)} == {None}
    assert_claims_consistent(tenant, [a, b, c], [Identity("pos_member_no", n) for n in "abc"])


def test_a_merge_can_be_merged_again_after_its_undo(tenant: Tenant) -> None:
    a, b = (register(tenant, ("pos_member_no", n)).customer_id for n in "ab")
    first = merged(tenant.app, a, b)
    undo(tenant.app, first)

    again = merged(tenant.app, b, a)

    assert again != first
    assert customer(tenant, a).merged_into == b
    assert_claims_consistent(tenant, [a, b], [Identity("pos_member_no", n) for n in "ab"])


def test_merging_is_associative_for_the_survivors_identities_and_fields(
    tenant: Tenant, runtime: Runtime
) -> None:
    other = runtime.tenants.create(new_slug())

    def three(t: Tenant) -> list[UUID]:
        return [
            register(t, ("pos_member_no", "A"), ("jd_pin", "shared-ab"), name="A").customer_id,
            register(t, ("pos_member_no", "B"), email="b@example.com", store_id="s-b").customer_id,
            register(
                t, ("pos_member_no", "C"), ("wechat_unionid", "u-c"), phone="+8613900000001"
            ).customer_id,
        ]

    a, b, c = three(tenant)
    merge(tenant.app, a, b)  # (A <- B) <- C
    merge(tenant.app, a, c)
    a2, b2, c2 = three(other)
    merge(other.app, b2, c2)  # A <- (B <- C)
    merge(other.app, a2, b2)

    left, right = customer(tenant, a), customer(other, a2)
    assert set(left.identities) == set(right.identities)
    assert left.fields() == right.fields()
    assert set(left.roles) == set(right.roles)
    assert_claims_consistent(tenant, [a, b, c], left.identities)
    assert_claims_consistent(other, [a2, b2, c2], right.identities)


@pytest.mark.parametrize("direction", ["same", "opposite"])
def test_two_racing_merges_of_one_pair_let_exactly_one_succeed(
    tenant: Tenant, sql: psycopg.Connection[Any], direction: str
) -> None:
    a = register(tenant, ("pos_member_no", "A"), ("jd_pin", "ja")).customer_id
    b = register(tenant, ("pos_member_no", "B"), ("jd_pin", "jb")).customer_id
    pairs = [(a, b), (a, b) if direction == "same" else (b, a)]

    def work(n: int) -> Any:
        try:
            return merge(tenant.app, *pairs[n], actor=f"t{n}")
        except (CannotMerge, ConcurrencyConflict) as e:
            return e

    outcomes = run_at_once(2, work)

    succeeded = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(succeeded) == 1, outcomes
    log = events(sql, tenant)
    assert [e["topic"] for e in log].count(Merge.Merged.TOPIC) == 1
    (won,) = succeeded
    survivor, source = UUID(won.body["survivor_id"]), UUID(won.body["source_id"])
    assert customer(tenant, source).merged_into == survivor
    assert customer(tenant, survivor).merged_into is None
    identities = [Identity("pos_member_no", "A"), Identity("pos_member_no", "B")]
    identities += [Identity("jd_pin", "ja"), Identity("jd_pin", "jb")]
    assert_claims_consistent(tenant, [a, b], identities)


def test_registering_identities_of_two_customers_auto_merges_them_and_the_merge_undoes(
    tenant: Tenant,
) -> None:
    a = register(tenant, ("wechat_unionid", "u1"), name="From WeChat").customer_id
    b = register(tenant, ("pos_member_no", "p1"), email="pos@example.com").customer_id

    both = register(tenant, ("wechat_unionid", "u1"), ("pos_member_no", "p1"))

    assert (both.customer_id, both.matched) == (a, True)
    (merge_id,) = both.merged
    record = tenant.app.repository.get(UUID(merge_id))
    assert isinstance(record, Merge)
    assert (record.survivor_id, record.source_id) == (a, b)
    assert record.reason == "identity:pos_member_no"
    assert customer(tenant, b).merged_into == a
    assert holders(tenant, Identity("pos_member_no", "p1")) == (a,)
    assert customer(tenant, a).fields() == {"name": "From WeChat", "email": "pos@example.com"}

    undo(tenant.app, UUID(merge_id))

    assert customer(tenant, a).identities == (Identity("wechat_unionid", "u1"),)
    assert customer(tenant, a).fields() == {"name": "From WeChat"}
    assert customer(tenant, b).merged_into is None
    assert set(customer(tenant, b).identities) == {
        Identity("pos_member_no", "p1"),
        Identity("email", "pos@example.com"),
    }
    assert holders(tenant, Identity("pos_member_no", "p1")) == (b,)
    assert holders(tenant, Identity("email", "pos@example.com")) == (b,)


def test_an_auto_merge_of_three_customers_merges_each_into_the_first_registered(
    tenant: Tenant,
) -> None:
    first = register(tenant, ("jd_pin", "j")).customer_id
    second = register(tenant, ("tmall_ouid", "t")).customer_id
    third = register(tenant, ("pos_member_no", "p")).customer_id

    result = register(tenant, ("pos_member_no", "p"), ("tmall_ouid", "t"), ("jd_pin", "j"))

    assert result.customer_id == first
    assert len(result.merged) == 2
    reasons = {
        tenant.app.repository.get(UUID(m)).source_id: tenant.app.repository.get(UUID(m)).reason
        for m in result.merged
    }
    assert reasons == {second: "identity:tmall_ouid", third: "identity:pos_member_no"}


# -- property: claims stay consistent with identities through any history ---------------------

VALUES = ("1", "2", "3", "4")
POOL = [Identity(t, v) for t in ("pos_member_no", "jd_pin") for v in VALUES]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.lists(st.sampled_from(POOL), min_size=1, max_size=3)),
        st.tuples(st.just("merge"), st.integers(0, 7), st.integers(0, 7)),
        st.tuples(st.just("merge"), st.integers(0, 7), st.integers(0, 7)),
        st.tuples(st.just("undo"), st.integers(0, 3)),
        st.tuples(st.just("erase"), st.integers(0, 7)),
        st.tuples(st.just("unlink"), st.integers(0, 7), st.sampled_from(POOL)),
    ),
    min_size=3,
    max_size=12,
)


@settings(
    max_examples=DB_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.integers(2, 4), ops=operations)
def test_any_history_of_registrations_merges_undos_and_erasures_keeps_claims_consistent(
    tenant: Tenant, first: int, ops: list[Any]
) -> None:
    # One tenant for every example: each example's values carry their own prefix.
    prefix = secrets.token_hex(4)
    pool = [Identity(i.type, f"{prefix}-{i.value}") for i in POOL]
    # A few distinct customers to start with, then any history.
    customers = [
        register(tenant, ("pos_member_no", f"{prefix}-{n + 1}")).customer_id for n in range(first)
    ]
    merges: list[UUID] = []

    def active(customer_id: UUID) -> bool:
        c = customer(tenant, customer_id)
        return c.merged_into is None and not c.erased

    for op in ops:
        if op[0] == "register":
            wanted = [(i.type, f"{prefix}-{i.value}") for i in op[1]]
            result = register(tenant, *wanted)
            if result.customer_id not in customers:
                customers.append(result.customer_id)
            merges.extend(UUID(m) for m in result.merged)
        elif op[0] == "merge" and customers:
            survivor = customers[op[1] % len(customers)]
            source = customers[op[2] % len(customers)]
            try:
                merges.append(merged(tenant.app, survivor, source))
            except CannotMerge:
                assert survivor == source or not (active(survivor) and active(source))
        elif op[0] == "undo" and merges:
            merge_id = merges[-1 - op[1] % len(merges)]  # recent merges, mostly
            try:
                undo(tenant.app, merge_id)
            except MergeNotUndoable:
                record = tenant.app.repository.get(merge_id)
                assert record.undone or not active(record.survivor_id)
        elif op[0] == "erase" and customers:
            target = customers[op[1] % len(customers)]
            try:
                execute(tenant.app, EraseCustomer(target, None), Caller(CTX.actor))
            except (CustomerErased, CustomerMerged):
                assert not active(target)
        elif op[0] == "unlink" and customers:
            target = customers[op[1] % len(customers)]
            value = (op[2].type, f"{prefix}-{op[2].value}")
            refused = (IdentityNotHeld, LastIdentity, CustomerErased, CustomerMerged)
            with contextlib.suppress(*refused):
                execute(tenant.app, UnlinkIdentity(target, value), Caller(CTX.actor))
        assert_claims_consistent(tenant, customers, pool)
    # Every identity ever registered is held by exactly one active customer.
    held = [i for c in customers if active(c) for i in customer(tenant, c).identities]
    assert len(held) == len(set(held))
