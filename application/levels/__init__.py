"""Levels on several ladders (docs/levels.md), one ``LevelMembership`` per customer per level
group of the program.

- ``qualification``: qualifying entries (``qualify``), counted by orders, refunds and points
  adjustments and saved in their transaction; the levels in force (``current_levels``).
- ``overrides``: the commands ``SetLevelOverride`` and ``EndLevelOverride``.
- ``assessment``: the assessment job (``AssessLevels``, one ``AssessLevelMembership`` per
  membership found due).
- ``queries``: what ``GET /v1/customers/{id}/levels`` shows.
"""

from application.levels.qualification import current_levels, qualify, zone

__all__ = ["current_levels", "qualify", "zone"]
