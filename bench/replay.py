"""(e) Cold reads of long loyalty streams: what a snapshot would save.

One customer places ``BENCH_REPLAY_ORDERS`` orders (default 1000) and redeems after every second
one, so the points account holds ~1.5 events per order and the level membership one. The figure
is a cold read (the whole stream replayed: what a fresh process or an evicted cache pays) in
microseconds per event and in milliseconds per stream; the baseline in the same run is a warm read
of the same aggregate from the repository's cache. ADR 0010 uses these figures to decide that
snapshots wait: the bound below is the cold read a long-lived member may cost one command.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from application.context import CommandContext
from application.kernel import Caller, execute
from application.orders import PlaceOrder
from application.points.commands import RedeemPoints
from application.program import define_program
from application.registration import RegisterCustomer
from bench.common import Check, Env, check, heading, show
from bench.orders import PROGRAM  # the same two point types and growth ladder
from domain.level_membership import LevelMembership
from domain.points_account import PointsAccount
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenant_app import TenantApp

ORDERS = int(os.environ.get("BENCH_REPLAY_ORDERS") or 1000)
# A cold read of a member with a thousand orders stays under one order's own latency budget.
TARGET_COLD_MS = 50.0


def _long_member(app: TenantApp) -> UUID:
    ctx = CommandContext("bench")
    define_program(app, PROGRAM, ctx.actor)
    reg = RegisterCustomer(identities=[("wechat_unionid", f"u-{secrets.token_hex(6)}")])
    cid = UUID(execute(app, reg, Caller(ctx.actor)).body["customer_id"])
    start = datetime.now(UTC) - timedelta(days=300)
    for i in range(ORDERS):
        at = start + timedelta(minutes=i)
        execute(app, PlaceOrder(f"o{i}", "pos", at, 5000, customer_id=cid), Caller(ctx.actor))
        if i % 2:
            execute(
                app,
                RedeemPoints(cid, "points", redemption_id=f"r{i}", amount=30, reason=None),
                Caller(ctx.actor),
            )
    return cid


def _best(read: object, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        read()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def run(env: Env) -> list[Check]:
    heading(f"(e) cold reads of long streams ({ORDERS:,} orders of one member)")
    runtime = Runtime.open(Settings(database_url=env.url, log_level="warning"))
    checks: list[Check] = []
    try:
        tenant = runtime.tenants.create(f"bench_replay_{secrets.token_hex(3)}")
        app = tenant.app
        cid = _long_member(app)
        streams = {
            "points account": PointsAccount.id_for(cid, "points"),
            "level membership": LevelMembership.id_for(cid, "consumer"),
        }
        for name, stream in streams.items():
            head = app.repository.get(stream).version
            # A version bypasses the cache: the stream is replayed from its first event.
            cold = _best(lambda s=stream, v=head: app.repository.get(s, version=v))
            warm = _best(lambda s=stream: app.repository.get(s))
            show(f"{name}: {head:,} events, cold read", f"{cold * 1e3:.1f} ms")
            show("   per event", f"{cold / head * 1e6:.1f} us")
            show("   baseline: warm read from the cache", f"{warm * 1e3:.2f} ms")
            show("   cold / warm", f"{cold / warm:.0f}x")
            checks.append(
                check(Check(f"(e) cold read, {name}", cold * 1e3, TARGET_COLD_MS, "ms", False))
            )
    finally:
        runtime.close()
    return checks
