"""Per-customer order statistics (``customer_stats``): the input of RFM, CLV and segments."""

from projections.customer_stats.projection import CustomerStatsProjection, profile_stats_sql

__all__ = ["CustomerStatsProjection", "profile_stats_sql"]
