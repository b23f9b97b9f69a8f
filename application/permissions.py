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
    ORDERS_WRITE = "orders:write"
    ORDERS_REFUND = "orders:refund"
    LOYALTY_READ = "loyalty:read"
    POINTS_REDEEM = "points:redeem"
    POINTS_ADJUST = "points:adjust"
    LEVELS_OVERRIDE = "levels:override"
    BENEFITS_REDEEM = "benefits:redeem"
    BENEFITS_GRANT = "benefits:grant"


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
    # Orders come from channel connectors, POS and apps; refunds also from customer service.
    Permission.ORDERS_WRITE: frozenset({R.ADMIN, R.OPERATOR, R.FRONTEND, R.INTEGRATOR}),
    Permission.ORDERS_REFUND: frozenset({R.ADMIN, R.OPERATOR, R.FRONTEND, R.INTEGRATOR}),
    # Balances, levels and benefits hold no personal data: finance reads them too.
    Permission.LOYALTY_READ: frozenset(
        {R.ADMIN, R.OPERATOR, R.SALES, R.FRONTEND, R.INTEGRATOR, R.AUDITOR, R.FINANCE}
    ),
    # Members spend points and use benefits at the till or in the app (核销).
    Permission.POINTS_REDEEM: frozenset({R.ADMIN, R.OPERATOR, R.FRONTEND, R.INTEGRATOR}),
    Permission.BENEFITS_REDEEM: frozenset({R.ADMIN, R.OPERATOR, R.FRONTEND, R.INTEGRATOR}),
    # Manual corrections change liabilities: staff who answer for them, with a reason.
    Permission.POINTS_ADJUST: frozenset({R.ADMIN, R.OPERATOR}),
    Permission.LEVELS_OVERRIDE: frozenset({R.ADMIN, R.OPERATOR}),
    Permission.BENEFITS_GRANT: frozenset({R.ADMIN, R.OPERATOR}),
}


def allows(role: Role, permission: Permission) -> bool:
    return role in PERMISSIONS[permission]
