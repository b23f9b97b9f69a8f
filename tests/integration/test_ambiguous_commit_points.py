"""A connection lost around COMMIT, for every points command (reliability cases C5, C7).

After COMMIT the command has happened: the kernel finds that out (through the idempotency key
completed in the same transaction, or by reading back its first event) and answers what it
decided, once, instead of running again into "already used". Before COMMIT nothing happened:
the kernel runs it again and it happens once. Either way: one effect, and a client's retry with
the same client id answers the first answer again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from application.errors import RejectionReplayed
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.loaders import points_account
from application.points.commands import (
    AdjustPoints,
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from application.program import define_program
from domain.errors import InsufficientPoints
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import lost_after_commit, lost_before_commit
from tests.integration.points_support import PROGRAM, customer, earn, now, run

Setup = Callable[[Tenant, UUID], Command]


def _redeem(tenant: Tenant, cid: UUID) -> Command:
    return RedeemPoints(cid, "points", "r-1", 300, "gift")


def _adjust_up(tenant: Tenant, cid: UUID) -> Command:
    return AdjustPoints(cid, "points", "a-1", 250, "goodwill")


def _adjust_down(tenant: Tenant, cid: UUID) -> Command:
    return AdjustPoints(cid, "points", "a-2", -250, "correction")


def _hold(tenant: Tenant, cid: UUID) -> Command:
    return HoldPoints(cid, "points", "h-1", 400, ttl_seconds=600)


def _capture(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, HoldPoints(cid, "points", "h-2", 400, ttl_seconds=600))
    return CaptureHold(cid, "points", "h-2")


def _release(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, HoldPoints(cid, "points", "h-3", 400, ttl_seconds=600))
    return ReleaseHold(cid, "points", "h-3")


def _reverse(tenant: Tenant, cid: UUID) -> Command:
    run(tenant, RedeemPoints(cid, "points", "r-2", 500))
    return ReverseRedemption(cid, "points", "r-2", "rv-1", 200)


COMMANDS: dict[str, Setup] = {
    "RedeemPoints": _redeem,
    "AdjustPoints up": _adjust_up,
    "AdjustPoints down": _adjust_down,
    "HoldPoints": _hold,
    "CaptureHold": _capture,
    "ReleaseHold": _release,
    "ReverseRedemption": _reverse,
}


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    # One instant for the twin and the faulted run: their answers are compared whole.
    at = now()
    tenant.app.clock = lambda: at  # type: ignore[method-assign]
    return tenant


def _member(tenant: Tenant) -> UUID:
    cid = customer(tenant)
    earn(tenant, cid, "start", 1000, at=tenant.app.clock() - timedelta(days=1), expires_at=None)
    return cid


def _ledger(tenant: Tenant, cid: UUID) -> list[Any]:
    account = points_account(tenant.app, cid, "points")
    assert account is not None
    return [type(e).__name__ for e in tenant.app.events.get(account.id)]


def _caller(tenant: Tenant, keyed: bool) -> Caller:
    return Caller("t", tenant.slug, tenant.idempotency if keyed else None)


def _twin(tenant: Tenant, setup: Setup) -> tuple[list[Any], Answer]:
    """The same command on a member of its own, with no fault: what one effect looks like."""
    cid = _member(tenant)
    cmd = setup(tenant, cid)
    answer = execute(tenant.app, cmd, _caller(tenant, keyed=False))
    return _ledger(tenant, cid), answer


def _key(cmd: Command) -> str | None:
    return None if cmd.client_id else "client-key-1"


@pytest.mark.parametrize("keyed", [True, False], ids=["with key", "without key"])
@pytest.mark.parametrize("fault", [lost_after_commit, lost_before_commit], ids=["after", "before"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    loyal: Tenant, name: str, fault: Any, keyed: bool
) -> None:
    setup = COMMANDS[name]
    twin_ledger, twin_answer = _twin(loyal, setup)
    cid = _member(loyal)
    cmd = setup(loyal, cid)
    caller = _caller(loyal, keyed)

    with fault(loyal.app) as fired:
        answer = execute(loyal.app, cmd, caller, client_id=_key(cmd))

    assert fired, "the fault was not injected"
    assert _ledger(loyal, cid) == twin_ledger
    assert answer.outcome is twin_answer.outcome
    same = {"customer_id", "lots"}
    assert {k: v for k, v in answer.body.items() if k not in same} == {
        k: v for k, v in twin_answer.body.items() if k not in same
    }
    assert answer.position > 0
    if keyed:
        again = execute(loyal.app, cmd, caller, client_id=_key(cmd))
        assert again.outcome is Outcome.REPLAYED
        assert again.body == answer.body
        assert again.position == answer.position
        assert _ledger(loyal, cid) == twin_ledger


def test_a_repeated_redemption_id_with_the_same_request_is_answered_again_not_refused(
    loyal: Tenant,
) -> None:
    cid = _member(loyal)
    first = run(loyal, RedeemPoints(cid, "points", "r-9", 300))

    again = run(loyal, RedeemPoints(cid, "points", "r-9", 300))

    assert first.outcome is Outcome.CREATED
    assert again.outcome is Outcome.DONE
    assert again.body["lots"] == first.body["lots"]
    assert _ledger(loyal, cid).count("Redeemed") == 1


def test_a_rejected_redemption_replays_its_rejection_after_a_top_up(loyal: Tenant) -> None:
    cid = _member(loyal)
    caller = _caller(loyal, keyed=True)
    cmd = RedeemPoints(cid, "points", "r-big", 5000)
    with pytest.raises(InsufficientPoints):
        execute(loyal.app, cmd, caller)
    run(loyal, AdjustPoints(cid, "points", "top-up", 9000, "top up"))

    with pytest.raises(RejectionReplayed) as replayed:
        execute(loyal.app, cmd, caller)

    assert replayed.value.rejection["code"] == "insufficient_points"
    assert replayed.value.rejection["available"] == 1000
    assert "Redeemed" not in _ledger(loyal, cid)
