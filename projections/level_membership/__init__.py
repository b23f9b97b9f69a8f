"""Each customer's level per level group (``level_membership``): the profile's ``levels`` and
the assessment job's due list."""

from projections.level_membership.projection import (
    LevelMembershipProjection,
    due_memberships,
    profile_levels_sql,
)

__all__ = ["LevelMembershipProjection", "due_memberships", "profile_levels_sql"]
