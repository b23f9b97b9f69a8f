"""The loyalty part of the program: point types, level groups and benefits.

Validated with the rest of the document (every problem listed) and parsed once per program
version into frozen rules the order, points, level and benefit commands read. Multipliers are
exact fractions (an integer or a decimal string such as ``"1.5"``): a float never enters a
points calculation.

The package, by section of the document: ``rules`` (the frozen rules and the vocabularies),
``point_types``, ``levels`` and ``benefits`` (each section checked and parsed), and ``document``
(the sections cross-checked together, and parsed into :class:`LoyaltyRules`).
"""

from domain.loyalty.document import loyalty_of, validate_loyalty
from domain.loyalty.point_types import POINT_TYPE_KEYS
from domain.loyalty.rules import (
    ASSESSMENT_MODES,
    BIRTHDAY_SCOPES,
    BURN_ORDERS,
    CONDITIONS,
    DECIMAL,
    DEFAULT_HOLD_TIMEOUT_MINUTES,
    DEFAULT_REVERSAL_DAYS,
    DOWNGRADES,
    EXPIRY_MODES,
    MAX_HOLD_TIMEOUT_MINUTES,
    MAX_REVERSAL_DAYS,
    MAX_THRESHOLD,
    NO_LOYALTY,
    PERIODS,
    QUOTA_PERIODS,
    REFUND_POLICIES,
    ROUNDINGS,
    WINDOW_MODES,
    Assessment,
    BenefitRules,
    EarnRule,
    Expiry,
    LevelGroupRules,
    LevelRules,
    LoyaltyRules,
    PointTypeRules,
    Window,
)

__all__ = [
    "ASSESSMENT_MODES",
    "BIRTHDAY_SCOPES",
    "BURN_ORDERS",
    "CONDITIONS",
    "DECIMAL",
    "DEFAULT_HOLD_TIMEOUT_MINUTES",
    "DEFAULT_REVERSAL_DAYS",
    "DOWNGRADES",
    "EXPIRY_MODES",
    "MAX_HOLD_TIMEOUT_MINUTES",
    "MAX_REVERSAL_DAYS",
    "MAX_THRESHOLD",
    "NO_LOYALTY",
    "PERIODS",
    "POINT_TYPE_KEYS",
    "QUOTA_PERIODS",
    "REFUND_POLICIES",
    "ROUNDINGS",
    "WINDOW_MODES",
    "Assessment",
    "BenefitRules",
    "EarnRule",
    "Expiry",
    "LevelGroupRules",
    "LevelRules",
    "LoyaltyRules",
    "PointTypeRules",
    "Window",
    "loyalty_of",
    "validate_loyalty",
]
