"""Each customer's change history (``customer_history``): who changed what, when, from where."""

from projections.customer_history.projection import CustomerHistoryProjection

__all__ = ["CustomerHistoryProjection"]
