"""Batches of orders: rounds of independent orders, each round one kernel command
(``PlaceOrders``) decided on one bulk read and saved in one transaction.

Items sharing an order, a customer id or an identity go to later rounds, in request order, so
one round never writes one aggregate twice. Batches of one tenant in this process take turns by
round (``Membercore.batch_rounds``) instead of racing for the same buyers' streams. An order of
a round that finds its reads stale (placed or merged by a concurrent writer) is placed alone
after the round; a round that keeps meeting concurrent writers is split in halves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import Aggregate

from application.app import Membercore
from application.context import CommandContext
from application.errors import ConcurrencyConflict
from application.kernel import Caller, Decision, Outcome, execute, handles
from application.orders.commands import PlaceOrder, PlaceOrders
from application.orders.reads import order_request, read_orders
from application.program import program_view
from domain.errors import DomainError
from domain.ordering import OrderRequest, Placed, Raced, Replayed, decide_order


@dataclass(frozen=True)
class BatchItem:
    """One order's answer in a batch: its outcome and body, or the error that refused it (a
    ``DomainError``, or the failure of its whole round)."""

    order_id: str
    outcome: Outcome | None = None
    body: dict[str, Any] | None = None
    error: Exception | None = None


def _keys(cmd: PlaceOrder) -> list[str]:
    keys = [f"order:{cmd.channel}\n{cmd.order_id}"]
    if cmd.customer_id is not None:
        keys.append(f"customer:{cmd.customer_id}")
    if cmd.identity is not None:
        keys.append(f"identity:{cmd.identity[0]}\n{cmd.identity[1]}")
    return keys


def rounds_of(cmds: Sequence[PlaceOrder]) -> list[list[int]]:
    """Item indexes in rounds: items sharing an order, customer id or identity go to later
    rounds, in request order, so one round never writes one aggregate twice."""
    last: dict[str, int] = {}
    rounds: list[list[int]] = []
    for n, cmd in enumerate(cmds):
        keys = _keys(cmd)
        r = 1 + max((last.get(k, -1) for k in keys), default=-1)
        for k in keys:
            last[k] = r
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(n)
    return rounds


@handles(PlaceOrders)
def decide_round(app: Membercore, cmd: PlaceOrders, ctx: CommandContext) -> Decision:
    """Done: ``body["items"]`` holds a ``BatchItem`` per order, ``body["raced"]`` the indexes
    of orders to place alone."""
    at = app.clock()
    view = program_view(app)
    items: list[BatchItem | None] = [None] * len(cmd.orders)
    requests: list[tuple[int, OrderRequest]] = []
    for n, order in enumerate(cmd.orders):
        try:
            requests.append((n, order_request(app, order, view)))
        except DomainError as e:
            items[n] = BatchItem(order.order_id, error=e)
    known = read_orders(app, [r for _, r in requests], view)
    changed: dict[int, Aggregate] = {}
    new_customers = []
    replayed = []
    raced: list[int] = []
    for n, request in requests:
        try:
            decided = decide_order(request, known, view.loyalty_at(request.placed_at), at)
        except DomainError as e:
            items[n] = BatchItem(request.order_id, error=e)
            continue
        if isinstance(decided, Raced):
            raced.append(n)
        elif isinstance(decided, Replayed):
            replayed.append(decided.order.id)
            items[n] = BatchItem(request.order_id, Outcome.DONE, decided.outcome)
        else:
            assert isinstance(decided, Placed)
            changed.update((id(a), a) for a in decided.changed)
            if decided.new_customer is not None:
                new_customers.append(decided.new_customer)
            items[n] = BatchItem(request.order_id, Outcome.CREATED, decided.outcome)
    # The new buyers' data keys in one round trip, instead of one by one while saving.
    app.ensure_keys(new_customers)
    # Nothing to save: the round answers at the last of the orders it replayed.
    position = None if changed else max(map(app.last_position_of, replayed), default=0)
    body = {"items": items, "raced": raced}
    return Decision(Outcome.DONE, body, save=tuple(changed.values()), position=position)


def place_orders(
    app: Membercore, cmds: Sequence[PlaceOrder], caller: Caller
) -> tuple[list[BatchItem], int]:
    """Place a batch round by round: an item per order, in order, and the last position
    written (0: none). A round that fails (the database, a bug) answers its orders and the
    later rounds' with that error; the rounds before it are committed and answered as such
    (sending the batch again is safe: each order is its own receipt)."""
    items: list[BatchItem | None] = [None] * len(cmds)
    position = 0
    rounds = rounds_of(cmds)
    for done, round_ in enumerate(rounds):
        try:
            placed, at = place_round(app, [cmds[n] for n in round_], caller)
        except Exception as e:  # the answer of every order not placed
            for later in rounds[done:]:
                for n in later:
                    items[n] = BatchItem(cmds[n].order_id, error=e)
            break
        position = max(position, at)
        for n, item in zip(round_, placed, strict=True):
            items[n] = item
    return [item for item in items if item is not None], position


def place_round(
    app: Membercore, cmds: Sequence[PlaceOrder], caller: Caller
) -> tuple[list[BatchItem], int]:
    """Place one round (orders from ``rounds_of``): its items, and the last position written."""
    with app.batch_rounds:
        return _place(app, list(cmds), caller)


def _place(app: Membercore, cmds: list[PlaceOrder], caller: Caller) -> tuple[list[BatchItem], int]:
    if len(cmds) == 1:
        return _alone(app, cmds, caller)
    try:
        answer = execute(app, PlaceOrders(tuple(cmds)), caller)
    except ConcurrencyConflict:
        half = len(cmds) // 2
        first, p1 = _place(app, cmds[:half], caller)
        second, p2 = _place(app, cmds[half:], caller)
        return first + second, max(p1, p2)
    items: list[BatchItem] = list(answer.body["items"])
    position = answer.position
    raced: list[int] = answer.body["raced"]
    if raced:
        alone, at = _alone(app, [cmds[n] for n in raced], caller)
        for n, item in zip(raced, alone, strict=True):
            items[n] = item
        position = max(position, at)
    return items, position


def _alone(app: Membercore, cmds: list[PlaceOrder], caller: Caller) -> tuple[list[BatchItem], int]:
    items: list[BatchItem] = []
    position = 0
    for cmd in cmds:
        try:
            answer = execute(app, cmd, caller)
        except (DomainError, ConcurrencyConflict) as e:
            items.append(BatchItem(cmd.order_id, error=e))
            continue
        items.append(BatchItem(cmd.order_id, answer.outcome, answer.body))
        position = max(position, answer.position)
    return items, position
