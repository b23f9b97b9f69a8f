"""The program document: PUT replaces it (a new version), GET reads the one in force."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, put
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Body, Parameter

from api.auth import tenant_of
from api.commands import run
from api.errors import not_found
from api.schemas import problem_responses
from application.permissions import Permission
from application.program import DefineProgram, load_program


def _array_of_objects(description: str) -> Schema:
    return Schema(
        type=OpenAPIType.ARRAY,
        items=Schema(type=OpenAPIType.OBJECT),
        description=description,
    )


def _object(description: str) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, description=description)


# The document's top level; its parts are validated as a whole by the domain (every problem
# listed, each naming its field) and described in docs/program.md.
PROGRAM_PROPERTIES: dict[str, Schema] = {
    "currency": Schema(type=OpenAPIType.STRING, pattern="^[A-Z]{3}$", description="ISO 4217 code"),
    "timezone": Schema(type=OpenAPIType.STRING, description="IANA time zone"),
    "point_types": _array_of_objects("at least one; see docs/program.md#point-types"),
    "identity": _object("identity types' match rules and the default country"),
    "attributes": _array_of_objects("declared custom attributes"),
    "roles": _array_of_objects("roles besides the built-in ones"),
    "survivorship": _object("which side's field a merge keeps"),
    "staff_alerts": _object("owner_removals, window_minutes"),
    "level_groups": _array_of_objects("level ladders"),
    "benefits": _array_of_objects("benefits and their quotas"),
}
PROGRAM_REQUIRED = ["currency", "timezone", "point_types"]


def _document(title: str, extra: dict[str, Schema] | None = None) -> Any:
    """The document's schema under ``title``, with the fields an answer adds (``extra``)."""
    extra = extra or {}
    return Body(
        title=title,
        description="The whole program document (see docs/program.md)",
        schema_extra={
            "properties": {**PROGRAM_PROPERTIES, **extra},
            "required": [*PROGRAM_REQUIRED, *extra],
            "additional_properties": False,
        },
    )


VERSION = Schema(type=OpenAPIType.INTEGER, minimum=1, description="the document's version")
POSITION = Schema(type=OpenAPIType.INTEGER, description="log position of the command's event")
ProgramBody = Annotated[dict[str, Any], _document("ProgramDocument")]
ProgramRead = Annotated[dict[str, Any], _document("ProgramVersion", {"version": VERSION})]
ProgramDefined = Annotated[
    dict[str, Any], _document("ProgramDefined", {"version": VERSION, "position": POSITION})
]


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
        self, request: Request[Any, Any, Any], data: ProgramBody
    ) -> Response[ProgramDefined]:
        # PUT is idempotent by nature: the same document again records nothing (no key needed).
        return run(request, DefineProgram(data))

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
    ) -> ProgramRead:
        program = load_program(tenant_of(request).app, version)
        # The repository answers the latest version for any version above it: that is not it.
        if program is None or (version is not None and program.version != version):
            raise not_found("program_not_found", "this tenant has no program yet")
        return {**program.document, "version": program.version}
