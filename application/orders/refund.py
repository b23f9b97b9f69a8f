"""RefundOrder: read the order, its buyer (following merges) and what the refund may change,
let ``domain.refunding.decide_refund`` decide, and hand the kernel what to save.
"""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError

from application.app import Membercore
from application.context import CommandContext
from application.kernel import Decision, Outcome, handles
from application.loaders import optional
from application.orders.commands import RefundOrder
from application.orders.reads import read_refund, refund_request
from application.program import loyalty_rules
from domain.errors import OrderNotFound
from domain.order import Order
from domain.ordering import Raced, Replayed
from domain.refunding import Refunded, decide_refund


@handles(RefundOrder)
def refund_order(app: Membercore, cmd: RefundOrder, ctx: CommandContext) -> Decision:
    """Created (201) with what the refund reversed; done (200) for the same refund again; 404
    ``order_not_found``, 409 ``refund_exceeds_order``, 422 for its ``refund_id`` reused."""
    request = refund_request(cmd)
    order = optional(app, Order.id_for(cmd.channel, cmd.order_id), Order)
    if order is None:
        raise OrderNotFound(cmd.channel, cmd.order_id)
    rules = loyalty_rules(app, order.placed_at)
    known = read_refund(app, order, rules.level_groups)
    decided = decide_refund(order, request, known, rules, app.clock())
    if isinstance(decided, Raced):
        raise IntegrityError(decided.reason)
    if isinstance(decided, Replayed):
        return Decision(Outcome.DONE, decided.outcome, position_of=order.id)
    assert isinstance(decided, Refunded)
    return Decision(Outcome.CREATED, decided.outcome, save=decided.changed)
