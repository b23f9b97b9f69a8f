"""A projector in its own process, to be killed with SIGKILL by test_projection_kill.

Usage: python -m tests.integration.projector_process DATABASE_URL TENANT_SLUG BATCH_SIZE

Prints ``ready`` once connected, then catches the tenant's customer profile up in small batches,
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
from projections.engine import Positioned, catch_up


class SlowProfile(CustomerProfileProjection):
    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        super().apply(curs, schema, events, suffix)
        time.sleep(0.003)


def main(url: str, slug: str, batch_size: int) -> None:
    pool = open_pool(url, Settings(pool_min=1, pool_max=2))
    tenant = Tenants(pool).get(slug)
    projection = SlowProfile()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        if not catch_up(tenant, projection, batch_size=batch_size):
            time.sleep(0.01)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
