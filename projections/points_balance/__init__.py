"""Points balances, open lots and open holds with a timeout per account (``points_balance``,
``points_lots``, ``points_holds``): the due indexes of the expiry job and the profile's
``points``."""

from projections.points_balance.projection import (
    BALANCE,
    HOLDS,
    LOTS,
    PointsBalanceProjection,
    due_accounts,
    profile_points_sql,
)

__all__ = [
    "BALANCE",
    "HOLDS",
    "LOTS",
    "PointsBalanceProjection",
    "due_accounts",
    "profile_points_sql",
]
