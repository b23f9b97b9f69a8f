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
from uuid import uuid4

import pytest

from application.kernel import Answer, Caller, Command, Outcome, execute
from application.orders import PlaceOrder, RefundOrder, place_orders
from domain.errors import RefundExceedsOrder
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import FAULTS, Fault, event_count, injected, pinned, written
from tests.integration.points_support import PROGRAM, customer

CALLER = Caller("t")


@pytest.fixture
def loyal(tenant: Tenant) -> Tenant:
    return pinned(tenant, PROGRAM)


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


def _against_twin(
    tenant: Tenant, fault: Fault, twin_cmd: Command, cmd: Command
) -> tuple[Answer, Answer]:
    """``cmd`` with a connection lost at its COMMIT, after its twin without: it writes the events
    of the clean run and is created; the same command again is done with the first answer and
    writes nothing. The twin's answer and the faulted run's."""
    app = tenant.app
    twin_written, twin = written(app, lambda: execute(app, twin_cmd, CALLER))

    count, answer = injected(fault, app, lambda: written(app, lambda: execute(app, cmd, CALLER)))

    assert count == twin_written
    assert answer.outcome is Outcome.CREATED
    again_written, again = written(app, lambda: execute(app, cmd, CALLER))
    assert again_written == 0
    assert (again.outcome, again.body, again.position) == (
        Outcome.DONE,
        answer.body,
        answer.position,
    )
    return twin, answer


@FAULTS
@pytest.mark.parametrize("kind", list(ORDERS))
def test_an_order_whose_connection_is_lost_at_commit_is_placed_once_with_the_first_answer(
    loyal: Tenant, kind: str, fault: Fault
) -> None:
    twin_cmd, cmd = ORDERS[kind](loyal), ORDERS[kind](loyal)

    twin, answer = _against_twin(loyal, fault, twin_cmd, cmd)

    assert answer.body["points"] == twin.body["points"]
    assert answer.position == event_count(loyal.app)


@FAULTS
def test_a_batch_round_whose_connection_is_lost_at_commit_places_each_order_once(
    loyal: Tenant, fault: Fault
) -> None:
    def batch() -> list[PlaceOrder]:
        return [_by_customer(loyal), _new_buyer(loyal), _by_customer(loyal)]

    app = loyal.app
    twin_cmds, cmds = batch(), batch()
    twin_written, _ = written(app, lambda: place_orders(app, twin_cmds, CALLER))

    count, (items, position) = injected(
        fault, app, lambda: written(app, lambda: place_orders(app, cmds, CALLER))
    )

    assert count == twin_written
    assert [i.outcome for i in items] == [Outcome.CREATED] * 3
    assert position == event_count(app)
    again_written, (again, again_position) = written(app, lambda: place_orders(app, cmds, CALLER))
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
    loyal: Tenant, fault: Fault
) -> None:
    twin_cmd = RefundOrder("pos", _placed(loyal).order_id, "rf-1", amount=5000)
    cmd = RefundOrder("pos", _placed(loyal).order_id, "rf-1", amount=5000)

    twin, answer = _against_twin(loyal, fault, twin_cmd, cmd)

    assert answer.body["points"] == twin.body["points"]
    assert answer.body["refunded_total"] == 5000


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
