"""Who may do what: the one permission table, shared by the API and the CLI."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SALES = "sales"
    FINANCE = "finance"
    AUDITOR = "auditor"
    INTEGRATOR = "integrator"
    FRONTEND = "frontend"


class Permission(StrEnum):
    CUSTOMERS_WRITE = "customers:write"
    CUSTOMERS_READ = "customers:read"
    EVENTS_READ = "events:read"
    PROGRAM_WRITE = "program:write"
    PROGRAM_READ = "program:read"
    REPORTS_READ = "reports:read"
    AUDIT_READ = "audit:read"
    JOBS_RUN = "jobs:run"
    BEHAVIORS_WRITE = "behaviors:write"
    CUSTOMERS_MERGE = "customers:merge"
    CUSTOMERS_ERASE = "customers:erase"
    CUSTOMERS_EXPORT = "customers:export"
    STAFF_HANDOVER = "staff:handover"
    CUSTOMERS_IMPORT = "customers:import"


R = Role
PERMISSIONS: dict[Permission, frozenset[Role]] = {
    # Channel connectors (integrator), POS and apps (frontend) and staff register customers.
    Permission.CUSTOMERS_WRITE: frozenset({R.ADMIN, R.OPERATOR, R.SALES, R.FRONTEND, R.INTEGRATOR}),
    # Personal data: not for finance, whose reports are aggregates.
    Permission.CUSTOMERS_READ: frozenset(
        {R.ADMIN, R.OPERATOR, R.SALES, R.FRONTEND, R.INTEGRATOR, R.AUDITOR}
    ),
    Permission.EVENTS_READ: frozenset({R.ADMIN, R.INTEGRATOR, R.AUDITOR}),
    Permission.PROGRAM_WRITE: frozenset({R.ADMIN}),
    Permission.PROGRAM_READ: frozenset({R.ADMIN, R.OPERATOR, R.AUDITOR, R.FINANCE}),
    Permission.REPORTS_READ: frozenset({R.ADMIN, R.FINANCE, R.OPERATOR, R.AUDITOR}),
    Permission.AUDIT_READ: frozenset({R.ADMIN, R.AUDITOR}),
    Permission.JOBS_RUN: frozenset({R.ADMIN, R.OPERATOR}),
    # Apps and channel connectors report what people do (page views, searches, carts).
    Permission.BEHAVIORS_WRITE: frozenset({R.ADMIN, R.OPERATOR, R.FRONTEND, R.INTEGRATOR}),
    # Joining two people (and undoing it) changes whose assets are whose: staff who manage data.
    Permission.CUSTOMERS_MERGE: frozenset({R.ADMIN, R.OPERATOR}),
    # Erasure and access requests (PIPL/GDPR) are handled by the data controller's admins.
    Permission.CUSTOMERS_ERASE: frozenset({R.ADMIN}),
    Permission.CUSTOMERS_EXPORT: frozenset({R.ADMIN, R.AUDITOR}),
    Permission.STAFF_HANDOVER: frozenset({R.ADMIN, R.OPERATOR}),
    Permission.CUSTOMERS_IMPORT: frozenset({R.ADMIN, R.OPERATOR}),
}


def allows(role: Role, permission: Permission) -> bool:
    return role in PERMISSIONS[permission]
