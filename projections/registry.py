"""Every projection the service runs, in one list (the worker, rebuild and provisioning use it)."""

from __future__ import annotations

from projections.customer_profile import CustomerProfileProjection
from projections.engine import Projection

PROJECTIONS: tuple[Projection, ...] = (CustomerProfileProjection(),)
BY_NAME: dict[str, Projection] = {p.name: p for p in PROJECTIONS}
