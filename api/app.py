"""``create_app(settings)``: the Litestar application and its lifespan."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import psycopg
import structlog
from litestar import Litestar, Request, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from psycopg_pool import PoolTimeout
from redis.asyncio import Redis

from api.auth import authorize
from api.behaviors import BehaviorController
from api.benefits import BenefitController
from api.customer_commands import CustomerCommandController
from api.customers import CustomerController
from api.errors import handle_exception
from api.events import EventFeedController
from api.imports import ImportController
from api.inputs import check_request
from api.levels import LevelController, LevelJobController
from api.merges import MergeController
from api.openapi import declare_app_wide_answers, docs_assets, openapi_config
from api.orders import OrderController
from api.points import PointsController, PointsJobsController
from api.program import ProgramController
from api.schemas import Health, ProjectionHealth
from api.staff import StaffController
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
            request_id = ""
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")[:64]
                    break
            request_id = request_id or uuid.uuid4().hex
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
async def health(request: Request[Any, Any, Any]) -> Response[Health]:
    """No auth. 503 when PostgreSQL (or the configured Redis) does not answer."""
    state = request.app.state
    try:
        async with state.read_pool.connection() as conn:
            cur = await conn.execute("SELECT schema_name FROM membercore.tenants ORDER BY slug")
            schemas = [row[0] for row in await cur.fetchall()]
            lags = await queries.lags(conn, schemas, [p.name for p in PROJECTIONS])
    except (psycopg.Error, PoolTimeout):
        log.warning("health_database_unavailable", exc_info=True)
        return Response(Health(status="unavailable", projections={}), status_code=503)
    redis_status = None
    if state.redis is not None:
        try:
            with anyio.fail_after(2):
                await state.redis.ping()
            redis_status = "ok"
        except Exception:  # any failure to answer means unavailable, whatever the cause
            log.warning("health_redis_unavailable", exc_info=True)
            redis_status = "unavailable"
    body = Health(
        status="ok" if redis_status != "unavailable" else "degraded",
        projections={name: ProjectionHealth(lag=lag) for name, lag in lags.items()},
        redis=redis_status,
    )
    return Response(body, status_code=200 if body.status == "ok" else 503)


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
        # Litestar runs sync handlers on the loop's default executor; size it for commands.
        executor = ThreadPoolExecutor(settings.command_threads, thread_name_prefix="command")
        asyncio.get_running_loop().set_default_executor(executor)
        app.state.read_pool = await open_read_pool(rt.url, settings)
        app.state.redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        # Everything allocated so far (modules, app, pools) lives as long as the process: keep
        # it out of the collector's scans, which otherwise pause requests (p99 tail).
        gc.collect()
        gc.freeze()
        log.info("api_started", projections=projections)
        try:
            yield
        finally:
            await app.state.read_pool.close()
            executor.shutdown(wait=False)
            if app.state.redis is not None:
                await app.state.redis.aclose()
            if owned:
                await anyio.to_thread.run_sync(rt.close)
            elif started and rt.worker is not None:
                await anyio.to_thread.run_sync(rt.worker.stop)
                rt.worker = None

    app = Litestar(
        route_handlers=[
            CustomerController,
            CustomerCommandController,
            MergeController,
            LevelController,
            LevelJobController,
            OrderController,
            PointsController,
            PointsJobsController,
            ProgramController,
            StaffController,
            EventFeedController,
            BehaviorController,
            BenefitController,
            ImportController,
            health,
            docs_assets(),
        ],
        guards=[authorize],
        before_request=check_request,
        lifespan=[lifespan],
        middleware=[_request_context(settings.access_log)],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    declare_app_wide_answers(app)
    return app
