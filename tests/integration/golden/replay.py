"""Reading and writing the golden fixtures, and the balances they are judged by.

Fixtures come in *eras*: one folder per generation (``2026-11/``, ``2026-12/``, ...), each with
the events the code of its day stored and the balances they gave. An era is never rewritten:
when the code starts storing new kinds of events, a new era is recorded beside the old ones,
and every era must keep replaying to its own balances (old rows read by new code).

``events.jsonl``: line 1 is a header (format, the tenant's identity secret and the customers'
data keys, so sealed personal fields open again); every other line is one stored event row
``{"notification_id", "originator_id", "originator_version", "topic", "state"}`` in log order,
``state`` being the stored JSON document (its ``timestamp`` is the event's time; sealed fields
stay sealed). ``balances.json``: ``balances(app, streams)`` of the tenant the fixture was
recorded in, plus the profile documents of its read model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec
import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from application.app import Membercore
from application.program import loyalty_rules
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.level_membership import LevelMembership
from domain.merge import Merge
from domain.order import Order
from domain.points_account import PointsAccount
from domain.staff import StaffActivity
from infrastructure.crypto import IDENTITY_SECRET, KEYS_TABLE, SECRETS_TABLE
from infrastructure.tenancy import Tenant
from projections.engine import catch_up
from projections.queries import profile_expression
from projections.registry import PROJECTIONS
from tests.integration.golden.scenario import AS_OF

HERE = Path(__file__).parent
ERAS = tuple(sorted(p.name for p in HERE.iterdir() if (p / "events.jsonl").is_file()))
LATEST = ERAS[-1]
FORMAT = 1


def events_path(era: str = LATEST) -> Path:
    return HERE / era / "events.jsonl"


def balances_path(era: str = LATEST) -> Path:
    return HERE / era / "balances.json"


Row = dict[str, Any]


# -- the fixture --------------------------------------------------------------------------------


def dump_tenant(sql: psycopg.Connection[Any], tenant: Tenant) -> tuple[Row, list[Row]]:
    """The header (secret, keys) and every event row of ``tenant``, in log order."""
    s = Identifier(tenant.schema)
    secret = sql.execute(
        SQL("SELECT value FROM {}.{} WHERE name = %s").format(s, Identifier(SECRETS_TABLE)),
        (IDENTITY_SECRET,),
    ).fetchone()
    assert secret is not None
    keys = sql.execute(
        SQL("SELECT customer_id, key FROM {}.{} ORDER BY customer_id").format(
            s, Identifier(KEYS_TABLE)
        )
    ).fetchall()
    header = {
        "format": FORMAT,
        "identity_secret": bytes(secret["value"]).hex(),
        "customer_keys": {str(k["customer_id"]): bytes(k["key"]).hex() for k in keys},
    }
    rows = sql.execute(
        SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {}.membercore_events ORDER BY notification_id"
        ).format(s)
    ).fetchall()
    events = [
        {
            "notification_id": r["notification_id"],
            "originator_id": str(r["originator_id"]),
            "originator_version": r["originator_version"],
            "topic": r["topic"],
            "state": json.loads(bytes(r["state"])),
        }
        for r in rows
    ]
    return header, events


def write_events(header: Row, events: Iterable[Row], path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in (header, *events):
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_events(path: Path | None = None) -> tuple[Row, list[Row]]:
    path = path or events_path()
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["format"] == FORMAT, f"fixture format {header['format']}, expected {FORMAT}"
    return header, [json.loads(line) for line in lines[1:]]


def load_into(tenant: Tenant, header: Row, events: list[Row]) -> None:
    """Store the fixture's rows in a fresh tenant as they were stored (same order, same state
    documents), with the customers' keys and the identity secret they were sealed with."""
    s = Identifier(tenant.schema)
    with tenant.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL("UPDATE {}.{} SET value = %s WHERE name = %s").format(s, Identifier(SECRETS_TABLE)),
            (bytes.fromhex(header["identity_secret"]), IDENTITY_SECRET),
        )
        keys = header["customer_keys"]
        curs.execute(
            SQL(
                "INSERT INTO {}.{} (customer_id, key) SELECT * FROM unnest(%s::uuid[], %s::bytea[])"
            ).format(s, Identifier(KEYS_TABLE)),
            ([UUID(k) for k in keys], [bytes.fromhex(v) for v in keys.values()]),
        )
    tenant.app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(e["originator_id"]),
                originator_version=e["originator_version"],
                topic=e["topic"],
                state=msgspec.json.encode(e["state"]),
            )
            for e in events
        ]
    )


def streams(events: Iterable[Row]) -> list[UUID]:
    """Every aggregate of the fixture, in the order of its first event."""
    return [UUID(i) for i in dict.fromkeys(e["originator_id"] for e in events)]


def project(tenant: Tenant) -> None:
    """Build every projection of the tenant from event 0."""
    for projection in PROJECTIONS:
        catch_up(tenant, projection, batch_size=97)


# -- aggregates ---------------------------------------------------------------------------------


def replay(app: Membercore, ids: Iterable[UUID]) -> dict[UUID, Any]:
    """Every aggregate read back through the application's repository."""
    return {i: app.repository.get(i) for i in ids}


def canonical(value: Any) -> Any:
    """JSON-able form of aggregate state. Datetimes keep their offset in the text, so a replay
    that produced the same instant in another zone (whose local date differs) shows up."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {
            json.dumps(canonical(k)): canonical(v)
            for k, v in sorted(value.items(), key=lambda kv: json.dumps(canonical(kv[0])))
        }
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=json.dumps)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "__dict__"):
        return {k: canonical(v) for k, v in sorted(vars(value).items())}
    raise TypeError(f"no canonical form for {type(value).__name__}")


def states(aggregates: dict[UUID, Any]) -> dict[str, Any]:
    """The whole state of every aggregate (for comparing two replays with each other)."""
    return {str(i): {"type": type(a).__name__, **canonical(vars(a))} for i, a in aggregates.items()}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def balances(app: Membercore, aggregates: dict[UUID, Any], as_of: datetime = AS_OF) -> Row:
    """What the golden file pins, read from the aggregates at ``as_of``: points per customer and
    type (and per lot), level and qualifying value per group, benefit quotas used and grants,
    orders' refunded totals, customers' merges and roles, merges undone, staff alerts."""
    rules = loyalty_rules(app, as_of)
    tz = ZoneInfo(rules.timezone)
    out: Row = {
        "as_of": as_of.isoformat(),
        "points": {},
        "levels": {},
        "benefits": {},
        "orders": {},
        "customers": {},
        "merges": {},
        "staff": {},
    }
    for a in aggregates.values():
        if isinstance(a, PointsAccount):
            out["points"][f"{a.customer_id}/{a.point_type}"] = {
                "available": a.available(as_of),
                "pending": a.pending(as_of),
                "held": a.held,
                "debt": a.debt,
                "closed": a.closed,
                "totals": {k: n for k, n in sorted(a.totals.items()) if n},
                "lots": {
                    lot.lot_id: {
                        "earned": lot.earned,
                        "remaining": lot.remaining,
                        "held": lot.held,
                        "redeemed": lot.redeemed,
                        "expired": lot.expired,
                        "reversed": lot.reversed,
                        "adjusted": lot.adjusted,
                        "transferred": lot.transferred,
                        "expires_at": _iso(lot.expires_at),
                    }
                    for lot in sorted(a.lots.values(), key=lambda lot: lot.lot_id)
                },
            }
        elif isinstance(a, LevelMembership):
            group = rules.level_groups[a.group]
            out["levels"][f"{a.customer_id}/{a.group}"] = {
                "level": a.level_at(as_of),
                "base_level": a.base_level,
                "value": a.value_at(group, tz, as_of),
                "override": a.current_override,
            }
        elif isinstance(a, BenefitAccount):
            out["benefits"][str(a.customer_id)] = {
                "used": {
                    b.code: quota.used
                    for b in rules.benefits.values()
                    if (quota := a.quota(b, tz, as_of)) is not None
                },
                # Quota used in each local period that had a redemption, as counted then.
                "used_by_period": {
                    f"{r.code}/{r.period_key}": q.used
                    for r in a.redemptions_of()
                    if (q := a.quota(rules.benefits[r.code], tz, r.at)) is not None
                },
                "redemptions": [[r.redemption_id, r.code, r.source] for r in a.redemptions_of()],
                "grants": {
                    g.grant_id: {"code": g.code, "ends": _iso(g.ends)}
                    for g in sorted(a.grants.values(), key=lambda g: g.grant_id)
                },
            }
        elif isinstance(a, Order):
            out["orders"][f"{a.channel}/{a.order_id}"] = {
                "customer_id": str(a.customer_id),
                "amount": a.amount,
                "refunded_total": a.refunded_total,
                "refundable": a.refundable,
                "earned": a.earned(),
                "points_reversed": dict(sorted(a.points_reversed.items())),
            }
        elif isinstance(a, Customer):
            out["customers"][str(a.id)] = {
                "merged_into": None if a.merged_into is None else str(a.merged_into),
                "roles": sorted(a.roles),
                "email": a.email,
            }
        elif isinstance(a, Merge):
            out["merges"][str(a.id)] = {"undone": a.undone, "moves": len(a.moves)}
        elif isinstance(a, StaffActivity):
            out["staff"][str(a.id)] = {"alerted_at": _iso(a.alerted_at)}
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in out.items()}


# -- read models --------------------------------------------------------------------------------


def read_models(sql: psycopg.Connection[Any], tenant: Tenant, as_of: datetime = AS_OF) -> Row:
    """The profile, points and levels read models at ``as_of``: the profile query with its
    "now" pinned to ``as_of`` (the service reads available points and overrides at the wall
    clock), and the points and level tables in the shape of ``balances``."""
    s = Identifier(tenant.schema)
    expression = profile_expression(tenant.schema)
    assert "now()" in expression, "the profile query no longer reads the clock: update this"
    pinned = expression.replace("now()", "%(as_of)s::timestamptz")
    profiles = {
        str(r["customer_id"]): json.loads(r["doc"])
        for r in sql.execute(
            SQL(
                "SELECT p.customer_id, " + pinned + "::text AS doc FROM {}.customer_profile p"
            ).format(s),
            {"as_of": as_of},
        ).fetchall()
    }
    accounts = sql.execute(
        SQL("SELECT account_id, customer_id, point_type, debt, held FROM {}.points_balance").format(
            s
        )
    ).fetchall()
    lots: dict[UUID, list[Row]] = {}
    for r in sql.execute(
        SQL("SELECT * FROM {}.points_lots ORDER BY account_id, lot_id").format(s)
    ).fetchall():
        lots.setdefault(r["account_id"], []).append(r)
    points = {}
    for acc in accounts:
        mine = lots.get(acc["account_id"], [])
        free = sum(
            r["remaining"]
            for r in mine
            if r["active_at"] <= as_of and (r["expires_at"] is None or r["expires_at"] > as_of)
        )
        points[f"{acc['customer_id']}/{acc['point_type']}"] = {
            "available": free - acc["debt"],
            "held": acc["held"],
            "debt": acc["debt"],
            "lots": {r["lot_id"]: r["remaining"] for r in mine},
        }
    levels = {
        f"{r['customer_id']}/{r['group_code']}": (
            r["base_level"]
            if r["override_until"] is not None and r["override_until"] <= as_of
            else r["level"]
        )
        for r in sql.execute(
            SQL(
                "SELECT customer_id, group_code, level, base_level, override_until FROM {}.{}"
            ).format(s, Identifier("level_membership"))
        ).fetchall()
    }
    return {
        "profiles": dict(sorted(profiles.items())),
        "points": dict(sorted(points.items())),
        "levels": dict(sorted(levels.items())),
    }


def points_view(golden: Row) -> Row:
    """The golden points in the points read model's shape."""
    return {
        key: {
            "available": p["available"],
            "held": p["held"],
            "debt": p["debt"],
            "lots": {lot_id: lot["remaining"] for lot_id, lot in p["lots"].items()},
        }
        for key, p in golden["points"].items()
    }
