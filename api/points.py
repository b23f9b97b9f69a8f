"""Points over HTTP: balances, the ledger, redemptions and their reversals, adjustments, holds,
the expiry job.

Commands run through the kernel (``api.commands.run``): the body's client id (``redemption_id``,
``reversal_id``, ``adjustment_id``, ``hold_id``) is the idempotency key, scoped by the route, the
customer and the point type; capture and release take an optional ``Idempotency-Key`` header.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import Meta, Struct

from api.auth import tenant_of
from api.commands import IdempotencyKey, customer_id_of, position_cursor, run
from api.inputs import bounded_instant_text
from api.schemas import ClientId, Page, Strict, problem_responses
from application.instants import parse_instant
from application.loaders import merged_into
from application.permissions import Permission
from application.points.commands import (
    MAX_HOLD_SECONDS,
    MAX_POINTS,
    AdjustPoints,
    CaptureHold,
    HoldPoints,
    RedeemPoints,
    ReleaseHold,
    ReverseRedemption,
)
from application.points.expiry import ExpirePoints
from application.points.queries import points_balances, points_entries
from application.program import loyalty_rules

PositivePoints = Annotated[int, Meta(ge=1, le=MAX_POINTS, examples=[10])]
# Signed; 0 is refused by the command (400 invalid_input on ``amount``).
SignedPoints = Annotated[int, Meta(ge=-MAX_POINTS, le=MAX_POINTS, examples=[10])]
Reason = Annotated[str, Meta(min_length=1, max_length=256, examples=["goodwill"])]
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)


# -- wire schemas -----------------------------------------------------------------------------


class RedemptionIn(Strict):
    redemption_id: ClientId
    amount: PositivePoints
    reason: Reason | None = None


class AdjustmentIn(Strict):
    adjustment_id: ClientId
    amount: SignedPoints
    reason: Reason


class HoldIn(Strict):
    hold_id: ClientId
    amount: PositivePoints
    # The timeout: seconds from now, or an instant (RFC 3339 with an offset); at most one.
    # Neither: the point type's hold_timeout_minutes.
    ttl_seconds: Annotated[int, Meta(ge=1, le=MAX_HOLD_SECONDS)] | None = None
    expires_at: datetime | None = None


class RedemptionReversalIn(Strict):
    reversal_id: ClientId
    # Default: what is left unreversed of the redemption.
    amount: PositivePoints | None = None
    reason: Reason | None = None


class ExpirePointsIn(Strict):
    # RFC 3339 with an offset, or a bare date (the start of that day in the tenant's zone).
    as_of: Annotated[str, Meta(min_length=10, max_length=64)]


class LotTaken(Struct):
    lot_id: str
    amount: int


class PointsRedeemed(Struct):
    customer_id: str
    point_type: str
    redemption_id: str
    amount: int
    lots: list[LotTaken]
    # Until when it can be reversed (the point type's reversal_days); null for a redemption
    # recorded before reversal windows existed, which stays reversible.
    reversible_until: str | None
    available: int
    position: int


class PointsAdjusted(Struct, omit_defaults=True):
    customer_id: str
    point_type: str
    adjustment_id: str
    amount: int
    available: int
    position: int
    lot_id: str | None = None
    expires_at: str | None = None
    lots: list[LotTaken] | None = None


class PointsHold(Struct):
    customer_id: str
    point_type: str
    hold_id: str
    amount: int
    status: str
    expires_at: str | None
    lots: list[LotTaken]
    available: int
    position: int


class RedemptionReversed(Struct):
    customer_id: str
    point_type: str
    redemption_id: str
    reversal_id: str
    amount: int
    lots: list[LotTaken]
    reversed_total: int
    reversible: int
    available: int
    position: int


class ExpiringOut(Struct):
    on: date
    amount: int


class BalanceOut(Struct):
    point_type: str
    available: int
    pending: int
    held: int
    expiring: list[ExpiringOut]


class BalancesOut(Struct, omit_defaults=True):
    balances: list[BalanceOut]
    # Only for a merged-away customer: the one its points went to.
    merged_into: str | None = None


class PointsExpired(Struct):
    as_of: str
    accounts_checked: int
    accounts_expired: int
    lots_expired: int
    points_expired: int
    holds_expired: int
    position: int


# -- helpers ----------------------------------------------------------------------------------


# -- routes -----------------------------------------------------------------------------------


class PointsController(Controller):
    path = "/v1/customers/{customer_id:str}/points"
    tags = ["points"]

    @get(
        "/",
        operation_id="PointsBalances",
        opt={"permission": Permission.LOYALTY_READ},
        sync_to_thread=True,
        responses=problem_responses(401, 403, 404),
        summary="Available, pending and held points and upcoming expiries per point type",
    )
    def balances(self, request: Request[Any, Any, Any], customer_id: FromPath[str]) -> BalancesOut:
        app = tenant_of(request).app
        cid = customer_id_of(customer_id)
        found = points_balances(app, cid, app.clock())
        return BalancesOut(
            merged_into=merged_into(app, cid),
            balances=[
                BalanceOut(
                    b.point_type,
                    b.available,
                    b.pending,
                    b.held,
                    [ExpiringOut(e.on, e.amount) for e in b.expiring],
                )
                for b in found
            ],
        )

    @get(
        "/{point_type:str}/entries",
        operation_id="PointsEntries",
        opt={"permission": Permission.LOYALTY_READ},
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403, 404),
        summary="The ledger of one point type: earns, redemptions, holds, expiries, reversals",
    )
    def entries(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: FromQuery[str | None] = None,
    ) -> Page:
        page = points_entries(
            tenant_of(request).app,
            customer_id_of(customer_id),
            point_type,
            after=position_cursor(cursor),
            limit=limit,
        )
        next_cursor = str(page.next_cursor) if page.next_cursor is not None else None
        return Page(items=page.items, next_cursor=next_cursor)

    @post(
        "/{point_type:str}/redemptions",
        operation_id="RedeemPoints",
        opt={"permission": Permission.POINTS_REDEEM},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Spend points (soonest-expiring lots first); 409 insufficient_points",
    )
    def redeem(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        data: JSONBody[RedemptionIn],
    ) -> Response[PointsRedeemed]:
        cmd = RedeemPoints(
            customer_id_of(customer_id), point_type, data.redemption_id, data.amount, data.reason
        )
        return run(request, cmd)

    @post(
        "/{point_type:str}/redemptions/{redemption_id:str}/reversals",
        operation_id="ReverseRedemption",
        opt={"permission": Permission.POINTS_REDEEM},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Give a redemption's points back to the lots it took; 409 "
        "reversal_exceeds_redemption",
    )
    def reverse(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        redemption_id: FromPath[str],
        data: JSONBody[RedemptionReversalIn],
    ) -> Response[RedemptionReversed]:
        cmd = ReverseRedemption(
            customer_id_of(customer_id),
            point_type,
            redemption_id,
            data.reversal_id,
            data.amount,
            data.reason,
        )
        return run(request, cmd)

    @post(
        "/{point_type:str}/adjustments",
        operation_id="AdjustPoints",
        opt={"permission": Permission.POINTS_ADJUST},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="A signed manual correction with a reason (the key's id is the actor)",
    )
    def adjust(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        data: JSONBody[AdjustmentIn],
    ) -> Response[PointsAdjusted]:
        cmd = AdjustPoints(
            customer_id_of(customer_id), point_type, data.adjustment_id, data.amount, data.reason
        )
        return run(request, cmd)

    @post(
        "/{point_type:str}/holds",
        operation_id="HoldPoints",
        opt={"permission": Permission.POINTS_REDEEM},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Set points aside (they count against available) until capture, release or timeout",
    )
    def hold(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        data: JSONBody[HoldIn],
    ) -> Response[PointsHold]:
        cmd = HoldPoints(
            customer_id_of(customer_id),
            point_type,
            data.hold_id,
            data.amount,
            data.ttl_seconds,
            data.expires_at,
        )
        return run(request, cmd)

    @post(
        "/{point_type:str}/holds/{hold_id:str}/capture",
        operation_id="CaptureHold",
        opt={"permission": Permission.POINTS_REDEEM},
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Spend a hold (once, before its timeout); 409 hold_already_resolved, hold_expired",
    )
    def capture(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        hold_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PointsHold]:
        cmd = CaptureHold(customer_id_of(customer_id), point_type, hold_id)
        return run(request, cmd, idempotency_key)

    @post(
        "/{point_type:str}/holds/{hold_id:str}/release",
        operation_id="ReleaseHold",
        opt={"permission": Permission.POINTS_REDEEM},
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="Give a hold back to its lots (once); 409 hold_already_resolved",
    )
    def release(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        point_type: FromPath[str],
        hold_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PointsHold]:
        cmd = ReleaseHold(customer_id_of(customer_id), point_type, hold_id)
        return run(request, cmd, idempotency_key)


class PointsJobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post(
        "/expire-points",
        operation_id="ExpirePoints",
        opt={"permission": Permission.JOBS_RUN},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 409, 422, 503),
        summary="Expire every lot due and release every hold timed out by as_of (not in the"
        " future); a second run changes nothing",
    )
    def expire_points(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ExpirePointsIn],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PointsExpired]:
        tz = ZoneInfo(loyalty_rules(tenant_of(request).app).timezone)
        as_of = parse_instant(bounded_instant_text(data.as_of, "as_of"), tz, field="as_of")
        return run(request, ExpirePoints(as_of), idempotency_key)
