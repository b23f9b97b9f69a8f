"""Bulk import over HTTP: ``POST /v1/imports/customers`` with an NDJSON or CSV body.

The body is streamed to a temporary file (in memory up to a few MB, on disk beyond), hashed on
the way, then imported by the same code as ``membercore import customers`` (docs/import.md).
Rows are idempotent by their identities; an ``Idempotency-Key`` makes the whole upload replay its
first answer instead of running again.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import Annotated, Any

import anyio.to_thread
from litestar import Controller, Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from api.auth import tenant_of
from api.commands import IdempotencyKey, run
from api.errors import ApiError
from api.schemas import Problem, problem_responses
from application.imports import ImportSummary
from application.imports.upload import ImportCustomers
from application.permissions import Permission
from domain.errors import FieldProblem, InvalidInput
from infrastructure.importer import ImportRefused, import_stream

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
SPOOL_IN_MEMORY = 4 * 1024 * 1024
MAX_REJECTIONS = 1000
MEDIA_TYPES = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "text/csv": "csv",
    "application/csv": "csv",
}

RESPONSES = {
    **problem_responses(400, 401, 403, 409, 413, 422, 503),
    415: ResponseSpec(
        data_container=Problem,
        description="the body is neither NDJSON nor CSV (see Content-Type)",
        media_type="application/problem+json",
        generate_examples=False,
    ),
}


def _format(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = MEDIA_TYPES.get(media)
    if fmt is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the rows as application/x-ndjson (one JSON object per line) or text/csv",
        )
    return fmt


class ImportController(Controller):
    path = "/v1/imports"
    tags = ["imports"]

    @post(
        "/customers",
        operation_id="ImportCustomers",
        opt={"permission": Permission.CUSTOMERS_IMPORT},
        status_code=200,
        request_max_body_size=MAX_UPLOAD_BYTES,
        responses=RESPONSES,
        summary="Import customers from an NDJSON or CSV body (up to 200 MB), idempotent per row",
        description=(
            "Body: `application/x-ndjson`, one POST /v1/customers body per line, or `text/csv`"
            " with a header row (docs/import.md). Every row is registered, or matched to the"
            " customer its identities name; rows with problems are skipped and listed in"
            " `rejections` (the first 1000, `rejections_truncated` when there were more) with"
            " their line number. Sending the same rows again registers nothing new."
        ),
    )
    async def import_customers(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
        chunk: Annotated[int, Parameter(ge=1, le=5000, description="rows per transaction")] = 1000,
    ) -> Response[Any]:
        fmt = _format(request.headers.get("content-type"))
        tenant = tenant_of(request)
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as body:
            async for part in request.stream():
                digest.update(part)
                body.write(part)
            sha256 = digest.hexdigest()

            def rows(actor: str) -> ImportSummary:
                try:
                    return import_stream(
                        tenant,
                        body,
                        fmt=fmt,
                        source_id=f"upload:{sha256}",
                        actor=actor,
                        chunk=chunk,
                        max_rejections=MAX_REJECTIONS,
                    )
                except ImportRefused as e:
                    raise InvalidInput([FieldProblem("body", str(e))]) from None

            upload = ImportCustomers(sha256, fmt, rows)
            return await anyio.to_thread.run_sync(lambda: run(request, upload, idempotency_key))
