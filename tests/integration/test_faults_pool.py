"""Pool exhaustion, cancelled statements, lock/statement timeouts and connections the server
closed answer 503 ``service_unavailable`` with ``Retry-After`` (never a 500), and the service
serves again once the fault is gone. Each test drives the API on a runtime of its own (small
pools, a one-second pool timeout) against the session database."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from tests.api.support import assert_problem, project
from tests.integration.faults_support import Client, Shop, fault_settings, serving, with_params


@pytest.fixture
def app_name() -> str:
    return f"mc_faults_{secrets.token_hex(4)}"


@pytest.fixture
def served(
    settings: Settings, database_url: str, app_name: str
) -> Iterator[tuple[Client, Runtime]]:
    url = with_params(database_url, application_name=app_name)
    with serving(fault_settings(settings, url)) as pair:
        yield pair


@pytest.fixture
def admin_sql(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def assert_unavailable(response: httpx.Response) -> None:
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"


def hold_read_connections(client: Client) -> list[Any]:
    """Every connection of the app's read pool (the pool lives on the client's portal loop)."""
    pool = client.app.state.read_pool
    return [client.blocking_portal.call(pool.getconn, 30) for _ in range(pool.max_size)]


def return_read_connections(client: Client, held: list[Any]) -> None:
    for conn in held:
        client.blocking_portal.call(client.app.state.read_pool.putconn, conn)


def with_profile(client: Client, runtime: Runtime) -> tuple[Shop, str]:
    """A shop with one customer whose profile is projected, and the profile's URL."""
    shop = Shop.open(client, runtime, customers=1)
    project(shop.tenant)
    url = f"/v1/customers/{shop.customers[0]}"
    assert client.get(url, headers=shop.headers).status_code == 200
    return shop, url


def test_an_exhausted_read_pool_answers_503_with_retry_after_and_reads_succeed_after(
    served: tuple[Client, Runtime],
) -> None:
    client, runtime = served
    shop, url = with_profile(client, runtime)
    held = hold_read_connections(client)
    try:
        assert_unavailable(client.get(url, headers=shop.headers))
    finally:
        return_read_connections(client, held)
    response = client.get(url, headers=shop.headers)
    assert response.status_code == 200, response.text


def test_an_exhausted_command_pool_answers_503_and_the_command_runs_once_after(
    served: tuple[Client, Runtime],
) -> None:
    client, runtime = served
    shop = Shop.open(client, runtime, customers=1)
    redemption = shop.redemption(shop.customers[0], "r-pool", 5)
    held = [runtime.pool.getconn(30) for _ in range(runtime.pool.max_size)]
    try:
        refused = client.post(redemption.url, json=redemption.body, headers=shop.headers)
        assert_unavailable(refused)
    finally:
        for conn in held:
            runtime.pool.putconn(conn)

    first = client.post(redemption.url, json=redemption.body, headers=shop.headers)
    assert first.status_code == 201, first.text
    again = client.post(redemption.url, json=redemption.body, headers=shop.headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    entries = client.get(
        f"/v1/customers/{shop.customers[0]}/points/points/entries", headers=shop.headers
    )
    redeemed = [e for e in entries.json()["items"] if e["kind"] == "redeemed"]
    assert [e["redemption_id"] for e in redeemed] == ["r-pool"]


def lock_profiles(database_url: str, schema: str) -> psycopg.Connection[Any]:
    """A connection holding an exclusive lock on the tenant's profile table until closed."""
    conn = psycopg.connect(database_url)
    conn.execute(
        SQL("LOCK TABLE {}.customer_profile IN ACCESS EXCLUSIVE MODE").format(Identifier(schema))
    )
    return conn


def waiting_on_lock(admin: psycopg.Connection[Any], app_name: str) -> int:
    """The pid of the service's backend waiting for a lock (polls until there is one)."""
    for _ in range(500):
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s AND wait_event_type = 'Lock'",
            (app_name,),
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.01)
    raise AssertionError("no request of the service waited for the lock")


def test_a_read_cancelled_by_the_server_answers_503_and_the_next_read_succeeds(
    served: tuple[Client, Runtime],
    database_url: str,
    admin_sql: psycopg.Connection[Any],
    app_name: str,
) -> None:
    client, runtime = served
    shop, url = with_profile(client, runtime)
    locker = lock_profiles(database_url, shop.tenant.schema)
    try:
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(client.get, url, headers=shop.headers)
            pid = waiting_on_lock(admin_sql, app_name)
            admin_sql.execute("SELECT pg_cancel_backend(%s)", (pid,))  # QueryCanceled (57014)
            assert_unavailable(read.result(timeout=30))
    finally:
        locker.close()
    response = client.get(url, headers=shop.headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
def test_a_read_past_the_servers_lock_or_statement_timeout_answers_503(
    settings: Settings, database_url: str, app_name: str, timeout: str
) -> None:
    # An operator's timeout on the service's connections: LockNotAvailable (55P03) or
    # QueryCanceled (57014).
    url = with_params(database_url, application_name=app_name, options=f"-c {timeout}=300")
    with serving(fault_settings(settings, url)) as (client, runtime):
        shop, profile_url = with_profile(client, runtime)
        locker = lock_profiles(database_url, shop.tenant.schema)
        try:
            assert_unavailable(client.get(profile_url, headers=shop.headers))
        finally:
            locker.close()
        response = client.get(profile_url, headers=shop.headers)
        assert response.status_code == 200, response.text


def test_reads_on_connections_the_server_closed_answer_one_503_then_succeed(
    served: tuple[Client, Runtime], admin_sql: psycopg.Connection[Any]
) -> None:
    client, runtime = served
    shop, url = with_profile(client, runtime)
    # Park every pooled read connection, then have the server end them all (as a restart does).
    held = hold_read_connections(client)
    pids = [conn.info.backend_pid for conn in held]
    return_read_connections(client, held)
    assert len(pids) > 1
    admin_sql.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))

    # The first read meets a dead connection; the pool then replaces every dead one, so the
    # next read succeeds instead of failing once per stale connection.
    assert_unavailable(client.get(url, headers=shop.headers))
    response = client.get(url, headers=shop.headers)
    assert response.status_code == 200, response.text
    assert UUID(response.json()["customer_id"]) == shop.customers[0]
