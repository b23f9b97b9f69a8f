"""Merge records: undo a merge; review suggested merge candidates."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, Parameter

from api.auth import tenant_of
from api.commands import IdempotencyKey, parse_uuid, position_cursor, run
from api.errors import not_found
from api.schemas import MergeOut, Page, problem_responses
from application.merges import UndoMerge
from application.permissions import Permission
from projections import queries
from projections.merge_candidates import MergeCandidatesProjection


class MergeController(Controller):
    path = "/v1"
    tags = ["merges"]

    @post(
        "/merges/{merge_id:str}/undo",
        operation_id="UndoMerge",
        opt={"permission": Permission.CUSTOMERS_MERGE},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422, 503),
        summary="Reverse a merge exactly (identities, fields, roles and every asset moved)",
    )
    def undo(
        self,
        request: Request[Any, Any, Any],
        merge_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MergeOut]:
        mid = parse_uuid(merge_id)
        if mid is None:
            raise not_found("merge_not_found", f"merge {merge_id} does not exist")
        return run(request, UndoMerge(mid), idempotency_key)

    @get(
        "/merge-candidates",
        operation_id="ListMergeCandidates",
        opt={"permission": Permission.CUSTOMERS_MERGE},
        responses=problem_responses(400, 401, 403, 503),
        summary="Pairs that share a suggesting identity, with the reason",
    )
    async def candidates(
        self,
        request: Request[Any, Any, Any],
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        cursor: FromQuery[str | None] = None,
        min_position: Annotated[int | None, Parameter(ge=0)] = None,
    ) -> Page:
        after = position_cursor(cursor)
        schema = tenant_of(request).schema
        async with request.app.state.read_pool.connection() as conn:
            await queries.wait_for(conn, schema, MergeCandidatesProjection.name, min_position)
            items = await queries.merge_candidates(conn, schema, after, limit)
        next_cursor = str(items[-1].position) if len(items) == limit else None
        return Page(items=msgspec.to_builtins(items), next_cursor=next_cursor)
