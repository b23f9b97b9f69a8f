"""Staff: hand over every customer of a leaving employee (员工离职转让)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.params import FromPath, JSONBody

from api.commands import IdempotencyKey, run
from api.schemas import HandoverBody, HandoverOut, problem_responses
from application.permissions import Permission
from application.relationships import HandOverCustomers


class StaffController(Controller):
    path = "/v1/staff"
    tags = ["staff"]

    @post(
        "/{staff_id:str}/handover",
        operation_id="HandOverCustomers",
        opt={"permission": Permission.STAFF_HANDOVER},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 409, 422, 503),
        summary="Move all of a staff member's customers to another, with a report",
    )
    def handover(
        self,
        request: Request[Any, Any, Any],
        staff_id: FromPath[str],
        data: JSONBody[HandoverBody],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[HandoverOut]:
        command = HandOverCustomers(staff_id, data.to_staff_id)
        return run(request, command, idempotency_key)
