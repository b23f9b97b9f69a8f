"""Points balances and open lots per account (``points_balance``, ``points_lots``): the due index
of the expiry job and the profile's ``points``."""

from projections.points_balance.projection import (
    BALANCE,
    LOTS,
    PointsBalanceProjection,
    due_accounts,
    profile_points_sql,
)

__all__ = ["BALANCE", "LOTS", "PointsBalanceProjection", "due_accounts", "profile_points_sql"]
