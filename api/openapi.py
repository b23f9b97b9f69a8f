"""The OpenAPI document's configuration and the docs pages (Swagger UI, ReDoc) served offline.

The pages' scripts, styles and icon come from the ``drf-spectacular-sidecar`` wheel, which vendors
the Swagger UI and ReDoc distributions as static files (its Django app is never imported): the
pages render on a machine without internet, and their versions move with a dependency upgrade.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from litestar import Litestar, Response, Router
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from api.schemas import problem_responses

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


def _assets_directory() -> Path:
    """The sidecar's static folder, found without importing the package (its ``__init__``
    imports Django)."""
    spec = importlib.util.find_spec("drf_spectacular_sidecar")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("drf-spectacular-sidecar is not installed: the docs pages need it")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "drf_spectacular_sidecar"


def docs_assets() -> Router:
    """``/schema/assets/...``: the docs pages' files, public like the pages themselves."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_assets_directory()], name="docs_assets"
    )


def openapi_config() -> OpenAPIConfig:
    swagger = f"{ASSETS_PATH}/swagger-ui-dist"
    favicon = f"<link rel='icon' type='image/png' href='{swagger}/favicon-32x32.png'>"
    return OpenAPIConfig(
        title="membercore",
        version=importlib.metadata.version("membercore"),
        description="Member core API: customers, points, levels, wallet, commissions.",
        path=SCHEMA_PATH,
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(
                    type="http", scheme="bearer", description="membercore API key (mck_...)"
                )
            }
        ),
        security=[{"apiKey": []}],
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{swagger}/swagger-ui-bundle.js",
                css_url=f"{swagger}/swagger-ui.css",
                standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
                favicon=favicon,
            ),
            RedocRenderPlugin(
                path="/redoc",
                js_url=f"{ASSETS_PATH}/redoc/bundles/redoc.standalone.js",
                google_fonts=False,
                favicon=favicon,
            ),
        ],
    )


REPLAY_DESCRIPTION = (
    "The command created nothing new (e.g. a registration that matched), or this is a replay of"
    " its first answer, with the same body (header Idempotent-Replayed: true)"
)
# Parameters Litestar fills from the connection, not from the request's input.
_NOT_INPUT = frozenset({"request", "state", "scope", "headers", "cookies", "socket"})


def declare_app_wide_answers(app: Litestar) -> None:
    """Declare, on every route, the answers that come from app-wide machinery rather than from the
    route's own code, so that no route can forget one:

    - a command route that answers 201 also answers 200 with the same body (a replay of its first
      answer, or a command that found its work already done);
    - a route that needs a key answers 401 and 403 (the guard) and 503 (the database or its pool
      failing, for every route that reads or writes);
    - a route with any input answers 400 (decoding and validation), and one with a body 413.
    """
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            responses = dict(handler.responses or {})
            if handler.status_code == 201 and 200 not in responses:
                responses[200] = ResponseSpec(
                    data_container=_returned(handler),
                    description=REPLAY_DESCRIPTION,
                    generate_examples=False,
                )
            statuses: set[int] = set()
            if handler.opt.get("permission") is not None:
                statuses |= {401, 403, 503}
            inputs = set(handler.parsed_fn_signature.parameters) - _NOT_INPUT
            if inputs:
                statuses.add(400)
            if "data" in inputs:
                statuses.add(413)
            missing = sorted(statuses - set(responses))
            responses.update(problem_responses(*missing))
            handler.responses = responses


def _returned(handler: HTTPRouteHandler) -> Any:
    """The body type a handler answers (``X`` of ``Response[X]``)."""
    returned = handler.parsed_fn_signature.return_type
    if returned.is_subclass_of(Response) and returned.inner_types:
        return returned.inner_types[0].annotation
    return returned.annotation
