"""Behaviours: record a batch (page views, product views, searches, carts, feedback) and read a
customer's behaviours and their summary. See docs/behaviors.md."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter

from api.auth import tenant_of
from api.behavior_schemas import (
    BehaviorOut,
    BehaviorPage,
    BehaviorResult,
    BehaviorsRecorded,
    BehaviorSummaryOut,
    ItemError,
    RecordBehaviorsBody,
    SkuViews,
)
from api.commands import customer_id_of, position_cursor
from api.errors import bad_request, not_found, problem_for
from api.schemas import problem_responses
from application.behaviors import (
    BEHAVIOR_TYPES,
    BehaviorInput,
    ItemResult,
    Outcome,
    RecordBehaviors,
    record_behaviors,
)
from application.instants import iso
from application.permissions import Permission
from infrastructure.behaviors import PostgresBehaviorStore
from projections import behaviors as reads

_STATUS = {Outcome.ACCEPTED: 201, Outcome.REPLAYED: 200}


def _result(item: ItemResult) -> BehaviorResult:
    if item.error is None:
        return BehaviorResult(event_id=item.event_id, status=_STATUS[item.outcome])
    problem = problem_for(item.error)
    return BehaviorResult(
        event_id=item.event_id,
        status=problem["status"],
        error=ItemError(code=problem["code"], detail=problem["detail"]),
    )


class BehaviorController(Controller):
    path = "/v1"
    tags = ["behaviors"]

    @post(
        "/behaviors",
        operation_id="RecordBehaviors",
        opt={"permission": Permission.BEHAVIORS_WRITE},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 413, 503),
        summary="Record up to 1000 behaviours, idempotent per event_id, with a result per item",
    )
    def record(
        self, request: Request[Any, Any, Any], data: JSONBody[RecordBehaviorsBody]
    ) -> Response[BehaviorsRecorded]:
        tenant = tenant_of(request)
        command = RecordBehaviors(
            [
                BehaviorInput(
                    event_id=b.event_id,
                    customer_id=b.customer_id,
                    type=b.type,
                    occurred_at=b.occurred_at,
                    data=b.data,
                    channel=b.channel,
                )
                for b in data.behaviors
            ]
        )
        recorded = record_behaviors(PostgresBehaviorStore(tenant.datastore), command)
        body = BehaviorsRecorded(
            results=[_result(r) for r in recorded.results],
            accepted=recorded.count(Outcome.ACCEPTED),
            replayed=recorded.count(Outcome.REPLAYED),
            rejected=recorded.count(Outcome.REJECTED),
        )
        return Response(body, status_code=200)

    @get(
        "/customers/{customer_id:str}/behaviors",
        operation_id="ListCustomerBehaviors",
        opt={"permission": Permission.CUSTOMERS_READ},
        responses=problem_responses(400, 401, 403, 404),
        summary="A customer's behaviours in position order",
    )
    async def list_behaviors(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        type_: Annotated[
            str | None, QueryParameter(name="type", description="only this behaviour type")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Parameter(description="next_cursor of the last page")] = None,
    ) -> Response[BehaviorPage]:
        cid = customer_id_of(customer_id)
        if type_ is not None and type_ not in BEHAVIOR_TYPES:
            raise bad_request(
                "invalid_parameter",
                f"type must be one of {', '.join(BEHAVIOR_TYPES)}",
                field="type",
            )
        after = position_cursor(cursor)
        schema = tenant_of(request).schema
        async with request.app.state.read_pool.connection() as conn:
            rows = await reads.customer_behaviors(
                conn, schema, cid, type_=type_, after=after, limit=limit
            )
            if not rows and not await reads.customer_exists(conn, schema, cid):
                raise not_found("customer_not_found", f"customer {customer_id} does not exist")
        page = BehaviorPage(
            items=[
                BehaviorOut(
                    position=r.position,
                    event_id=r.event_id,
                    type=r.type,
                    occurred_at=r.occurred_at.isoformat(),
                    recorded_at=r.recorded_at.isoformat(),
                    channel=r.channel,
                    data=r.data,
                )
                for r in rows
            ],
            next_cursor=str(rows[-1].position) if len(rows) == limit else None,
        )
        return Response(msgspec.json.encode(page), media_type="application/json")

    @get(
        "/customers/{customer_id:str}/behaviors/summary",
        operation_id="SummarizeCustomerBehaviors",
        opt={"permission": Permission.CUSTOMERS_READ},
        responses=problem_responses(401, 403, 404),
        summary="Counts per type, first and last time, active days, most viewed SKUs",
    )
    async def summary(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str]
    ) -> Response[BehaviorSummaryOut]:
        cid = customer_id_of(customer_id)
        schema = tenant_of(request).schema
        async with request.app.state.read_pool.connection() as conn:
            summary = await reads.behavior_summary(conn, schema, cid)
            if not summary.total and not await reads.customer_exists(conn, schema, cid):
                raise not_found("customer_not_found", f"customer {customer_id} does not exist")
        body = BehaviorSummaryOut(
            customer_id=str(cid),
            counts=summary.counts,
            first_at=iso(summary.first_at),
            last_at=iso(summary.last_at),
            distinct_days=summary.distinct_days,
            top_skus=[SkuViews(sku=s, views=v) for s, v in summary.top_skus],
            searches=summary.counts["search"],
        )
        return Response(msgspec.json.encode(body), media_type="application/json")
