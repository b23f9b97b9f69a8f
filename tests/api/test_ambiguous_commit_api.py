"""Over HTTP, the case issue 10 found: the connection drops right after COMMIT of a redemption.

Before the kernel, the in-process retry ran the redemption again, the account refused the
repeated ``redemption_id`` (400 ``invalid_input`` "already used") and the key, already done, was
overwritten with that 400: the points were spent and every replay said they were not. Now the
first answer is 201 with the lots, once, and every replay is that answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from application.program import define_program
from domain.points_account import PointsAccount
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import lost_after_commit
from tests.integration.points_support import PROGRAM, customer, earn

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]


@pytest.fixture
def member(tenant: Tenant) -> UUID:
    define_program(tenant.app, PROGRAM, "t")
    cid = customer(tenant)
    earn(tenant, cid, "start", 1000, at=datetime.now(UTC) - timedelta(days=1), expires_at=None)
    return cid


def redemptions(tenant: Tenant, cid: UUID) -> list[Any]:
    account_id = PointsAccount.id_for(cid, "points")
    return [e for e in tenant.app.events.get(account_id) if isinstance(e, PointsAccount.Redeemed)]


async def test_a_redemption_whose_commit_lost_its_connection_answers_201_once_and_replays_it(
    client: Client, admin: dict[str, str], tenant: Tenant, member: UUID
) -> None:
    url = f"/v1/customers/{member}/points/points/redemptions"
    body = {"redemption_id": "r-lost", "amount": 300}

    with lost_after_commit(tenant.app) as fired:
        first = await client.post(url, json=body, headers=admin)
    again = await client.post(url, json=body, headers=admin)

    assert fired, "the fault was not injected"
    assert first.status_code == 201, first.text
    assert first.json()["lots"] == [{"lot_id": "start", "amount": 300}]
    assert first.json()["available"] == 700
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(redemptions(tenant, member)) == 1


async def test_a_hold_capture_whose_commit_lost_its_connection_answers_200_once(
    client: Client, admin: dict[str, str], tenant: Tenant, member: UUID
) -> None:
    base = f"/v1/customers/{member}/points/points/holds"
    held = await client.post(base, json={"hold_id": "h-1", "amount": 200}, headers=admin)
    assert held.status_code == 201, held.text
    capture = {**admin, "Idempotency-Key": "cap-1"}

    with lost_after_commit(tenant.app) as fired:
        first = await client.post(f"{base}/h-1/capture", headers=capture)
    again = await client.post(f"{base}/h-1/capture", headers=capture)

    assert fired, "the fault was not injected"
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "captured"
    assert again.status_code == 200
    assert again.json() == first.json()
    account_id = PointsAccount.id_for(member, "points")
    captures = [
        e for e in tenant.app.events.get(account_id) if isinstance(e, PointsAccount.HoldCaptured)
    ]
    assert len(captures) == 1
