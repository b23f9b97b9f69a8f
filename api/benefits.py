"""Benefits (权益) of a customer: what they hold, direct grants and revocations, redemptions (核销).

Commands run through the command kernel (``api.commands.run``): idempotent by the client id in
the body (``redemption_id``, ``grant_id``) or the ``Idempotency-Key`` header (revocations), in a
scope naming the customer.
Reads come from the event store itself (always current): ``min_position`` is accepted and met.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import Meta, Struct

from api.auth import tenant_of
from api.commands import IdempotencyKey, customer_id_of, position_cursor, run
from api.inputs import require_reachable
from api.schemas import ClientId, Page, Strict, problem_responses
from application.benefits.commands import GrantBenefit, RedeemBenefit, RevokeBenefitGrant
from application.benefits.queries import benefits_of, redemption_history
from application.instants import parse_instant
from application.levels import zone
from application.loaders import merged_into
from application.permissions import Permission
from application.program import loyalty_rules

Reason = Annotated[str, Meta(min_length=1, max_length=500)]
Note = Annotated[str, Meta(max_length=500)]
Instant = Annotated[str, Meta(min_length=10, max_length=64)]
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)


class RedeemBody(Strict):
    redemption_id: ClientId
    note: Note | None = None


class GrantBody(Strict):
    grant_id: ClientId
    code: Annotated[str, Meta(min_length=1, max_length=128, examples=["free_shipping"])]
    reason: Reason
    # RFC 3339 with an offset, or a bare date (the start of that day in the tenant's zone).
    until: Instant | None = None


class RevokeBody(Strict):
    reason: Reason


class QuotaOut(Struct):
    count: int
    period: str
    used: int
    remaining: int
    period_key: str
    resets_at: str | None


class BenefitOut(Struct):
    code: str
    name: str
    enabled: bool
    sources: list[str]
    valid_until: str | None
    quota: QuotaOut | None


class BenefitList(Struct, omit_defaults=True):
    customer_id: str
    at: str
    benefits: list[BenefitOut]
    # Only for a merged-away customer: the one its direct grants went to.
    merged_into: str | None = None


class BenefitRedeemed(Struct):
    customer_id: str
    redemption_id: str
    benefit: str
    source: str
    redeemed_at: str
    program_version: int
    note: str | None
    quota: int | None
    period: str | None
    used: int | None
    remaining: int | None
    position: int
    period_key: str | None = None
    resets_at: str | None = None


class BenefitGrant(Struct):
    customer_id: str
    grant_id: str
    benefit: str
    valid_from: str
    until: str | None
    reason: str
    revoked_at: str | None
    position: int


class BenefitController(Controller):
    path = "/v1/customers/{customer_id:str}/benefits"
    tags = ["benefits"]

    @get(
        "/",
        operation_id="ListBenefits",
        opt={"permission": Permission.LOYALTY_READ},
        responses=problem_responses(400, 401, 403, 404, 409),
        summary="The benefits the customer holds now (or ?at=), with sources and quota left",
    )
    async def list_benefits(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        at: Annotated[
            Instant | None, Parameter(description="a time (RFC 3339) or date; default now")
        ] = None,
        min_position: Annotated[int | None, Parameter(ge=0)] = None,
    ) -> BenefitList:
        cid = customer_id_of(customer_id)
        app = tenant_of(request).app

        def read() -> BenefitList:
            require_reachable(app, min_position)
            tz = zone(loyalty_rules(app))
            when = parse_instant(at, tz, field="at") if at is not None else app.clock()
            held = benefits_of(app, cid, when)
            return BenefitList(
                customer_id=str(cid),
                at=when.isoformat(),
                benefits=msgspec.convert([b.to_dict() for b in held], list[BenefitOut]),
                merged_into=merged_into(app, cid),
            )

        return await asyncio.to_thread(read)

    @get(
        "/redemptions",
        operation_id="ListBenefitRedemptions",
        opt={"permission": Permission.LOYALTY_READ},
        responses=problem_responses(400, 401, 403, 404, 409),
        summary="Every redemption of the customer's benefits, oldest first (paged)",
    )
    async def redemptions(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: FromQuery[str | None] = None,
        benefit: Annotated[str | None, Parameter(max_length=128)] = None,
        min_position: Annotated[int | None, Parameter(ge=0)] = None,
    ) -> Page:
        cid = customer_id_of(customer_id)
        after = position_cursor(cursor)
        app = tenant_of(request).app

        def read() -> tuple[list[dict[str, Any]], str | None]:
            require_reachable(app, min_position)
            return redemption_history(app, cid, after=after, limit=limit, code=benefit)

        items, next_cursor = await asyncio.to_thread(read)
        return Page(items=items, next_cursor=next_cursor)

    @post(
        "/{code:str}/redemptions",
        operation_id="RedeemBenefit",
        opt={"permission": Permission.BENEFITS_REDEEM},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Use a benefit once (核销); idempotent by redemption_id",
    )
    def redeem(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        code: FromPath[str],
        data: JSONBody[RedeemBody],
    ) -> Response[BenefitRedeemed]:
        cmd = RedeemBenefit(customer_id_of(customer_id), code, data.redemption_id, data.note)
        return run(request, cmd)

    @post(
        "/grants",
        operation_id="GrantBenefit",
        opt={"permission": Permission.BENEFITS_GRANT},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Grant a benefit directly (until: default the benefit's validity_days)",
    )
    def grant(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        data: JSONBody[GrantBody],
    ) -> Response[BenefitGrant]:
        cid = customer_id_of(customer_id)
        cmd = GrantBenefit(cid, data.grant_id, data.code, data.reason, data.until)
        return run(request, cmd)

    @post(
        "/grants/{grant_id:str}/revoke",
        operation_id="RevokeBenefitGrant",
        opt={"permission": Permission.BENEFITS_GRANT},
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="End a direct grant now",
    )
    def revoke(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        grant_id: FromPath[str],
        data: JSONBody[RevokeBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[BenefitGrant]:
        cmd = RevokeBenefitGrant(customer_id_of(customer_id), grant_id, data.reason)
        return run(request, cmd, idempotency_key)
