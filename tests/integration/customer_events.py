"""Customer aggregates built with domain methods and saved straight through the tenant's app.

The read-side tests use these instead of the application's commands: they exercise every
Customer event, including merges and erasure, without the command layer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.sql import SQL, Identifier

from domain.customer import Customer
from domain.merge import absorb, give_back, merge_away, plan_merge, plan_undo, restore
from domain.program import DEFAULT_RULES
from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections.engine import Projection, catch_up

ACTOR = "k-test"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """Increasing command times, one second apart."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def new_customer(
    tenant: Tenant,
    clock: Clock,
    *identities: tuple[str, str],
    save: bool = True,
    **fields: Any,
) -> Customer:
    values: dict[str, Any] = {
        "name": None,
        "phone": None,
        "email": None,
        "birthday": None,
        "attributes": {},
        "roles": ["consumer"],
        "owner": None,
        "referrer_id": None,
    }
    values.update(fields)
    customer = Customer.register(
        customer_id=values.pop("customer_id", None) or uuid4(),
        identities=[Identity(t, v) for t, v in identities],
        actor=ACTOR,
        at=clock(),
        **values,
    )
    if save:
        tenant.app.save(customer)
    return customer


def person(tenant: Tenant, clock: Clock, n: int, prefix: str = "p", **fields: Any) -> Customer:
    """A customer with every personal field set, all values unique to ``prefix`` and ``n``."""
    values: dict[str, Any] = {
        "name": f"Name{prefix}{n}",
        "phone": f"139{sum(map(ord, prefix)) % 1000:03d}{n:05d}",
        "email": f"{prefix}{n}@mail.example",
        "birthday": date(1990, 1, 1) + timedelta(days=n),
        "attributes": {"city": f"City{prefix}{n}", "n": n},
        "channel": "mini_program",
        "store_id": f"S{n % 3}",
    }
    values.update(fields)
    return new_customer(
        tenant,
        clock,
        ("member_no", f"M{prefix}{n}"),
        ("wechat_unionid", f"U{prefix}{n}"),
        **values,
    )


def merge(tenant: Tenant, clock: Clock, survivor: Customer, source: Customer) -> UUID:
    merge_id = uuid4()
    at = clock()
    plan = plan_merge(survivor, source, DEFAULT_RULES)
    absorb(survivor, source.id, merge_id, plan, actor=ACTOR, at=at)
    merge_away(source, survivor.id, merge_id, actor=ACTOR, at=at)
    tenant.app.save(survivor, source)
    return merge_id


def undo_merge(
    tenant: Tenant, clock: Clock, survivor: Customer, source: Customer, merge_id: UUID
) -> None:
    at = clock()
    plan = plan_undo(survivor, merge_id)
    give_back(survivor, merge_id, plan, actor=ACTOR, at=at)
    restore(source, merge_id, source.identities, actor=ACTOR, at=at)
    tenant.app.save(survivor, source)


def erase(tenant: Tenant, clock: Clock, customer: Customer) -> None:
    """Record the erasure and destroy the customer's key, as the erasure command does."""
    customer.erase(reason="gdpr request", actor=ACTOR, at=clock())
    tenant.app.save(customer)
    with tenant.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL(
                "UPDATE {}.customer_keys SET key = NULL, erased_at = now()"
                " WHERE customer_id = %s AND key IS NOT NULL"
            ).format(Identifier(tenant.schema)),
            (customer.id,),
        )
    tenant.app.keys.forget(customer.id)


def project(tenant: Tenant, *projections: Projection, batch_size: int = 2000) -> None:
    for projection in projections:
        catch_up(tenant, projection, batch_size=batch_size)


def table_text(sql: psycopg.Connection[Any], tenant: Tenant, *tables: str) -> str:
    """Every row of ``tables`` as text, for searching for values that must not be there."""
    out = []
    for table in tables:
        for row in sql.execute(
            SQL("SELECT t::text AS row FROM {}.{} t").format(
                Identifier(tenant.schema), Identifier(table)
            )
        ).fetchall():
            out.append(row["row"])
    return "\n".join(out)


def doc(sql: psycopg.Connection[Any], tenant: Tenant, customer_id: UUID) -> dict[str, Any]:
    row = sql.execute(
        SQL("SELECT doc FROM {}.customer_profile WHERE customer_id = %s").format(
            Identifier(tenant.schema)
        ),
        (customer_id,),
    ).fetchone()
    assert row is not None, f"no profile for {customer_id}"
    found: dict[str, Any] = row["doc"]
    return found
