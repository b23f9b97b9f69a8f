"""Helpers for the fault tests: an app on a runtime of its own, a loyalty workload driven over
HTTP by clients that retry like a well-behaved integrator, and the checks that nothing was lost,
doubled or half-written.

Each fault test opens its own runtime (pool, tenants, keys) on a URL that names its connections
(``application_name``), so a test can terminate or cancel exactly the backends of the service
it drives and never those of the rest of the suite.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from uuid import UUID

from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from application.permissions import Role
from domain.level_membership import LevelMembership
from domain.order import Order
from domain.points_account import PointsAccount
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from tests.api.support import bearer

# The test client runs the app on a loop of its own and blocks its caller for each request:
# concurrent requests come from threads.
Client = TestClient[Litestar]

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "yearly_clearing", "month": 12, "day": 31},
        }
    ],
    "level_groups": [
        {
            "code": "consumer",
            "name": "member",
            "role": "consumer",
            "basis": "spend",
            "window": {"mode": "lifetime"},
            "assessment": {"mode": "calendar", "period": "year", "downgrade": "one_step"},
            "levels": [
                {"code": "normal", "name": "normal", "threshold": 0},
                {"code": "gold", "name": "gold", "threshold": 200000},
            ],
        }
    ],
}
# Every order earns points, qualifies for the level ladder and records the order: three
# aggregates saved in one transaction, which is what "all or none" is checked on.
ORDER_AMOUNT = 1000
FIRST_ORDER_AMOUNT = 100_000
CHANNEL = "faults"


def with_params(url: str, **params: str) -> str:
    """``url`` with libpq connection parameters added to its query string."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote)) if q)
    return urlunsplit(parts._replace(query=query))


def fault_settings(settings: Settings, url: str, **changes: Any) -> Settings:
    """The session's settings on ``url``, with small pools that give up after a second."""
    base: dict[str, Any] = {"pool_min": 2, "pool_max": 8, "read_pool_max": 4, "pool_timeout": 1.0}
    return replace(settings, database_url=url, **{**base, **changes})


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[Client, Runtime]]:
    """The API on a runtime of its own (closed after)."""
    runtime = Runtime.open(settings)
    try:
        with TestClient(create_app(settings, runtime=runtime)) as client:
            yield client, runtime
    finally:
        runtime.close()


@dataclass
class Shop:
    """A tenant with the workload's program, an admin key, and customers with points."""

    tenant: Tenant
    headers: dict[str, str]
    customers: list[UUID]

    @classmethod
    def open(cls, client: Client, runtime: Runtime, customers: int) -> Shop:
        slug = f"faults_{secrets.token_hex(4)}"
        tenant = runtime.tenants.create(slug)
        headers = bearer(runtime.keys.create(slug, Role.ADMIN))
        response = client.put("/v1/program", json=PROGRAM, headers=headers)
        assert response.status_code == 200, response.text
        shop = cls(tenant, headers, [])
        for n in range(customers):
            response = client.post(
                "/v1/customers",
                json={
                    "identities": [{"type": "wechat_unionid", "value": f"u-{slug}-{n}"}],
                    "roles": ["consumer"],
                },
                headers=headers,
            )
            assert response.status_code == 201, response.text
            cid = UUID(response.json()["customer_id"])
            shop.customers.append(cid)
            first = shop.order(cid, f"first-{n}", FIRST_ORDER_AMOUNT)
            response = client.post(first.url, json=first.body, headers=headers)
            assert response.status_code == 201, response.text
        return shop

    def order(self, customer_id: UUID, order_id: str, amount: int = ORDER_AMOUNT) -> Command:
        body = {
            "order_id": order_id,
            "channel": CHANNEL,
            "customer_id": str(customer_id),
            "placed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "amount": amount,
        }
        return Command("order", order_id, customer_id, "/v1/orders", body)

    def redemption(self, customer_id: UUID, redemption_id: str, amount: int) -> Command:
        url = f"/v1/customers/{customer_id}/points/points/redemptions"
        body = {"redemption_id": redemption_id, "amount": amount}
        return Command("redemption", redemption_id, customer_id, url, body)

    def workload(self, per_customer: int) -> list[Command]:
        """Orders and redemptions interleaved over the customers (none can run out of points)."""
        run = secrets.token_hex(3)
        commands = []
        for n in range(per_customer):
            for c, cid in enumerate(self.customers):
                commands.append(self.order(cid, f"o-{run}-{c}-{n}"))
                commands.append(self.redemption(cid, f"r-{run}-{c}-{n}", 1 + n % 3))
        return commands


@dataclass
class Command:
    kind: str  # order | redemption
    client_id: str
    customer_id: UUID
    url: str
    body: dict[str, Any]
    statuses: list[int] = field(default_factory=list)
    answer: dict[str, Any] | None = None  # the first 2xx body
    answered_at: float | None = None  # time.monotonic() of the first 2xx

    @property
    def acknowledged(self) -> bool:
        return self.answer is not None


# Answers after which the same request may be sent again: the service said "not now".
TRANSIENT = {(503, "service_unavailable"), (409, "request_in_progress"),
             (409, "concurrency_conflict")}  # fmt: skip


def settle(client: Client, headers: dict[str, str], cmd: Command, deadline: float) -> None:
    """Send ``cmd`` until it gets a final answer (or the deadline passes), as a client does
    that retries a transient answer with the same client id after ``Retry-After``."""
    while time.monotonic() < deadline:
        response = client.post(cmd.url, json=cmd.body, headers=headers)
        cmd.statuses.append(response.status_code)
        if response.status_code < 300:
            cmd.answer = response.json()
            cmd.answered_at = time.monotonic()
            return
        problem = response.json()
        if (response.status_code, problem.get("code")) not in TRANSIENT:
            return
        assert response.headers.get("Retry-After") is not None, response.text
        time.sleep(0.05)


def run_all(
    client: Client, headers: dict[str, str], commands: list[Command], *, concurrency: int,
    seconds: float,
) -> None:  # fmt: skip
    """Settle every command, ``concurrency`` at a time, within ``seconds``."""
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(concurrency, thread_name_prefix="client") as clients:
        for future in [clients.submit(settle, client, headers, c, deadline) for c in commands]:
            future.result()


def statuses(commands: list[Command]) -> Counter[int]:
    return Counter(s for c in commands for s in c.statuses)


def effects(tenant: Tenant, commands: list[Command]) -> dict[str, Counter[str]]:
    """Per client id, how many events of each kind the event store holds for it: an order's
    ``order``, its ``lot`` (points earned) and ``level`` (spend qualified); a redemption's
    ``redeemed``. Read from the aggregates' streams, not from any read model."""
    store = tenant.app.repository.event_store
    found: dict[str, Counter[str]] = {c.client_id: Counter() for c in commands}
    for customer_id in {c.customer_id for c in commands}:
        for event in store.get(PointsAccount.id_for(customer_id, "points")):
            if isinstance(event, PointsAccount.Earned) and event.source.get("kind") == "order":
                count(found, event.source["order_id"], "lot")
            elif isinstance(event, PointsAccount.Redeemed):
                count(found, event.redemption_id, "redeemed")
        for event in store.get(LevelMembership.id_for(customer_id, "consumer")):
            if isinstance(event, LevelMembership.Qualified):
                kind, _, rest = event.entry_id.partition(f":{CHANNEL}:")
                if kind == "order":  # an order's entry is "order:<channel>:<order id>"
                    count(found, rest, "level")
    for c in commands:
        if c.kind == "order":
            for event in store.get(Order.id_for(CHANNEL, c.client_id)):
                if isinstance(event, Order.Placed):
                    count(found, c.client_id, "order")
    return found


def count(found: dict[str, Counter[str]], client_id: str, what: str) -> None:
    if client_id in found:
        found[client_id][what] += 1


ORDER_PARTS = Counter({"order": 1, "lot": 1, "level": 1})


def check_nothing_lost_or_doubled(tenant: Tenant, commands: list[Command]) -> None:
    """Every acknowledged command is stored exactly once; any other is stored whole or not at
    all, and at most once."""
    found = effects(tenant, commands)
    for c in commands:
        whole = ORDER_PARTS if c.kind == "order" else Counter({"redeemed": 1})
        got = found[c.client_id]
        if c.acknowledged:
            assert got == whole, (c.client_id, c.statuses, got)
        else:
            assert got in (whole, Counter()), (c.client_id, c.statuses, got)


def check_replays_answer_the_first_answer(
    client: Client, headers: dict[str, str], commands: list[Command]
) -> None:
    """The same request again is a replay of the first answer, whatever happened in between."""
    for c in commands:
        if c.answer is None:
            continue
        response = client.post(c.url, json=c.body, headers=headers)
        assert response.status_code == 200, (c.client_id, response.text)
        detail = (c.client_id, c.statuses, c.answer, response.json())
        assert response.headers.get("Idempotent-Replayed") == "true", detail
        assert response.json() == c.answer, detail


def check_balances(client: Client, shop: Shop, commands: list[Command]) -> None:
    """Each customer's available points are what the acknowledged commands add up to."""
    for cid in shop.customers:
        mine = [c for c in commands if c.customer_id == cid]
        earned = (FIRST_ORDER_AMOUNT + ORDER_AMOUNT * sum(c.kind == "order" for c in mine)) // 100
        spent = sum(c.body["amount"] for c in mine if c.kind == "redemption")
        response = client.get(f"/v1/customers/{cid}/points", headers=shop.headers)
        assert response.status_code == 200, response.text
        (balance,) = response.json()["balances"]
        assert balance["available"] == earned - spent, (cid, balance)
