"""The write side's indexes over query tables: the due index (``application.app.DueIndex``:
when lots, holds and level checks fall due) and the owner index (``OwnerIndex``: the customers
a staff member holds).

Each read first brings its table up to the log head (a catch-up, exactly once beside the
projection worker), so a job sees every lot and membership written before it started.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up
from projections.level_membership import LevelMembershipProjection, due_memberships
from projections.points_balance.projection import PointsBalanceProjection, due_accounts
from projections.queries import owned_by

POINTS = PointsBalanceProjection()
PROFILES = CustomerProfileProjection()
LEVELS = LevelMembershipProjection()


class ProjectedDueIndex:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    def points_accounts(self, as_of: datetime) -> list[UUID]:
        catch_up(self.tenant, POINTS)
        with self.tenant.datastore.transaction(commit=False) as curs:
            return due_accounts(curs, self.tenant.schema, as_of)

    def memberships(self, as_of: datetime) -> list[UUID]:
        catch_up(self.tenant, LEVELS)
        return due_memberships(self.tenant, as_of)


class ProjectedOwnerIndex:
    """``application.app.OwnerIndex`` over the profiles (brought to the log head first)."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    def owned_by(self, staff_id: str) -> list[UUID]:
        catch_up(self.tenant, PROFILES)
        with self.tenant.datastore.transaction(commit=False) as curs:
            return owned_by(curs, self.tenant.schema, staff_id)


def wire_indexes(tenant: Tenant) -> None:
    tenant.app.due = ProjectedDueIndex(tenant)
    tenant.app.owners = ProjectedOwnerIndex(tenant)
