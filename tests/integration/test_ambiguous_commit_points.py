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

from application.kernel import Command, Outcome
from application.loaders import points_account
from application.points.commands import (
    AdjustPoints,
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from domain.errors import InsufficientPoints
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import (
    FAULTS,
    KEYED,
    Attempt,
    Fault,
    check_against_twin,
    names,
    pinned,
    rejection_replayed,
)
from tests.integration.points_support import PROGRAM, customer, earn, run

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
    return pinned(tenant, PROGRAM)


def _member(tenant: Tenant) -> UUID:
    cid = customer(tenant)
    earn(tenant, cid, "start", 1000, at=tenant.app.clock() - timedelta(days=1), expires_at=None)
    return cid


def _ledger(tenant: Tenant, cid: UUID) -> list[str]:
    account = points_account(tenant.app, cid, "points")
    assert account is not None
    return names(tenant.app, account.id)


def _attempt(tenant: Tenant, setup: Setup) -> Attempt:
    """The command on a member of its own, and its account's ledger."""
    cid = _member(tenant)
    return setup(tenant, cid), lambda: _ledger(tenant, cid)


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in {"customer_id", "lots"}}


@KEYED
@FAULTS
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    loyal: Tenant, name: str, fault: Fault, keyed: bool
) -> None:
    check_against_twin(loyal, fault, keyed, lambda: _attempt(loyal, COMMANDS[name]), _without_ids)


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
    cmd = RedeemPoints(cid, "points", "r-big", 5000)

    rejection = rejection_replayed(
        loyal,
        cmd,
        InsufficientPoints,
        then=lambda: run(loyal, AdjustPoints(cid, "points", "top-up", 9000, "top up")),
    )

    assert rejection["code"] == "insufficient_points"
    assert rejection["available"] == 1000
    assert "Redeemed" not in _ledger(loyal, cid)
