"""A connection lost around COMMIT, for MergeCustomers and UndoMerge (reliability cases C5, C7).

After COMMIT the merge (or undo) has happened: the kernel finds that out and answers what it
decided, once, instead of running again into ``cannot_merge`` / ``merge_not_undoable``. Before
COMMIT nothing happened and it runs again, once. Either way: one effect, and a client's retry
with the same key answers the first answer again. A merge id derived from the client's id makes
the same request a replay in the domain too, when the kernel's key is not there to answer it.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from application.kernel import Caller, Command, Outcome, execute
from application.merges import MergeCustomers, UndoMerge
from domain.errors import CannotMerge, ClientIdReused, MergeNotUndoable
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import (
    FAULTS,
    KEYED,
    Attempt,
    Fault,
    caller,
    check_against_twin,
    names,
    pinned,
    rejection_replayed,
)
from tests.integration.merge_support import merge_id_of, merged
from tests.integration.points_support import PROGRAM, customer, earn, now


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    return pinned(tenant, PROGRAM)


def _member(tenant: Tenant) -> UUID:
    """A customer with points, so that a merge moves an account as well as claims."""
    cid = customer(tenant)
    earn(
        tenant, cid, f"e-{uuid4()}", 500, at=tenant.app.clock() - timedelta(days=1), expires_at=None
    )
    return cid


def _merge_cmd(tenant: Tenant) -> tuple[Command, UUID]:
    """A merge of two fresh members, and the source (whose stream shows the merge once)."""
    survivor, source = _member(tenant), _member(tenant)
    return MergeCustomers(survivor, source), source


def _undo_cmd(tenant: Tenant) -> tuple[Command, UUID]:
    survivor, source = _member(tenant), _member(tenant)
    return UndoMerge(merged(tenant.app, survivor, source)), source


SETUPS = {"MergeCustomers": _merge_cmd, "UndoMerge": _undo_cmd}


@KEYED
@FAULTS
@pytest.mark.parametrize("name", list(SETUPS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    loyal: Tenant, name: str, fault: Fault, keyed: bool
) -> None:
    sources: list[UUID] = []

    def attempt() -> Attempt:
        cmd, source = SETUPS[name](loyal)
        sources.append(source)
        return cmd, lambda: names(loyal.app, source)

    _, answer = check_against_twin(
        loyal, fault, keyed, attempt, lambda body: {"moved": body["moved"]}
    )

    assert answer.body["source_id"] == str(sources[-1])


def test_a_merge_under_an_id_that_exists_for_the_same_pair_is_answered_again(
    loyal: Tenant,
) -> None:
    survivor, source = _member(loyal), _member(loyal)
    cmd = MergeCustomers(survivor, source, merge_id=uuid4())
    first = execute(loyal.app, cmd, Caller("t"))
    loyal.app.clock = lambda: now() + timedelta(hours=1)  # type: ignore[method-assign]

    again = execute(loyal.app, cmd, Caller("t"))

    assert (again.outcome, again.body) == (Outcome.CREATED, first.body)
    assert again.position == first.position
    assert names(loyal.app, source).count("MergedInto") == 1


def test_a_merge_under_an_id_that_exists_for_another_pair_is_refused(loyal: Tenant) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    merge_id = uuid4()
    execute(loyal.app, MergeCustomers(a, b, merge_id=merge_id), Caller("t"))

    with pytest.raises(ClientIdReused):
        execute(loyal.app, MergeCustomers(a, c, merge_id=merge_id), Caller("t"))

    assert "MergedInto" not in names(loyal.app, c)


def test_a_keyed_merge_refused_replays_its_refusal_after_it_became_possible(
    loyal: Tenant,
) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    first = merged(loyal.app, a, b)
    cmd = MergeCustomers(c, b)

    undo_first = UndoMerge(first)  # b could be merged into c after it

    rejection = rejection_replayed(
        loyal, cmd, CannotMerge, then=lambda: execute(loyal.app, undo_first, Caller("t"))
    )

    assert rejection["code"] == "merge_not_allowed"
    assert names(loyal.app, b).count("MergedInto") == 1


def test_a_keyed_undo_refused_replays_its_refusal_after_it_became_possible(
    loyal: Tenant,
) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    first = merged(loyal.app, a, b)
    second = merged(loyal.app, c, a)  # the survivor merged on: the first cannot be undone
    cmd = UndoMerge(first)

    rejection = rejection_replayed(
        loyal,
        cmd,
        MergeNotUndoable,
        then=lambda: execute(loyal.app, UndoMerge(second), Caller("t")),
    )

    assert rejection["code"] == "merge_not_undoable"
    assert "MergeUndone" not in names(loyal.app, b)


def test_a_merge_answer_names_the_merge_it_recorded(loyal: Tenant) -> None:
    survivor, source = _member(loyal), _member(loyal)

    answer = execute(loyal.app, MergeCustomers(survivor, source), caller(loyal, keyed=True))

    record = loyal.app.repository.get(merge_id_of(answer))
    assert (record.survivor_id, record.source_id) == (survivor, source)
    assert answer.body["moved"] == {
        "identity_claim": 1,
        "points_account": 2,  # one per point type, each closed
        "points_account_in": 2,
    }
