"""Tenants (one schema each) and API keys (stored hashed)."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest

from application.errors import TenantExists, TenantNotFound
from application.permissions import Role
from infrastructure.runtime import Runtime
from infrastructure.tenancy import (
    TENANT_SCHEMA_VERSION,
    InvalidSlug,
    Principal,
    Tenant,
    Tenants,
    schema_for,
)
from tests.conftest import new_slug
from tests.integration.support import register, run_at_once


def test_creating_an_existing_slug_raises_tenant_exists(runtime: Runtime, tenant: Tenant) -> None:
    with pytest.raises(TenantExists) as raised:
        runtime.tenants.create(tenant.slug)

    assert raised.value.slug == tenant.slug


def test_creating_an_existing_slug_leaves_its_events_alone(
    runtime: Runtime, tenant: Tenant
) -> None:
    first = register(tenant, ("pos_member_no", "1"))

    with pytest.raises(TenantExists):
        runtime.tenants.create(tenant.slug)

    assert runtime.tenants.get(tenant.slug).app.repository.get(first.customer_id).version == 1


@pytest.mark.parametrize(
    "slug", ["", "a", "A_brand", "1brand", "_brand", "brand-x", "brand x", "b" * 32, "品牌"]
)
def test_creating_a_tenant_with_an_invalid_slug_raises_invalid_slug(
    runtime: Runtime, slug: str
) -> None:
    with pytest.raises(InvalidSlug):
        runtime.tenants.create(slug)


def test_a_valid_slug_maps_to_its_own_schema() -> None:
    assert schema_for("brand_7") == "t_brand_7"
    assert schema_for("b" * 31) == "t_" + "b" * 31


def test_getting_an_unknown_tenant_raises_tenant_not_found(runtime: Runtime) -> None:
    with pytest.raises(TenantNotFound):
        runtime.tenants.get(new_slug("missing"))


def test_a_tenant_created_elsewhere_is_loaded_from_the_directory(
    runtime: Runtime, tenant: Tenant
) -> None:
    first = register(tenant, ("pos_member_no", "1"))
    another_process = Tenants(runtime.pool)

    loaded = another_process.get(tenant.slug)

    assert loaded.schema == tenant.schema
    assert loaded.app.repository.get(first.customer_id).id == first.customer_id


def test_tenants_are_isolated_from_each_other(runtime: Runtime, tenant: Tenant) -> None:
    other = runtime.tenants.create(new_slug())

    mine = register(tenant, ("phone", "+8613800138000"))
    theirs = register(other, ("phone", "+8613800138000"))

    assert not mine.matched
    assert not theirs.matched
    assert mine.customer_id != theirs.customer_id


@pytest.mark.parametrize("role", list(Role))
def test_authenticate_returns_the_tenant_and_role_of_a_created_key(
    runtime: Runtime, tenant: Tenant, role: Role
) -> None:
    key = runtime.keys.create(tenant.slug, role)

    principal = runtime.keys.authenticate(key)

    assert isinstance(principal, Principal)
    assert (principal.tenant, principal.role) == (tenant.slug, role)
    assert principal.key_id == hashlib.sha256(key.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "key",
    ["mck_" + "x" * 43, "mck_", "not-a-key", "", "mck_" + "y" * 200],
    ids=["unknown", "prefix-only", "no-prefix", "empty", "too-long"],
)
def test_authenticate_returns_none_for_an_unknown_key(runtime: Runtime, key: str) -> None:
    assert runtime.keys.authenticate(key) is None


def test_creating_a_key_for_an_unknown_tenant_raises_tenant_not_found(runtime: Runtime) -> None:
    with pytest.raises(TenantNotFound):
        runtime.keys.create(new_slug("missing"), Role.ADMIN)


def test_keys_are_stored_hashed_and_the_plaintext_appears_nowhere(
    runtime: Runtime, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    key = runtime.keys.create(tenant.slug, Role.OPERATOR)
    secret = key.removeprefix("mck_")

    stored = sql.execute("SELECT key_hash, t::text AS whole FROM membercore.api_keys t").fetchall()

    assert hashlib.sha256(key.encode()).digest() in [bytes(r["key_hash"]) for r in stored]
    for row in stored:
        assert secret not in row["whole"]
        assert secret.encode() not in bytes(row["key_hash"])


def test_keys_are_distinct_per_creation(runtime: Runtime, tenant: Tenant) -> None:
    keys = {runtime.keys.create(tenant.slug, Role.FRONTEND) for _ in range(5)}

    assert len(keys) == 5
    assert all(k.startswith("mck_") for k in keys)


def test_concurrent_creations_of_one_slug_make_exactly_one_tenant(runtime: Runtime) -> None:
    slug = new_slug("race")

    def work(_: int) -> str:
        try:
            runtime.tenants.create(slug)
        except TenantExists:
            return "exists"
        return "created"

    outcomes = run_at_once(6, work)

    assert sorted(outcomes) == ["created"] + ["exists"] * 5
    assert runtime.tenants.slugs().count(slug) == 1
    assert not register(runtime.tenants.get(slug), ("pos_member_no", "1")).matched


def test_processes_loading_a_tenant_due_for_upgrade_at_once_all_load_it(
    runtime: Runtime, tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # After a TENANT_SCHEMA_VERSION bump, the API and the worker may load a tenant together:
    # its provisioning runs once at a time (concurrent DDL on one schema deadlocks).
    first = register(tenant, ("pos_member_no", "1"))
    sql.execute("UPDATE membercore.tenants SET schema_version = 0 WHERE slug = %s", (tenant.slug,))
    installers = runtime.tenants.installers
    processes = [Tenants(runtime.pool, installers=installers) for _ in range(6)]

    loaded = run_at_once(6, lambda n: processes[n].get(tenant.slug))

    assert all(t.app.repository.get(first.customer_id).version == 1 for t in loaded)
    version = sql.execute(
        "SELECT schema_version FROM membercore.tenants WHERE slug = %s", (tenant.slug,)
    ).fetchone()
    assert version == {"schema_version": TENANT_SCHEMA_VERSION}
