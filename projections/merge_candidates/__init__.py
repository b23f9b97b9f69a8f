"""Pairs of customers suggested for a merge review (``merge_candidates``)."""

from projections.merge_candidates.projection import MergeCandidatesProjection

__all__ = ["MergeCandidatesProjection"]
