"""The order commands' handlers on the kernel's in-memory ports (no PostgreSQL): what placing,
a batch round and a refund decide, save and answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from application.kernel import Answer, Caller, Command, Outcome, execute
from application.orders import PlaceOrder, RefundOrder, place_orders
from application.program import define_program
from domain.errors import (
    ClientIdReused,
    CustomerNotFound,
    IdentityConflict,
    InvalidInput,
    OrderNotFound,
)
from domain.identity_claim import IdentityClaim
from domain.order import Order
from domain.points_account import PointsAccount
from domain.values import Identity
from infrastructure.memory import InMemoryMembercore
from tests.integration.test_orders import PROGRAM

AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
PLACED = AT - timedelta(minutes=1)
CALLER = Caller("t")


@pytest.fixture
def app() -> InMemoryMembercore:
    app = InMemoryMembercore(now=AT)
    define_program(app, PROGRAM, "t")
    return app


def run(app: InMemoryMembercore, command: Command) -> Answer:
    return execute(app, command, CALLER)


def head(app: InMemoryMembercore) -> int:
    return int(app.recorder.max_notification_id() or 0)


def by_identity(order_id: str, value: str = "m1", amount: int = 2933) -> PlaceOrder:
    return PlaceOrder(order_id, "pos", PLACED, amount, identity=("pos_member_no", value))


def test_an_order_for_an_unknown_identity_registers_its_buyer_and_earns(
    app: InMemoryMembercore,
) -> None:
    answer = run(app, by_identity("o1"))

    assert answer.outcome is Outcome.CREATED
    assert answer.body["points"] == [
        {"point_type": "points", "earned": 29},
        {"point_type": "growth", "earned": 29},
    ]
    assert answer.body["levels"] == [{"group": "consumer", "from": None, "to": "normal"}]
    assert answer.position == head(app)
    account = app.repository.get(PointsAccount.id_for(UUID(answer.body["customer_id"]), "points"))
    assert account.available(AT) == 29


def test_the_same_order_again_is_done_with_the_first_answer_and_writes_nothing(
    app: InMemoryMembercore,
) -> None:
    first = run(app, by_identity("o1"))
    written = head(app)

    again = run(app, by_identity("o1"))

    assert again.outcome is Outcome.DONE
    assert (again.body, again.position) == (first.body, first.position)
    assert head(app) == written


def test_the_same_order_id_with_another_request_is_refused_as_reused(
    app: InMemoryMembercore,
) -> None:
    run(app, by_identity("o1"))
    with pytest.raises(ClientIdReused):
        run(app, by_identity("o1", amount=1))


def test_a_second_order_of_the_identity_goes_to_the_buyer_the_first_registered(
    app: InMemoryMembercore,
) -> None:
    first = run(app, by_identity("o1"))
    second = run(app, by_identity("o2"))
    assert second.body["customer_id"] == first.body["customer_id"]


def test_checks_that_need_no_state_refuse_the_command_before_anything_runs() -> None:
    with pytest.raises(InvalidInput):
        PlaceOrder("o1", "pos", PLACED, 100)  # neither customer_id nor identity
    with pytest.raises(InvalidInput):
        RefundOrder("pos", "o1", "r1")  # neither amount nor lines


def test_an_order_placed_in_the_future_and_one_for_no_customer_are_refused(
    app: InMemoryMembercore,
) -> None:
    with pytest.raises(InvalidInput):
        run(app, PlaceOrder("o1", "pos", AT + timedelta(hours=1), 100, identity=("jd_pin", "j")))
    with pytest.raises(CustomerNotFound):
        run(app, PlaceOrder("o2", "pos", PLACED, 100, UUID(int=7)))
    assert head(app) == 1  # the program alone


def test_a_batch_round_answers_each_order_and_saves_the_round_once(
    app: InMemoryMembercore,
) -> None:
    run(app, by_identity("o0", "m0"))
    written = head(app)
    cmds = [by_identity("o0", "m0"), by_identity("o1", "m1"), by_identity("o2", "m2")]
    cmds.append(PlaceOrder("o3", "pos", PLACED, 100, UUID(int=7)))

    items, position = place_orders(app, cmds, CALLER)

    assert [i.outcome for i in items] == [Outcome.DONE, Outcome.CREATED, Outcome.CREATED, None]
    assert isinstance(items[3].error, CustomerNotFound)
    assert position == head(app) > written
    assert [type(e).__name__ for e in app.events.get(Order.id_for("pos", "o1"))] == ["Placed"]


def test_a_refund_reverses_what_its_part_earned_and_again_is_done(
    app: InMemoryMembercore,
) -> None:
    placed = run(app, by_identity("o1", amount=10_000))
    account_id = PointsAccount.id_for(UUID(placed.body["customer_id"]), "points")

    refunded = run(app, RefundOrder("pos", "o1", "r1", amount=2_500))
    written = head(app)
    again = run(app, RefundOrder("pos", "o1", "r1", amount=2_500))

    assert refunded.outcome is Outcome.CREATED
    assert refunded.body["points"][0]["reversed"] == 25
    assert app.repository.get(account_id).available(AT) == 75
    assert (again.outcome, again.body) == (Outcome.DONE, refunded.body)
    assert head(app) == written
    with pytest.raises(ClientIdReused):
        run(app, RefundOrder("pos", "o1", "r1", amount=1))
    with pytest.raises(OrderNotFound):
        run(app, RefundOrder("pos", "nope", "r1", amount=1))


def test_an_identity_held_by_two_customers_places_no_order(app: InMemoryMembercore) -> None:
    identity = Identity("pos_member_no", "shared")
    claim = IdentityClaim.claim(identity, UUID(int=1), claim_id=app.claim_id(identity), at=AT)
    assert claim.add_holder(UUID(int=2), limit=2, at=AT)
    app.save(claim)
    written = head(app)

    with pytest.raises(IdentityConflict):
        run(app, by_identity("o1", "shared"))
    assert head(app) == written
