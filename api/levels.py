"""Levels: a customer's place on each ladder, manual overrides, and the assessment job.

Overrides go through ``run_command``, idempotent by ``override_id`` (set) or the
``Idempotency-Key`` header (end). ``GET .../levels`` reads the memberships themselves (always
current): ``min_position`` is accepted and met. The job first brings the ``level_membership``
read model up to date, then assesses the memberships it lists as due.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter
from msgspec import Meta, Struct

from api.auth import principal_of, tenant_of
from api.commands import idempotency_header, parse_uuid, run_command
from api.errors import not_found
from api.schemas import ClientId, Strict, problem_responses
from application.levels import (
    assess_levels,
    end_level_override,
    level_status,
    parse_instant,
    set_level_override,
)
from application.merges import merged_into
from application.permissions import Permission
from application.program import loyalty_rules
from projections.engine import catch_up
from projections.level_membership import LevelMembershipProjection, due_memberships

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key")]
Instant = Annotated[str, Meta(min_length=10, max_length=64)]
Code = Annotated[str, Meta(min_length=1, max_length=128)]
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)
PROJECTION = LevelMembershipProjection()


class OverrideBody(Strict):
    override_id: ClientId
    level: Code
    # RFC 3339 with an offset, or a bare date (the start of that day in the tenant's zone).
    until: Instant
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class EndOverrideBody(Strict):
    reason: Annotated[str, Meta(max_length=500)] | None = None


class AssessLevelsBody(Strict):
    as_of: Instant


class LevelOverrideOut(Struct):
    customer_id: str
    group: str
    override_id: str
    level: str
    until: str
    reason: str
    actor: str
    set_at: str
    ended_at: str | None
    level_now: str
    position: int


class LevelsOut(Struct, omit_defaults=True):
    customer_id: str
    levels: list[dict[str, Any]]
    # Only for a merged-away customer: the one its qualification went to.
    merged_into: str | None = None


class AssessLevelsOut(Struct):
    as_of: str
    checked: int
    changed: int
    events: int
    by_type: dict[str, int]
    position: int


def _customer_id(raw: str) -> UUID:
    cid = parse_uuid(raw)
    if cid is None:
        raise not_found("customer_not_found", f"customer {raw} does not exist")
    return cid


class LevelController(Controller):
    path = "/v1/customers/{customer_id:str}/levels"
    tags = ["levels"]

    @get(
        "/",
        operation_id="ListLevels",
        opt={"permission": Permission.LOYALTY_READ},
        responses=problem_responses(400, 401, 403, 404),
        summary="The customer's level on each ladder: value, next level and gap, what keeps it",
    )
    async def list_levels(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        min_position: Annotated[int | None, Parameter(ge=0)] = None,
    ) -> LevelsOut:
        cid = _customer_id(customer_id)
        app = tenant_of(request).app

        def read() -> LevelsOut:
            levels = level_status(app, cid, app.clock())
            return LevelsOut(str(cid), levels, merged_into(app, cid))

        return await asyncio.to_thread(read)

    @post(
        "/{group:str}/overrides",
        operation_id="SetLevelOverride",
        opt={"permission": Permission.LEVELS_OVERRIDE},
        sync_to_thread=True,
        status_code=201,
        responses=COMMAND_ERRORS,
        summary="Set the level by hand until a date, with a reason (idempotent by override_id)",
    )
    def set_override(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        group: FromPath[str],
        data: JSONBody[OverrideBody],
    ) -> Response[LevelOverrideOut]:
        cid = _customer_id(customer_id)
        tenant = tenant_of(request)
        return run_command(
            tenant,
            principal_of(request),
            scope=f"SetLevelOverride:{cid}:{group}",
            client_id=data.override_id,
            request=data,
            handler=lambda ctx: set_level_override(
                tenant.app,
                cid,
                group,
                override_id=data.override_id,
                level=data.level,
                until=data.until,
                reason=data.reason,
                ctx=ctx,
            ),
        )

    @post(
        "/{group:str}/overrides/{override_id:str}/end",
        operation_id="EndLevelOverride",
        opt={"permission": Permission.LEVELS_OVERRIDE},
        sync_to_thread=True,
        status_code=200,
        responses=COMMAND_ERRORS,
        summary="End an override now: the computed level applies again",
    )
    def end_override(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        group: FromPath[str],
        override_id: FromPath[str],
        data: JSONBody[EndOverrideBody | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LevelOverrideOut]:
        cid = _customer_id(customer_id)
        tenant = tenant_of(request)
        return run_command(
            tenant,
            principal_of(request),
            scope=f"EndLevelOverride:{cid}:{group}:{override_id}",
            client_id=idempotency_header(idempotency_key),
            request={"reason": data.reason if data else None},
            handler=lambda ctx: end_level_override(tenant.app, cid, group, override_id, ctx),
        )


class LevelJobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post(
        "/assess-levels",
        operation_id="AssessLevels",
        opt={"permission": Permission.JOBS_RUN},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 503),
        summary="Run the level assessments due by as_of (idempotent: a second run changes nothing)",
    )
    def assess(
        self, request: Request[Any, Any, Any], data: JSONBody[AssessLevelsBody]
    ) -> AssessLevelsOut:
        tenant = tenant_of(request)
        app = tenant.app
        as_of = parse_instant(loyalty_rules(app), data.as_of, field="as_of")
        catch_up(tenant, PROJECTION)
        report = assess_levels(app, as_of, due_memberships(tenant, min(as_of, app.clock())))
        body = report.body()
        if not report.position:
            body["position"] = tenant.app.recorder.max_notification_id() or 0
        return AssessLevelsOut(**body)
