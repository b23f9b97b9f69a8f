"""Helpers for the points tests on real PostgreSQL: a program, customers, lots and commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from application.kernel import Answer, Caller, Command, execute
from application.loaders import points_account_or_new
from infrastructure.tenancy import Tenant
from tests.integration.support import register

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "rolling_days", "days": 365},
        },
        {"code": "growth", "redeemable": False},
    ],
}
CALLER = Caller("t")


def now() -> datetime:
    return datetime.now(UTC)


def customer(tenant: Tenant) -> UUID:
    return register(tenant, ("wechat_unionid", f"u-{uuid4()}")).customer_id


def run(tenant: Tenant, command: Command) -> Answer:
    """``command`` through the kernel, as a caller without an idempotency key."""
    return execute(tenant.app, command, CALLER)


def earn(
    tenant: Tenant,
    customer_id: UUID,
    lot_id: str,
    points: int,
    *,
    at: datetime | None = None,
    expires_at: datetime | None = None,
    active_at: datetime | None = None,
    point_type: str = "points",
) -> None:
    """Earn a lot the way an order would, without an order: at ``at`` (an hour ago unless
    given), spendable from ``active_at`` (``at`` unless given), never expiring unless given."""
    at = at or now() - timedelta(hours=1)
    account = points_account_or_new(tenant.app, customer_id, point_type, at)
    account.earn(
        lot_id,
        points,
        earned_at=at,
        at=at,
        expires_at=expires_at,
        active_at=active_at or at,
        source={"kind": "test"},
        program_version=1,
    )
    tenant.app.save(account)
