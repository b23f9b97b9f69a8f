"""Typed domain errors. Each rule has its own class with the fields a caller needs.

They are translated to HTTP only in ``api/errors.py``; the stable ``code`` lives here so the CLI and
importers report the same codes as the API.

By area: ``base`` (the base class, bad input, a reused client id), ``customers``, ``points``
(orders, holds, redemptions) and ``loyalty`` (the program, levels, benefits). Every error is
importable from here.
"""

from domain.errors.base import (
    ClientIdReused,
    DomainError,
    FieldProblem,
    InvalidInput,
)
from domain.errors.customers import (
    AgentCycle,
    CannotMerge,
    CustomerErased,
    CustomerMerged,
    CustomerNotFound,
    IdentityConflict,
    IdentityHeldByOther,
    IdentityLimitReached,
    IdentityNotHeld,
    LastIdentity,
    MergeNotFound,
    MergeNotUndoable,
    RoleNotHeld,
    TagLimitReached,
    UnknownReferrer,
)
from domain.errors.loyalty import (
    BenefitDisabled,
    BenefitNotFound,
    BenefitNotHeld,
    BenefitQuotaExhausted,
    GrantNotFound,
    LevelGroupNotFound,
    LevelNotFound,
    OverrideNotFound,
    ProgramNotFound,
)
from domain.errors.points import (
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotFound,
    InsufficientPoints,
    OrderNotFound,
    PointsNotRedeemable,
    PointTypeNotFound,
    RedemptionNotFound,
    RefundExceedsOrder,
    ReversalExceedsRedemption,
    ReversalWindowClosed,
)

__all__ = [
    "AgentCycle",
    "BenefitDisabled",
    "BenefitNotFound",
    "BenefitNotHeld",
    "BenefitQuotaExhausted",
    "CannotMerge",
    "ClientIdReused",
    "CustomerErased",
    "CustomerMerged",
    "CustomerNotFound",
    "DomainError",
    "FieldProblem",
    "GrantNotFound",
    "HoldAlreadyResolved",
    "HoldExpired",
    "HoldNotFound",
    "IdentityConflict",
    "IdentityHeldByOther",
    "IdentityLimitReached",
    "IdentityNotHeld",
    "InsufficientPoints",
    "InvalidInput",
    "LastIdentity",
    "LevelGroupNotFound",
    "LevelNotFound",
    "MergeNotFound",
    "MergeNotUndoable",
    "OrderNotFound",
    "OverrideNotFound",
    "PointTypeNotFound",
    "PointsNotRedeemable",
    "ProgramNotFound",
    "RedemptionNotFound",
    "RefundExceedsOrder",
    "ReversalExceedsRedemption",
    "ReversalWindowClosed",
    "RoleNotHeld",
    "TagLimitReached",
    "UnknownReferrer",
]
