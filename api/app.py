"""``create_app(settings)``: the Litestar application and its lifespan."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import structlog
from litestar import Litestar, Request, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import authorize
from api.customers import CustomerController
from api.errors import handle_exception
from api.events import EventFeedController
from api.schemas import Health, ProjectionHealth
from infrastructure.database import open_read_pool
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from projections import queries
from projections.registry import PROJECTIONS

log = structlog.get_logger("membercore.api")


def _request_context(access_log: bool) -> Any:
    """Bind a request id (from ``X-Request-ID`` or new) to every log line; log each request."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            request_id = headers.get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            status = 500
            started = time.perf_counter()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ]
                await send(message)

            await app(scope, receive, send_with_id)
            if access_log:
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                )

        return handle

    return middleware


@get("/health", operation_id="Health", tags=["service"], summary="Liveness and projection lag")
async def health(request: Request[Any, Any, Any]) -> Health:
    async with request.app.state.read_pool.connection() as conn:
        cur = await conn.execute("SELECT schema_name FROM membercore.tenants ORDER BY slug")
        schemas = [row[0] for row in await cur.fetchall()]
        lags = await queries.lags(conn, schemas, [p.name for p in PROJECTIONS])
    return Health(
        status="ok", projections={name: ProjectionHealth(lag=lag) for name, lag in lags.items()}
    )


def create_app(
    settings: Settings, *, runtime: Runtime | None = None, projections: bool = False
) -> Litestar:
    """The API. Given no ``runtime`` it opens one (and closes it) with the app's lifespan;
    ``projections=True`` also runs the projection worker in this process (``membercore serve``)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = runtime is None
        rt = runtime or await anyio.to_thread.run_sync(
            lambda: Runtime.open(settings, projections=projections)
        )
        # A worker this lifespan starts on a runtime it was given is also stopped by it.
        started = projections and not owned and rt.worker is None
        if started:
            rt.start_projections()
        app.state.runtime = rt
        app.state.read_pool = await open_read_pool(rt.url, settings)
        log.info("api_started", projections=projections)
        try:
            yield
        finally:
            await app.state.read_pool.close()
            if owned:
                await anyio.to_thread.run_sync(rt.close)
            elif started and rt.worker is not None:
                await anyio.to_thread.run_sync(rt.worker.stop)
                rt.worker = None

    return Litestar(
        route_handlers=[CustomerController, EventFeedController, health],
        guards=[authorize],
        lifespan=[lifespan],
        middleware=[_request_context(settings.access_log)],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="membercore",
            version="1.0.0",
            description="Member core API: customers, points, levels, wallet, commissions.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin(path="/redoc")],
        ),
        logging_config=None,
        debug=False,
    )
