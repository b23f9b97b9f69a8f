"""Every projection the service runs, in one list (the worker, rebuild and provisioning use it)."""

from __future__ import annotations

from projections.customer_history import CustomerHistoryProjection
from projections.customer_profile import CustomerProfileProjection
from projections.engine import Projection
from projections.merge_candidates import MergeCandidatesProjection

PROJECTIONS: tuple[Projection, ...] = (
    CustomerProfileProjection(),
    CustomerHistoryProjection(),
    MergeCandidatesProjection(),
)
BY_NAME: dict[str, Projection] = {p.name: p for p in PROJECTIONS}
