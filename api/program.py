"""The program document: PUT replaces it (a new version), GET reads the one in force."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, put
from litestar.params import JSONBody, Parameter

from api.auth import principal_of, tenant_of
from api.commands import run_command
from api.errors import not_found
from api.schemas import problem_responses
from application.permissions import Permission
from application.program import define_program, load_program


class ProgramController(Controller):
    path = "/v1/program"
    tags = ["program"]

    @put(
        "/",
        operation_id="DefineProgram",
        opt={"permission": Permission.PROGRAM_WRITE},
        sync_to_thread=True,
        status_code=200,
        responses=problem_responses(400, 401, 403, 409, 503),
        summary="Replace the program document (validated as a whole, every problem listed)",
    )
    def define(
        self, request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]
    ) -> Response[Any]:
        tenant = tenant_of(request)
        # PUT is idempotent by nature: the same document again records nothing.
        return run_command(
            tenant,
            principal_of(request),
            scope="DefineProgram",
            client_id=None,
            request=data,
            handler=lambda ctx: define_program(tenant.app, data, ctx),
        )

    @get(
        "/",
        operation_id="GetProgram",
        opt={"permission": Permission.PROGRAM_READ},
        sync_to_thread=True,
        responses=problem_responses(401, 403, 404),
        summary="The program document in force (or an earlier ?version=)",
    )
    def read(
        self,
        request: Request[Any, Any, Any],
        version: int | None = Parameter(default=None, ge=1),
    ) -> dict[str, Any]:
        program = load_program(tenant_of(request).app, version)
        # The repository answers the latest version for any version above it: that is not it.
        if program is None or (version is not None and program.version != version):
            raise not_found("program_not_found", "this tenant has no program yet")
        return {**program.document, "version": program.version}
