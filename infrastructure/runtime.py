"""The composition root: settings -> database -> pool -> tenants, keys, projections, worker.

It is the one infrastructure module allowed to import the projections (it wires them in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from infrastructure.behaviors import install_behaviors
from infrastructure.database import open_pool, resolve_database_url, stop_embedded
from infrastructure.settings import Settings
from infrastructure.tenancy import ApiKeys, Tenants
from projections.due_index import wire_indexes
from projections.jobs import DEFAULT_EVERY_SECONDS
from projections.registry import PROJECTIONS
from projections.worker import ProjectionWorker

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    url: str
    pool: Any
    tenants: Tenants
    keys: ApiKeys
    worker: ProjectionWorker | None = None

    @classmethod
    def open(cls, settings: Settings, *, projections: bool = False) -> Runtime:
        url = resolve_database_url(settings)
        pool = open_pool(url, settings)
        tenants = Tenants(
            pool,
            installers=[*(p.install for p in PROJECTIONS), install_behaviors],
            wirers=[wire_indexes],
        )
        runtime = cls(settings, url, pool, tenants, ApiKeys(pool))
        if projections:
            runtime.start_projections()
        return runtime

    def start_projections(self) -> ProjectionWorker:
        if self.worker is None:
            self.worker = ProjectionWorker(
                self.url,
                self.tenants,
                PROJECTIONS,
                threads=self.settings.projection_threads,
                batch_size=self.settings.projection_batch,
                sweep_seconds=self.settings.projection_poll_seconds,
                # The points expiry job runs on a schedule wherever the projection worker runs.
                expiry_every_seconds=DEFAULT_EVERY_SECONDS,
            )
            self.worker.start()
        return self.worker

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.pool.close()
        if self.settings.database_url is None:
            # Not left to pgserver's atexit hook: uvicorn re-raises SIGTERM after a graceful
            # shutdown, which skips atexit. pgserver keeps the server up while another process
            # (a CLI command, a worker) still holds it.
            stop_embedded(self.settings.data_dir)
