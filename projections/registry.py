"""Every projection the service runs, in one list (the worker, rebuild and provisioning use it)."""

from __future__ import annotations

from projections.customer_history import CustomerHistoryProjection
from projections.customer_profile import CustomerProfileProjection
from projections.customer_stats import CustomerStatsProjection
from projections.engine import Projection
from projections.level_membership import LevelMembershipProjection
from projections.merge_candidates import MergeCandidatesProjection
from projections.points_balance import PointsBalanceProjection

PROJECTIONS: tuple[Projection, ...] = (
    CustomerProfileProjection(),
    CustomerHistoryProjection(),
    MergeCandidatesProjection(),
    CustomerStatsProjection(),
    PointsBalanceProjection(),
    LevelMembershipProjection(),
)
BY_NAME: dict[str, Projection] = {p.name: p for p in PROJECTIONS}
