"""A connection lost around COMMIT, for PlaceOrder, a batch round (PlaceOrders) and RefundOrder
(reliability cases C5, C7).

An order and a refund are their own receipts (no idempotency key): after COMMIT the kernel reads
back the first event it tried to store, finds it, and answers what it decided instead of
deciding again (which would answer a replay). Before COMMIT nothing happened: it decides again
and it happens once. Either way: the events of one clean run, the first answer, and the client's
retry of the same order or refund answers it again (done) with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from application.kernel import Caller, Outcome, execute
from application.orders import PlaceOrder, RefundOrder, place_orders
from application.program import define_program
from domain.errors import RefundExceedsOrder
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import event_count, lost_after_commit, lost_before_commit
from tests.integration.points_support import PROGRAM, customer, now

CALLER = Caller("t")
FAULTS = pytest.mark.parametrize(
    "fault", [lost_after_commit, lost_before_commit], ids=["after", "before"]
)


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    define_program(tenant.app, PROGRAM, "t")
    at = now()
    tenant.app.clock = lambda: at  # type: ignore[method-assign]
    return tenant


def _by_customer(tenant: Tenant) -> PlaceOrder:
    placed = tenant.app.clock() - timedelta(minutes=1)
    return PlaceOrder(f"o-{uuid4().hex[:10]}", "pos", placed, 12_345, customer(tenant))


def _new_buyer(tenant: Tenant) -> PlaceOrder:
    placed = tenant.app.clock() - timedelta(minutes=1)
    who = ("pos_member_no", f"m-{uuid4().hex[:10]}")
    return PlaceOrder(f"o-{uuid4().hex[:10]}", "pos", placed, 12_345, identity=who)


ORDERS: dict[str, Callable[[Tenant], PlaceOrder]] = {
    "returning buyer": _by_customer,
    "buyer registered by the order": _new_buyer,
}


def _written(tenant: Tenant, run: Callable[[], Any]) -> tuple[int, Any]:
    """The events ``run`` wrote, and what it answered."""
    before = event_count(tenant.app)
    answer = run()
    return event_count(tenant.app) - before, answer


@FAULTS
@pytest.mark.parametrize("kind", list(ORDERS))
def test_an_order_whose_connection_is_lost_at_commit_is_placed_once_with_the_first_answer(
    loyal: Tenant, kind: str, fault: Any
) -> None:
    app = loyal.app
    twin_cmd, cmd = ORDERS[kind](loyal), ORDERS[kind](loyal)
    twin_written, twin = _written(loyal, lambda: execute(app, twin_cmd, CALLER))

    with fault(app) as fired:
        written, answer = _written(loyal, lambda: execute(app, cmd, CALLER))

    assert fired, "the fault was not injected"
    assert written == twin_written
    assert answer.outcome is Outcome.CREATED
    assert answer.body["points"] == twin.body["points"]
    assert answer.position == event_count(loyal.app)
    again_written, again = _written(loyal, lambda: execute(app, cmd, CALLER))
    assert again_written == 0
    assert (again.outcome, again.body, again.position) == (
        Outcome.DONE,
        answer.body,
        answer.position,
    )


@FAULTS
def test_a_batch_round_whose_connection_is_lost_at_commit_places_each_order_once(
    loyal: Tenant, fault: Any
) -> None:
    def batch() -> list[PlaceOrder]:
        return [_by_customer(loyal), _new_buyer(loyal), _by_customer(loyal)]

    twin_cmds, cmds = batch(), batch()
    twin_written, _ = _written(loyal, lambda: place_orders(loyal.app, twin_cmds, CALLER))

    with fault(loyal.app) as fired:
        written, (items, position) = _written(loyal, lambda: place_orders(loyal.app, cmds, CALLER))

    assert fired, "the fault was not injected"
    assert written == twin_written
    assert [i.outcome for i in items] == [Outcome.CREATED] * 3
    assert position == event_count(loyal.app)
    again_written, (again, again_position) = _written(
        loyal, lambda: place_orders(loyal.app, cmds, CALLER)
    )
    assert again_written == 0
    assert [i.outcome for i in again] == [Outcome.DONE] * 3
    assert [i.body for i in again] == [i.body for i in items]
    assert again_position == position


def _placed(tenant: Tenant) -> PlaceOrder:
    cmd = _by_customer(tenant)
    execute(tenant.app, cmd, CALLER)
    return cmd


@FAULTS
def test_a_refund_whose_connection_is_lost_at_commit_applies_once_with_the_first_answer(
    loyal: Tenant, fault: Any
) -> None:
    app = loyal.app
    twin_cmd = RefundOrder("pos", _placed(loyal).order_id, "rf-1", amount=5000)
    cmd = RefundOrder("pos", _placed(loyal).order_id, "rf-1", amount=5000)
    twin_written, twin = _written(loyal, lambda: execute(app, twin_cmd, CALLER))

    with fault(app) as fired:
        written, answer = _written(loyal, lambda: execute(app, cmd, CALLER))

    assert fired, "the fault was not injected"
    assert written == twin_written
    assert answer.outcome is Outcome.CREATED
    assert answer.body["points"] == twin.body["points"]
    assert answer.body["refunded_total"] == 5000
    again_written, again = _written(loyal, lambda: execute(app, cmd, CALLER))
    assert again_written == 0
    assert (again.outcome, again.body, again.position) == (
        Outcome.DONE,
        answer.body,
        answer.position,
    )


def test_a_refused_refund_sent_again_is_refused_again_and_writes_nothing(loyal: Tenant) -> None:
    cmd = RefundOrder("pos", _placed(loyal).order_id, "rf-big", amount=99_999)
    before = event_count(loyal.app)
    refusals = []
    for _ in range(2):
        with pytest.raises(RefundExceedsOrder) as refused:
            execute(loyal.app, cmd, CALLER)
        refusals.append(refused.value.problem_fields())
    assert refusals == [{"requested": 99_999, "refundable": 12_345}] * 2
    assert event_count(loyal.app) == before
