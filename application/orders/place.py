"""PlaceOrder: read (in bulk), let ``domain.ordering.decide_order`` decide, and hand the kernel
what to save. An order's effects (a buyer it registers, points, levels, the order) commit in
one transaction; its id derives from ``(channel, order_id)``, so the same order again finds
it and answers its stored outcome.
"""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.context import CommandContext
from application.kernel import Decision, Outcome, handles
from application.orders.commands import PlaceOrder
from application.orders.reads import order_request, read_orders
from application.program import program_view
from domain.ordering import OrderDecision, Placed, Raced, Replayed, decide_order


def decision_of(decided: OrderDecision) -> Decision:
    """The kernel's decision for the domain's (``Raced``: read again and decide again)."""
    if isinstance(decided, Raced):
        raise IntegrityError(decided.reason)
    if isinstance(decided, Replayed):
        return Decision(Outcome.DONE, decided.outcome, position_of=decided.order.id)
    assert isinstance(decided, Placed)
    return Decision(Outcome.CREATED, decided.outcome, save=decided.changed)


@handles(PlaceOrder)
def place_order(app: Membercore, cmd: PlaceOrder, ctx: CommandContext) -> Decision:
    """Created (201) with what the order earned and the levels it moved; done (200) for the
    same order again."""
    view = program_view(app)
    request = order_request(app, cmd, view)
    known = read_orders(app, [request], view)
    return decision_of(decide_order(request, known, view.loyalty_at(cmd.placed_at), app.clock()))
