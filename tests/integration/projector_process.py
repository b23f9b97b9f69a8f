"""A projector in its own process, to be killed with SIGKILL by test_projection_kill.

Usage: python -m tests.integration.projector_process URL TENANT_SLUG BATCH_SIZE [PROJECTION]

Prints ``ready`` once connected, then catches the tenant's PROJECTION (default the customer
profile) up in small batches,
forever, pausing inside every transaction after writing the rows (before the tracking record) so
a kill often lands between apply and checkpoint.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from psycopg import Cursor
from psycopg.rows import DictRow

from infrastructure.database import open_pool
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenants
from projections.customer_profile import CustomerProfileProjection
from projections.engine import Positioned, Projection, catch_up
from projections.registry import BY_NAME


def slow(base: type[Projection]) -> Projection:
    """``base``, pausing after writing each batch's rows, before its tracking record."""

    class Slow(base):  # type: ignore[valid-type,misc]
        def apply(
            self,
            curs: Cursor[DictRow],
            schema: str,
            events: Sequence[Positioned],
            suffix: str = "",
        ) -> None:
            super().apply(curs, schema, events, suffix)
            time.sleep(0.003)

    projection: Projection = Slow()
    return projection


def main(url: str, slug: str, batch_size: int, name: str) -> None:
    pool = open_pool(url, Settings(pool_min=1, pool_max=2))
    tenant = Tenants(pool).get(slug)
    projection = slow(type(BY_NAME[name]))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        if not catch_up(tenant, projection, batch_size=batch_size):
            time.sleep(0.01)


if __name__ == "__main__":
    name = sys.argv[4] if len(sys.argv) > 4 else CustomerProfileProjection.name
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), name)
