"""The 360-degree customer profile (``customer_profile``) and the identity lookup table."""

from projections.customer_profile.projection import CustomerProfileProjection

__all__ = ["CustomerProfileProjection"]
