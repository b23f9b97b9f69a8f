"""Orders from every channel (docs/orders.md): an order earns points and moves levels; a refund
unwinds exactly what its part earned. One order's effects commit in one transaction.

- ``commands``: ``PlaceOrder``, ``PlaceOrders`` (a round of a batch), ``RefundOrder``.
- ``reads``: parsing an order once, and reading what its decision may touch, in bulk.
- ``place``, ``refund``: the handlers; ``domain.ordering`` and ``domain.refunding`` decide.
- ``batch``: rounds of a batch, each one transaction.

Orders are evaluated with the program version in force when they were placed; expiry and
levels use ``placed_at``, and every event also records when it was written.
"""

from application.orders.batch import BatchItem, place_orders, place_round, rounds_of
from application.orders.commands import OrderLineInput, PlaceOrder, PlaceOrders, RefundOrder

# The handlers register with the kernel when imported.
from application.orders.place import place_order
from application.orders.refund import refund_order

__all__ = [
    "BatchItem",
    "OrderLineInput",
    "PlaceOrder",
    "PlaceOrders",
    "RefundOrder",
    "place_order",
    "place_orders",
    "place_round",
    "refund_order",
    "rounds_of",
]
