"""Orders from every channel: ``POST /v1/orders``, ``/v1/orders/batch`` and refunds.

The order is its own idempotency receipt (keyed by ``(channel, order_id)``), so these routes do
not go through the generic client-id store: a replay is answered from the order's stored outcome
(the command answers ``DONE`` only for a replay, sent as 200 with ``Idempotent-Replayed``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

import msgspec
import psycopg
import structlog
from eventsourcing import persistence
from litestar import Controller, Request, Response, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta, Struct

from api.auth import principal_of, tenant_of
from api.commands import CLIENT_ID, respond
from api.errors import PROBLEM_JSON, bad_request, problem_body, problem_for
from api.inputs import nul_path, validation_problem
from api.schemas import ClientId, IdentityIn, Strict, problem_responses
from application.errors import ApplicationError
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.orders import BatchItem, OrderLineInput, PlaceOrder, RefundOrder, place_orders
from application.permissions import Permission
from domain.errors import DomainError

# Amounts are minor units: 10^15 is far above any order and far below bigint and 2^53.
Amount = Annotated[int, Meta(ge=0, le=10**15, examples=[12900])]
PositiveAmount = Annotated[int, Meta(ge=1, le=10**15, examples=[100])]
Channel = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$", examples=["tmall"])]
Ref = Annotated[str, Meta(min_length=1, max_length=128)]
MAX_BATCH = 1000

log = structlog.get_logger(__name__)


class OrderLineIn(Strict):
    line_id: ClientId
    sku: Annotated[str, Meta(min_length=1, max_length=128)]
    quantity: Annotated[int, Meta(ge=1, le=10**9)]
    amount: Amount
    category: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class OrderIn(Strict):
    order_id: ClientId
    channel: Channel
    placed_at: datetime
    amount: Amount
    customer_id: UUID | None = None
    identity: IdentityIn | None = None
    lines: Annotated[list[OrderLineIn], Meta(max_length=500)] | None = None
    store_id: Ref | None = None
    staff_id: Ref | None = None
    agent_id: Ref | None = None


class OrderBatchIn(Strict):
    # Items are checked one by one, so one malformed order fails alone (400 in its result).
    checks_items: ClassVar[bool] = True
    orders: Annotated[list[Any], Meta(min_length=1, max_length=MAX_BATCH)]


class RefundLineIn(Strict):
    line_id: ClientId
    amount: PositiveAmount


class RefundIn(Strict):
    refund_id: ClientId
    amount: PositiveAmount | None = None
    lines: Annotated[list[RefundLineIn], Meta(min_length=1, max_length=500)] | None = None


class PointsEarned(Struct):
    point_type: str
    earned: int


class OrderPlaced(Struct):
    order_id: str
    customer_id: str
    points: list[PointsEarned]
    levels: list[dict[str, Any]]
    commissions: list[dict[str, Any]]
    position: int


class BatchResult(Struct, omit_defaults=True):
    order_id: str
    status: int
    customer_id: str | None = None
    error: dict[str, Any] | None = None


class BatchPlaced(Struct):
    results: list[BatchResult]
    position: int


class OrderRefunded(Struct):
    refund_id: str
    order_id: str
    channel: str
    customer_id: str
    amount: int
    lines: list[dict[str, Any]]
    refunded_total: int
    points: list[dict[str, Any]]
    levels: list[dict[str, Any]]
    commissions: list[dict[str, Any]]
    position: int


def command_of(data: OrderIn) -> PlaceOrder:
    return PlaceOrder(
        order_id=data.order_id,
        channel=data.channel,
        placed_at=data.placed_at,
        amount=data.amount,
        customer_id=data.customer_id,
        identity=(data.identity.type, data.identity.value) if data.identity else None,
        lines=[
            OrderLineInput(ln.line_id, ln.sku, ln.quantity, ln.amount, ln.category)
            for ln in data.lines
        ]
        if data.lines is not None
        else None,
        store_id=data.store_id,
        staff_id=data.staff_id,
        agent_id=data.agent_id,
    )


def _caller(request: Request[Any, Any, Any]) -> Caller:
    tenant = tenant_of(request)
    return Caller(principal_of(request).key_id, tenant.slug)


def _run(request: Request[Any, Any, Any], command: Command) -> Response[Any]:
    answer = execute(tenant_of(request).app, command, _caller(request))
    return respond(_replayed(answer))


def _replayed(answer: Answer) -> Answer:
    # An order (and a refund) is its own receipt: done, it is the answer stored before.
    if answer.outcome is Outcome.DONE:
        return replace(answer, outcome=Outcome.REPLAYED)
    return answer


def _item(raw: Any) -> tuple[str, PlaceOrder | dict[str, Any]]:
    """One batch item as a command, or the problem that makes it a 400."""
    order_id = raw.get("order_id") if isinstance(raw, dict) else None
    label = order_id if isinstance(order_id, str) and CLIENT_ID.match(order_id) else ""
    nul = nul_path(raw)
    if nul is not None:
        return label, problem_body(400, "invalid_value", f"{nul} must not contain NUL", field=nul)
    try:
        return label, command_of(msgspec.convert(raw, OrderIn, strict=True))
    except msgspec.ValidationError as e:
        return label, validation_problem(e)
    except DomainError as e:  # a rule the command checks without reading (its lines)
        return label, problem_for(e)


def _failure_problem(e: Exception, logged: set[int]) -> dict[str, Any]:
    """The problem of an order a failed round did not place (each failure logged once)."""
    if isinstance(e, DomainError | ApplicationError):
        return problem_for(e)
    first = id(e) not in logged
    logged.add(id(e))
    if isinstance(e, psycopg.Error | persistence.PersistenceError):
        if first:
            log.warning("batch_round_unavailable", exc_info=e)
        return problem_body(
            503, "service_unavailable", "not placed: the database failed; retry this order"
        )
    if first:
        log.error("batch_round_failed", exc_info=e)
    return problem_body(500, "internal_error", "not placed: an unexpected error occurred")


STATUS_OF = {Outcome.CREATED: 201, Outcome.DONE: 200}


def _result_of(item: BatchItem, logged: set[int]) -> BatchResult:
    if item.error is not None:
        problem = _failure_problem(item.error, logged)
        return BatchResult(item.order_id, problem["status"], error=problem)
    body = item.body or {}
    status = STATUS_OF.get(item.outcome or Outcome.DONE, 200)
    return BatchResult(item.order_id, status, customer_id=body.get("customer_id"))


ORDER_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 503)


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post(
        "/",
        operation_id="PlaceOrder",
        opt={"permission": Permission.ORDERS_WRITE},
        sync_to_thread=True,
        status_code=201,
        responses=ORDER_ERRORS,
        summary="Place an order: earn points, move levels (idempotent by channel and order_id)",
    )
    def place(
        self, request: Request[Any, Any, Any], data: JSONBody[OrderIn]
    ) -> Response[OrderPlaced]:
        return _run(request, command_of(data))

    @post(
        "/batch",
        operation_id="PlaceOrders",
        opt={"permission": Permission.ORDERS_WRITE},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 413, 503),
        summary="Place up to 1000 orders; each succeeds or fails on its own",
    )
    def batch(
        self, request: Request[Any, Any, Any], data: JSONBody[OrderBatchIn]
    ) -> Response[BatchPlaced]:
        parsed = [_item(raw) for raw in data.orders]
        results: list[BatchResult] = [
            BatchResult(label, 400, error=c if isinstance(c, dict) else None) for label, c in parsed
        ]
        commands = [(n, c) for n, (_, c) in enumerate(parsed) if isinstance(c, PlaceOrder)]
        placed, position = place_orders(
            tenant_of(request).app, [c for _, c in commands], _caller(request)
        )
        logged: set[int] = set()
        for (n, _), item in zip(commands, placed, strict=True):
            results[n] = _result_of(item, logged)
        body = BatchPlaced(results, position)
        return Response(msgspec.json.encode(body), status_code=200, media_type="application/json")

    @post(
        "/{channel:str}/{order_id:str}/refunds",
        operation_id="RefundOrder",
        opt={"permission": Permission.ORDERS_REFUND},
        sync_to_thread=True,
        status_code=201,
        responses=ORDER_ERRORS,
        summary="Refund part of an order by amount or by lines; reverses what that part earned",
    )
    def refund(
        self,
        request: Request[Any, Any, Any],
        channel: FromPath[str],
        order_id: FromPath[str],
        data: JSONBody[RefundIn],
    ) -> Response[OrderRefunded]:
        if not CLIENT_ID.match(order_id) or not CLIENT_ID.match(channel):
            raise bad_request("invalid_parameter", "channel and order_id must be client ids")
        lines = None
        if data.lines is not None:
            ids = [ln.line_id for ln in data.lines]
            if len(set(ids)) != len(ids):
                raise bad_request("invalid_value", "a line is named twice", field="lines")
            lines = {ln.line_id: ln.amount for ln in data.lines}
        cmd = RefundOrder(channel, order_id, data.refund_id, amount=data.amount, lines=lines)
        return _run(request, cmd)


__all__ = ["PROBLEM_JSON", "OrderController"]
