"""A connection lost around COMMIT, for MergeCustomers and UndoMerge (reliability cases C5, C7).

After COMMIT the merge (or undo) has happened: the kernel finds that out and answers what it
decided, once, instead of running again into ``cannot_merge`` / ``merge_not_undoable``. Before
COMMIT nothing happened and it runs again, once. Either way: one effect, and a client's retry
with the same key answers the first answer again. A merge id derived from the client's id makes
the same request a replay in the domain too, when the kernel's key is not there to answer it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.errors import RejectionReplayed
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.merges import MergeCustomers, UndoMerge
from application.program import define_program
from domain.errors import CannotMerge, ClientIdReused, MergeNotUndoable
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import lost_after_commit, lost_before_commit
from tests.integration.merge_support import merge_id_of, merged
from tests.integration.points_support import PROGRAM, customer, earn, now

KEY = "merge-key-1"


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    at = now()
    tenant.app.clock = lambda: at  # type: ignore[method-assign]
    return tenant


def _member(tenant: Tenant) -> UUID:
    """A customer with points, so that a merge moves an account as well as claims."""
    cid = customer(tenant)
    earn(
        tenant, cid, f"e-{uuid4()}", 500, at=tenant.app.clock() - timedelta(days=1), expires_at=None
    )
    return cid


def _caller(tenant: Tenant, keyed: bool) -> Caller:
    return Caller("t", tenant.slug, tenant.idempotency if keyed else None)


def _names(tenant: Tenant, aggregate_id: UUID) -> list[str]:
    return [type(e).__name__ for e in tenant.app.events.get(aggregate_id)]


def _merge_cmd(tenant: Tenant) -> tuple[Command, UUID]:
    """A merge of two fresh members, and the source (whose stream shows the merge once)."""
    survivor, source = _member(tenant), _member(tenant)
    return MergeCustomers(survivor, source), source


def _undo_cmd(tenant: Tenant) -> tuple[Command, UUID]:
    survivor, source = _member(tenant), _member(tenant)
    return UndoMerge(merged(tenant.app, survivor, source)), source


def _run(tenant: Tenant, cmd: Command, caller: Caller) -> Answer:
    return execute(tenant.app, cmd, caller, client_id=KEY if caller.idempotency else None)


SETUPS = {"MergeCustomers": _merge_cmd, "UndoMerge": _undo_cmd}


@pytest.mark.parametrize("keyed", [True, False], ids=["with key", "without key"])
@pytest.mark.parametrize("fault", [lost_after_commit, lost_before_commit], ids=["after", "before"])
@pytest.mark.parametrize("name", list(SETUPS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    loyal: Tenant, name: str, fault: Any, keyed: bool
) -> None:
    twin_cmd, twin_source = SETUPS[name](loyal)
    twin = execute(loyal.app, twin_cmd, _caller(loyal, keyed=False))
    cmd, source = SETUPS[name](loyal)
    caller = _caller(loyal, keyed)

    with fault(loyal.app) as fired:
        answer = _run(loyal, cmd, caller)

    assert fired, "the fault was not injected"
    assert _names(loyal, source) == _names(loyal, twin_source)
    assert answer.outcome is twin.outcome
    assert answer.body["moved"] == twin.body["moved"]
    assert answer.body["source_id"] == str(source)
    assert answer.position > 0
    if keyed:
        again = _run(loyal, cmd, caller)
        assert (again.outcome, again.body, again.position) == (
            Outcome.REPLAYED,
            answer.body,
            answer.position,
        )
        assert _names(loyal, source) == _names(loyal, twin_source)


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
    assert _names(loyal, source).count("MergedInto") == 1


def test_a_merge_under_an_id_that_exists_for_another_pair_is_refused(loyal: Tenant) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    merge_id = uuid4()
    execute(loyal.app, MergeCustomers(a, b, merge_id=merge_id), Caller("t"))

    with pytest.raises(ClientIdReused):
        execute(loyal.app, MergeCustomers(a, c, merge_id=merge_id), Caller("t"))

    assert "MergedInto" not in _names(loyal, c)


def test_a_keyed_merge_refused_replays_its_refusal_after_it_became_possible(
    loyal: Tenant,
) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    first = merged(loyal.app, a, b)
    caller = _caller(loyal, keyed=True)
    cmd = MergeCustomers(c, b)
    with pytest.raises(CannotMerge):
        _run(loyal, cmd, caller)
    execute(loyal.app, UndoMerge(first), Caller("t"))  # b could be merged into c now

    with pytest.raises(RejectionReplayed) as replayed:
        _run(loyal, cmd, caller)

    assert replayed.value.rejection["code"] == "merge_not_allowed"
    assert _names(loyal, b).count("MergedInto") == 1


def test_a_keyed_undo_refused_replays_its_refusal_after_it_became_possible(
    loyal: Tenant,
) -> None:
    a, b, c = _member(loyal), _member(loyal), _member(loyal)
    first = merged(loyal.app, a, b)
    second = merged(loyal.app, c, a)  # the survivor merged on: the first cannot be undone
    caller = _caller(loyal, keyed=True)
    cmd = UndoMerge(first)
    with pytest.raises(MergeNotUndoable):
        _run(loyal, cmd, caller)
    execute(loyal.app, UndoMerge(second), Caller("t"))

    with pytest.raises(RejectionReplayed) as replayed:
        _run(loyal, cmd, caller)

    assert replayed.value.rejection["code"] == "merge_not_undoable"
    assert "MergeUndone" not in _names(loyal, b)


def test_a_merge_answer_names_the_merge_it_recorded(loyal: Tenant) -> None:
    survivor, source = _member(loyal), _member(loyal)

    answer = execute(loyal.app, MergeCustomers(survivor, source), _caller(loyal, keyed=True))

    record = loyal.app.repository.get(merge_id_of(answer))
    assert (record.survivor_id, record.source_id) == (survivor, source)
    assert answer.body["moved"] == {
        "identity_claim": 1,
        "points_account": 2,  # one per point type, each closed
        "points_account_in": 2,
    }
