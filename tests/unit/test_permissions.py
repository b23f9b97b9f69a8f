"""The permission table: complete, and the separations of duty it promises."""

from __future__ import annotations

import pytest

from application.permissions import PERMISSIONS, Permission, Role, allows

WRITES = [p for p in Permission if p.value.endswith(":write")] + [Permission.JOBS_RUN]


def test_every_permission_has_an_entry() -> None:
    assert set(PERMISSIONS) == set(Permission)


def test_every_entry_names_only_known_roles() -> None:
    assert all(isinstance(r, Role) for roles in PERMISSIONS.values() for r in roles)


def test_every_role_is_allowed_something() -> None:
    assert all(any(allows(role, p) for p in Permission) for role in Role)


def test_admin_is_allowed_everything() -> None:
    assert all(allows(Role.ADMIN, p) for p in Permission)


@pytest.mark.parametrize("permission", [Permission.CUSTOMERS_READ, Permission.CUSTOMERS_WRITE])
def test_finance_cannot_read_or_write_customers_personal_data(permission: Permission) -> None:
    assert not allows(Role.FINANCE, permission)


def test_finance_can_read_reports() -> None:
    assert allows(Role.FINANCE, Permission.REPORTS_READ)


@pytest.mark.parametrize("permission", WRITES)
def test_auditor_cannot_write_or_run_jobs(permission: Permission) -> None:
    assert not allows(Role.AUDITOR, permission)


def test_auditor_can_read_audit_events_and_customers() -> None:
    assert allows(Role.AUDITOR, Permission.AUDIT_READ)
    assert allows(Role.AUDITOR, Permission.EVENTS_READ)
    assert allows(Role.AUDITOR, Permission.CUSTOMERS_READ)


def test_only_admin_writes_the_program() -> None:
    assert {r for r in Role if allows(r, Permission.PROGRAM_WRITE)} == {Role.ADMIN}
