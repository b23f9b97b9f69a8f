"""MergeCustomers and UndoMerge on the in-memory ports: the handlers read in bulk, the domain
decides, repeated requests are answered again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.kernel import Caller, Outcome, execute
from application.merges import MergeCustomers, UndoMerge
from application.program import define_program
from application.registration import RegisterCustomer
from domain.customer import Customer
from domain.errors import CannotMerge, ClientIdReused, MergeNotUndoable
from domain.values import Identity
from infrastructure.memory import InMemoryIdempotencyStore, InMemoryMembercore

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points"}, {"code": "growth", "redeemable": False}],
}
CALLER = Caller("t")


@pytest.fixture
def app() -> InMemoryMembercore:
    mc = InMemoryMembercore()
    define_program(mc, PROGRAM, "t")
    return mc


def register(app: InMemoryMembercore, *identities: tuple[str, str], **fields: Any) -> UUID:
    answer = execute(app, RegisterCustomer(list(identities), **fields), CALLER)
    return UUID(answer.body["customer_id"])


def customer(app: InMemoryMembercore, customer_id: UUID) -> Customer:
    found = app.repository.get(customer_id)
    assert isinstance(found, Customer)
    return found


def names(app: InMemoryMembercore, aggregate_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.events.get(aggregate_id)]


def test_a_merge_and_its_undo_give_back_identities_fields_and_claims(
    app: InMemoryMembercore,
) -> None:
    a = register(app, ("wechat_unionid", "u-a"), name="A")
    b = register(app, ("wechat_unionid", "u-b"), email="b@example.com")

    merged = execute(app, MergeCustomers(a, b), CALLER)

    assert merged.outcome is Outcome.CREATED
    assert merged.body["moved"] == {
        "identity_claim": 2,
        "points_account": 2,
        "points_account_in": 2,
    }
    assert customer(app, b).merged_into == a
    assert customer(app, a).fields() == {"name": "A", "email": "b@example.com"}

    undone = execute(app, UndoMerge(UUID(merged.body["merge_id"])), CALLER)

    assert (undone.outcome, undone.body) == (Outcome.DONE, merged.body)
    assert customer(app, b).merged_into is None
    assert customer(app, a).identities == (Identity("wechat_unionid", "u-a"),)
    assert customer(app, a).fields() == {"name": "A"}
    claim = app.repository.get(app.claim_id(Identity("wechat_unionid", "u-b")))
    assert claim.holders == (b,)


def test_a_keyed_merge_repeated_is_replayed_and_merges_once(app: InMemoryMembercore) -> None:
    a, b = register(app, ("wechat_unionid", "u-a")), register(app, ("wechat_unionid", "u-b"))
    keyed = Caller("t", "t1", InMemoryIdempotencyStore())

    first = execute(app, MergeCustomers(a, b), keyed, client_id="k1")
    again = execute(app, MergeCustomers(a, b), keyed, client_id="k1")

    assert again.outcome is Outcome.REPLAYED
    assert (again.body, again.position) == (first.body, first.position)
    assert names(app, b).count("MergedInto") == 1


def test_a_merge_id_that_exists_answers_its_pair_again_and_refuses_another(
    app: InMemoryMembercore,
) -> None:
    a, b, c = (register(app, ("wechat_unionid", f"u-{n}")) for n in "abc")
    merge_id = uuid4()
    first = execute(app, MergeCustomers(a, b, merge_id=merge_id), CALLER)

    again = execute(app, MergeCustomers(a, b, merge_id=merge_id), CALLER)
    with pytest.raises(ClientIdReused):
        execute(app, MergeCustomers(a, c, merge_id=merge_id), CALLER)

    assert (again.outcome, again.body, again.position) == (
        Outcome.CREATED,
        first.body,
        first.position,
    )
    assert names(app, b).count("MergedInto") == 1
    assert "MergedInto" not in names(app, c)


def test_merging_a_customer_into_itself_or_a_merged_away_one_is_refused(
    app: InMemoryMembercore,
) -> None:
    a, b, c = (register(app, ("wechat_unionid", f"u-{n}")) for n in "abc")
    execute(app, MergeCustomers(a, b), CALLER)

    for survivor, source in ((a, a), (c, b), (b, c)):
        with pytest.raises(CannotMerge):
            execute(app, MergeCustomers(survivor, source), CALLER)


def test_an_undo_twice_is_refused_and_writes_nothing(app: InMemoryMembercore) -> None:
    a, b = register(app, ("wechat_unionid", "u-a")), register(app, ("wechat_unionid", "u-b"))
    merge_id = UUID(execute(app, MergeCustomers(a, b), CALLER).body["merge_id"])
    execute(app, UndoMerge(merge_id), CALLER)
    head = app.recorder.max_notification_id()

    with pytest.raises(MergeNotUndoable):
        execute(app, UndoMerge(merge_id), CALLER)

    assert app.recorder.max_notification_id() == head


def _counting_reads(app: InMemoryMembercore) -> list[int]:
    """Counts ``get_many`` calls (each one query on PostgreSQL) and their sizes."""
    calls: list[int] = []
    original = app.get_many

    def counted(aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        ids = list(aggregate_ids)
        calls.append(len(ids))
        return original(ids)

    app.get_many = counted  # type: ignore[method-assign]
    return calls


def test_a_merge_reads_the_pair_then_what_it_moves_in_two_reads(
    app: InMemoryMembercore,
) -> None:
    a = register(app, ("wechat_unionid", "u-a"))
    b = register(app, ("wechat_unionid", "u-b"), ("pos_member_no", "p-b"))
    calls = _counting_reads(app)

    execute(app, MergeCustomers(a, b), CALLER)

    # The merge id (a replay?) and the pair, then their claims, accounts, memberships, benefits.
    assert len(calls) == 2


def test_an_undo_reads_what_the_merge_moved_once_and_the_orders_to_reassign_once(
    app: InMemoryMembercore,
) -> None:
    a = register(app, ("wechat_unionid", "u-a"))
    b = register(app, ("wechat_unionid", "u-b"))
    merge_id = UUID(execute(app, MergeCustomers(a, b), CALLER).body["merge_id"])
    calls = _counting_reads(app)

    execute(app, UndoMerge(merge_id), CALLER)

    # The pair with what the merge moved and both customers' accounts, then the orders.
    assert len(calls) == 2
