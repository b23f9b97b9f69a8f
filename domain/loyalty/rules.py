"""The loyalty rules a program version parses into: frozen values the order, points, level and
benefit commands read, and the vocabularies and bounds the document is checked against."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

EXPIRY_MODES = ("never", "rolling_days", "end_of_period", "yearly_clearing")
PERIODS = ("month", "quarter", "year")
BURN_ORDERS = ("soonest_expiry", "oldest_first")
REFUND_POLICIES = ("negative", "clamp")
ROUNDINGS = ("floor", "half_up", "ceil")
WINDOW_MODES = ("rolling_days", "calendar", "lifetime")
ASSESSMENT_MODES = ("rolling", "anniversary", "calendar")
DOWNGRADES = ("one_step", "recompute")
QUOTA_PERIODS = ("day", "week", "month", "quarter", "year", "lifetime")
BIRTHDAY_SCOPES = ("day", "month")
DECIMAL = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,4})?$")
# Earn-rule condition keys shared by every kind of rule.
CONDITIONS = ("channels", "stores", "min_amount")
MAX_THRESHOLD = 10**15
# Holds time out (no hold lives forever): the type's default, and the longest any hold may last.
DEFAULT_HOLD_TIMEOUT_MINUTES = 30
MAX_HOLD_TIMEOUT_MINUTES = 30 * 24 * 60
# How long a redemption can be reversed (a returned gift): bounds what the account must keep.
DEFAULT_REVERSAL_DAYS = 90
MAX_REVERSAL_DAYS = 3650


@dataclass(frozen=True)
class EarnRule:
    """One earn rule. ``kind`` is ``per_amount`` (floor(eligible / per_amount) * points),
    ``per_order`` (``points`` per qualifying order) or ``multiplier`` (``factor`` times the sum
    of the base rules, when its conditions hold). Empty filter sets match everything."""

    kind: str
    per_amount: int = 0
    points: int = 0
    factor: Fraction = Fraction(1)
    min_amount: int = 0
    channels: frozenset[str] = frozenset()
    stores: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    level_group: str | None = None
    levels: frozenset[str] = frozenset()
    birthday: str | None = None

    @property
    def filters_lines(self) -> bool:
        return bool(self.categories or self.skus)


@dataclass(frozen=True)
class Expiry:
    """When a lot expires: see ``domain.expiry``. ``periods`` counts periods after the earning
    one (0: the end of the earning period)."""

    mode: str = "never"
    days: int = 0
    period: str = "year"
    periods: int = 0
    month: int = 12
    day: int = 31


@dataclass(frozen=True)
class PointTypeRules:
    code: str
    name: str
    redeemable: bool = True
    earn: tuple[EarnRule, ...] = ()
    expiry: Expiry = Expiry()
    burn_order: str = "soonest_expiry"
    refund_policy: str = "negative"
    pending_days: int = 0
    rounding: str = "floor"
    cap_per_order: int | None = None
    hold_timeout_minutes: int = DEFAULT_HOLD_TIMEOUT_MINUTES
    reversal_days: int = DEFAULT_REVERSAL_DAYS


@dataclass(frozen=True)
class LevelRules:
    code: str
    name: str
    threshold: int
    benefits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Window:
    """Which qualifying values count: the last ``days`` days, the current calendar ``period``,
    or everything ever (``lifetime``)."""

    mode: str = "lifetime"
    days: int = 0
    period: str = "year"


@dataclass(frozen=True)
class Assessment:
    """When downgrades happen: every local day start (``rolling``), each ``period`` after the
    level was reached (``anniversary``) or at each calendar ``period`` start (``calendar``)."""

    mode: str = "calendar"
    period: str = "year"
    downgrade: str = "one_step"
    warning_days: int = 30


@dataclass(frozen=True)
class LevelGroupRules:
    """A ladder. ``basis`` is ``spend`` or the code of the point type whose earns qualify."""

    code: str
    name: str
    role: str
    basis: str
    window: Window
    assessment: Assessment
    levels: tuple[LevelRules, ...]

    def level(self, code: str) -> LevelRules | None:
        return next((lv for lv in self.levels if lv.code == code), None)

    def rank(self, code: str) -> int:
        return next(n for n, lv in enumerate(self.levels) if lv.code == code)

    def qualified(self, value: int) -> LevelRules:
        """The highest level whose threshold ``value`` reaches (the first level has 0)."""
        best = self.levels[0]
        for lv in self.levels:
            if value >= lv.threshold:
                best = lv
        return best


@dataclass(frozen=True)
class BenefitRules:
    """A right with a switch; ``quota_count`` uses per ``quota_period`` (None: unlimited);
    direct grants last ``validity_days`` unless the grant says otherwise (None: no end)."""

    code: str
    name: str
    enabled: bool = True
    quota_count: int | None = None
    quota_period: str = "lifetime"
    validity_days: int | None = None


@dataclass(frozen=True)
class LoyaltyRules:
    version: int
    currency: str = "CNY"
    timezone: str = "UTC"
    point_types: Mapping[str, PointTypeRules] = field(default_factory=dict)
    level_groups: Mapping[str, LevelGroupRules] = field(default_factory=dict)
    benefits: Mapping[str, BenefitRules] = field(default_factory=dict)
    # role -> the point types / level groups the program's ``roles`` section lists for it.
    role_point_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    role_level_groups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def groups_for_basis(self, basis: str) -> tuple[LevelGroupRules, ...]:
        return tuple(g for g in self.level_groups.values() if g.basis == basis)

    def earns(self, point_type: str, roles: Collection[str]) -> bool:
        """Whether a holder of ``roles`` earns ``point_type``: a type that no role lists is
        everybody's; a type some role lists is earned only by holders of such a role."""
        bound = [r for r, types in self.role_point_types.items() if point_type in types]
        return not bound or any(r in roles for r in bound)

    def on_group(self, group: str, roles: Collection[str]) -> bool:
        """Whether a holder of ``roles`` sits on the ladder ``group``: by the group's own
        ``role``, or by a role that lists the group in its ``level_groups``."""
        rules = self.level_groups.get(group)
        if rules is not None and rules.role in roles:
            return True
        return any(group in self.role_level_groups.get(r, ()) for r in roles)


NO_LOYALTY = LoyaltyRules(version=0)
