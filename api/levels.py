"""Levels: a customer's place on each ladder, manual overrides, and the assessment job.

Overrides run through the command kernel (``api.commands.run``), idempotent by ``override_id``
(set) or the ``Idempotency-Key`` header (end). ``GET .../levels`` reads the memberships
themselves (always current): ``min_position`` is accepted and met. The job is the write side's
(``application.levels.assessment``): it finds the memberships due through the due index.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody, Parameter
from msgspec import Meta, Struct

from api.auth import tenant_of
from api.commands import IdempotencyKey, customer_id_of, run
from api.inputs import bounded_instant_text, require_reachable
from api.schemas import ClientId, Strict, problem_responses
from application.instants import parse_instant
from application.levels.assessment import AssessLevels
from application.levels.overrides import EndLevelOverride, SetLevelOverride
from application.levels.qualification import zone
from application.levels.queries import level_status
from application.loaders import merged_into
from application.permissions import Permission
from application.program import loyalty_rules

Instant = Annotated[str, Meta(min_length=10, max_length=64)]
Code = Annotated[str, Meta(min_length=1, max_length=128)]
COMMAND_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 503)


class OverrideBody(Strict):
    override_id: ClientId
    level: Annotated[Code, Meta(examples=["gold"])]
    # RFC 3339 with an offset, or a bare date (the start of that day in the tenant's zone).
    until: Annotated[Instant, Meta(examples=["2099-01-01"])]
    reason: Annotated[str, Meta(min_length=1, max_length=500, examples=["store opening"])]


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
        cid = customer_id_of(customer_id)
        app = tenant_of(request).app

        def read() -> LevelsOut:
            require_reachable(app, min_position)
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
        bounded_instant_text(data.until, "until")
        cmd = SetLevelOverride(
            customer_id_of(customer_id),
            group,
            data.override_id,
            data.level,
            data.until,
            data.reason,
        )
        return run(request, cmd)

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
        reason = data.reason if data else None
        cmd = EndLevelOverride(customer_id_of(customer_id), group, override_id, reason)
        return run(request, cmd, idempotency_key)


class LevelJobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post(
        "/assess-levels",
        operation_id="AssessLevels",
        opt={"permission": Permission.JOBS_RUN},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 409, 422, 503),
        summary="Run the level assessments due by as_of (idempotent: a second run changes nothing)",
    )
    def assess(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[AssessLevelsBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[AssessLevelsOut]:
        tz = zone(loyalty_rules(tenant_of(request).app))
        as_of = parse_instant(bounded_instant_text(data.as_of, "as_of"), tz, field="as_of")
        return run(request, AssessLevels(as_of), idempotency_key)
