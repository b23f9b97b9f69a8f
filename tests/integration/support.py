"""Helpers shared by the integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.sql import SQL, Identifier

from application.app import Membercore
from application.kernel import Caller, Outcome, execute
from application.registration import RegisterCustomer
from infrastructure.tenancy import Tenant, Tenants
from projections.customer_profile import CustomerProfileProjection
from projections.engine import Projection, catch_up

T = TypeVar("T")
PROFILE = CustomerProfileProjection()
TEST_CALLER = Caller("t")


@dataclass(frozen=True)
class Registered:
    """A registration's answer, typed for tests."""

    customer_id: UUID
    matched: bool
    position: int
    outcome: Outcome
    merged: tuple[str, ...] = ()


def run_registration(
    app: Membercore, command: RegisterCustomer, caller: Caller = TEST_CALLER, **kwargs: Any
) -> Registered:
    """Run ``command`` through the kernel (``kwargs``: ``execute``'s, e.g. ``client_id``)."""
    answer = execute(app, command, caller, **kwargs)
    body = answer.body
    return Registered(
        UUID(body["customer_id"]),
        body["matched"],
        answer.position,
        answer.outcome,
        tuple(body.get("merged", ())),
    )


def register(tenant: Tenant, *identities: tuple[str, str], **fields: Any) -> Registered:
    return run_registration(tenant.app, RegisterCustomer(identities=list(identities), **fields))


def events(conn: psycopg.Connection[Any], tenant: Tenant) -> list[dict[str, Any]]:
    """Every stored event row of the tenant, in log order."""
    return conn.execute(
        SQL(
            "SELECT notification_id, originator_id, originator_version, topic"
            " FROM {}.membercore_events ORDER BY notification_id"
        ).format(Identifier(tenant.schema))
    ).fetchall()


def rows(conn: psycopg.Connection[Any], tenant: Tenant, query: str, *params: Any) -> list[Any]:
    """Run ``query`` with ``{s}`` standing for the tenant schema."""
    return conn.execute(SQL(query).format(s=Identifier(tenant.schema)), params).fetchall()


def run_at_once(n: int, work: Callable[[int], T], timeout: float = 60.0) -> list[T]:
    """Run ``work(i)`` in ``n`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads did not finish in time"
    if errors:
        raise errors[0]
    return results


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def dump(conn: psycopg.Connection[Any], tenant: Tenant, tables: Sequence[str]) -> list[Any]:
    """A canonical dump of query tables (json as text), for byte-for-byte comparisons."""
    out: list[Any] = []
    for table in tables:
        out.append(
            conn.execute(
                SQL("SELECT t::text AS row FROM {}.{} t ORDER BY 1").format(
                    Identifier(tenant.schema), Identifier(table)
                )
            ).fetchall()
        )
    return out


def expected_dump(
    tenant: Tenant, sql: psycopg.Connection[Any], until: int, projection: Projection = PROFILE
) -> list[Any]:
    """What ``projection``'s tables must hold once every event up to ``until`` is applied
    exactly once: one pass over the log into fresh tables."""
    suffix = f"_check{until}"
    with tenant.datastore.transaction(commit=True) as curs:
        projection.create_tables(curs, tenant.schema, suffix)
    catch_up(tenant, projection, tracking_name=f"check#{until}", suffix=suffix, until=until)
    return dump(sql, tenant, [t + suffix for t in projection.tables])


class TenantsOf(Tenants):
    """The session's tenant registry as a worker or scheduler under test sees it: narrowed to
    the test's own tenants. The session creates a tenant per test, so unnarrowed, every round
    of a worker or job scheduler would visit hundreds of other tenants late in a run (minutes a
    round) while the test waits on its own."""

    def __init__(self, tenants: Tenants, *mine: Tenant) -> None:
        # The same pool, installers and cache: only which tenants there are differs.
        self.__dict__.update(tenants.__dict__)
        self.mine = {t.slug for t in mine}

    def create(self, slug: str) -> Tenant:
        """A new tenant, one of the test's own."""
        tenant = super().create(slug)
        self.mine.add(slug)
        return tenant

    def slugs(self) -> list[str]:
        return [slug for slug in super().slugs() if slug in self.mine]
