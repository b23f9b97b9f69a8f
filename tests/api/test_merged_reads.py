"""Reads of a merged-away customer's points, levels and benefits answer with ``merged_into``
(the survivor); the survivor's own reads do not carry it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api.support import new_customer
from tests.integration.test_merge_assets import PROGRAM

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def test_reads_of_a_merged_away_customer_answer_with_merged_into(
    client: Client, admin: dict[str, str]
) -> None:
    assert (await client.put("/v1/program", json=PROGRAM, headers=admin)).status_code == 200
    survivor, source = await new_customer(client, admin), await new_customer(client, admin)
    order = {
        "order_id": f"o-{uuid4().hex[:10]}",
        "channel": "pos",
        "customer_id": source,
        "placed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "amount": 12_000,
    }
    assert (await client.post("/v1/orders", json=order, headers=admin)).status_code == 201
    merged = await client.post(
        f"/v1/customers/{survivor}/merge", json={"source_customer_id": source}, headers=admin
    )
    assert merged.status_code == 201, merged.text

    for read in ("points", "levels", "benefits"):
        theirs = await client.get(f"/v1/customers/{source}/{read}", headers=admin)
        ours = await client.get(f"/v1/customers/{survivor}/{read}", headers=admin)
        assert theirs.status_code == ours.status_code == 200, (read, theirs.text, ours.text)
        assert theirs.json()["merged_into"] == survivor, read
        assert "merged_into" not in ours.json(), read
    levels = (await client.get(f"/v1/customers/{source}/levels", headers=admin)).json()
    (consumer,) = levels["levels"]  # the qualification moved: nothing stale stays behind
    assert (consumer["level"], consumer["qualifying_value"]) == ("normal", 0)
