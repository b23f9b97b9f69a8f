"""Staff: hand over every customer of a leaving employee (员工离职转让)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, post
from litestar.params import FromPath, HeaderParameter, JSONBody

from api.auth import principal_of, tenant_of
from api.commands import idempotency_header, run_command
from api.schemas import HandoverBody, HandoverOut, problem_responses
from application.permissions import Permission
from application.relationships import handover
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up
from projections.queries import owned_by


def _owned_by(tenant: Tenant) -> Any:
    def find(staff_id: str) -> list[UUID]:
        # The read model lists candidates; brought to the head first so none is missed.
        catch_up(tenant, CustomerProfileProjection())
        with tenant.datastore.transaction(commit=False) as curs:
            return owned_by(curs, tenant.schema, staff_id)

    return find


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
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
    ) -> Response[HandoverOut]:
        tenant = tenant_of(request)
        return run_command(
            tenant,
            principal_of(request),
            scope=f"HandOverCustomers:{staff_id}",
            client_id=idempotency_header(idempotency_key),
            request=data,
            handler=lambda ctx: handover(
                tenant.app, staff_id, data.to_staff_id, _owned_by(tenant), ctx
            ),
        )
