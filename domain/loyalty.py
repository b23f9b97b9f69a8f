"""The loyalty part of the program: point types, level groups and benefits.

Validated with the rest of the document (every problem listed) and parsed once per program
version into frozen rules the order, points, level and benefit commands read. Multipliers are
exact fractions (an integer or a decimal string such as ``"1.5"``): a float never enters a
points calculation.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any

from domain.problems import Problems

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


# -- validation ---------------------------------------------------------------------------------


def validate_loyalty(p: Problems, doc: Mapping[str, Any]) -> None:
    """Point types, level groups and benefits of a program document, cross-checked."""
    point_types = _point_types(p, doc.get("point_types"))
    benefits = _benefits(p, doc.get("benefits", []))
    declared = doc.get("roles", [])
    roles = {"consumer", "agent", "partner", "store_manager", "guide"} | {
        r["code"]
        for r in (declared if isinstance(declared, list) else [])
        if isinstance(r, dict) and isinstance(r.get("code"), str)
    }
    _level_groups(p, doc.get("level_groups", []), point_types, benefits, roles)
    _role_references(p, declared, point_types, _group_codes(doc))
    # Cross-check only what has the right shape: shape problems were reported above.
    types = doc.get("point_types")
    for n, pt in enumerate(types if isinstance(types, list) else []):
        earn = pt.get("earn") if isinstance(pt, dict) else None
        for m, rule in enumerate(earn if isinstance(earn, list) else []):
            levels = rule.get("levels") if isinstance(rule, dict) else None
            group = levels.get("group") if isinstance(levels, dict) else None
            if isinstance(group, str) and group not in _group_codes(doc):
                p.add(f"point_types[{n}].earn[{m}].levels.group", "not a level group")


def _role_references(p: Problems, declared: Any, point_types: set[str], groups: set[str]) -> None:
    """A role's ``point_types`` and ``level_groups`` must name what the program declares."""
    for n, r in enumerate(declared if isinstance(declared, list) else []):
        for key, known in (("point_types", point_types), ("level_groups", groups)):
            listed = r.get(key) if isinstance(r, dict) else None
            for m, code in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(code, str) and code not in known:
                    what = "point type" if key == "point_types" else "level group"
                    p.add(f"roles[{n}].{key}[{m}]", f"not a {what} of the program")


def _group_codes(doc: Mapping[str, Any]) -> set[str]:
    groups = doc.get("level_groups", [])
    if not isinstance(groups, list):
        return set()
    return {g["code"] for g in groups if isinstance(g, dict) and isinstance(g.get("code"), str)}


def _codes(p: Problems, value: Any, path: str) -> frozenset[str]:
    items = p.list(value, path)
    for n, c in enumerate(items):
        if not isinstance(c, str) or not c or len(c) > 128:
            p.add(f"{path}[{n}]", "must be a non-empty string of at most 128 characters")
    return frozenset(c for c in items if isinstance(c, str))


def _non_negative(p: Problems, raw: Mapping[str, Any], key: str, path: str) -> int:
    if key not in raw:
        return 0
    return p.positive_int(raw[key], f"{path}.{key}", minimum=0) or 0


def _factor(p: Problems, value: Any, path: str) -> Fraction:
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value >= 0) or (isinstance(value, str) and DECIMAL.match(value))
    ):
        p.add(path, 'must be a non-negative integer or a decimal string such as "1.5"')
        return Fraction(1)
    return Fraction(value)


def _earn_rule(p: Problems, value: Any, path: str) -> None:
    keys = ("per_amount", "points", "per_order", "multiplier", "categories", "skus", "levels")
    r = p.object(value, path, (*keys, *CONDITIONS, "birthday"))
    kinds = [k for k in ("per_amount", "per_order", "multiplier") if k in r]
    if len(kinds) != 1:
        p.add(path, "needs exactly one of per_amount, per_order, multiplier")
        return
    kind = kinds[0]
    if kind == "per_amount":
        p.positive_int(r.get("per_amount"), f"{path}.per_amount")
        p.positive_int(r.get("points"), f"{path}.points")
    elif kind == "per_order":
        p.positive_int(r.get("per_order"), f"{path}.per_order")
    else:
        _factor(p, r.get("multiplier"), f"{path}.multiplier")
    if kind != "per_amount":
        for key in ("points", "categories", "skus"):
            if key in r:
                p.add(f"{path}.{key}", "only per_amount rules have this")
    if kind != "multiplier":
        for key in ("levels", "birthday"):
            if key in r:
                p.add(f"{path}.{key}", "only multiplier rules have this")
    for key in ("channels", "stores", "categories", "skus"):
        if key in r:
            _codes(p, r[key], f"{path}.{key}")
    _non_negative(p, r, "min_amount", path)
    if "birthday" in r:
        p.choice(r["birthday"], f"{path}.birthday", BIRTHDAY_SCOPES)
    if "levels" in r:
        lv = p.object(r["levels"], f"{path}.levels", ("group", "in"))
        p.code(lv.get("group"), f"{path}.levels.group")
        if not _codes(p, lv.get("in"), f"{path}.levels.in"):
            p.add(f"{path}.levels.in", "name at least one level")


def _expiry(p: Problems, value: Any, path: str) -> None:
    e = p.object(value, path, ("mode", "days", "period", "periods", "month", "day"))
    mode = p.choice(e.get("mode"), f"{path}.mode", EXPIRY_MODES)
    if mode == "rolling_days":
        p.positive_int(e.get("days"), f"{path}.days")
    elif mode == "end_of_period":
        p.choice(e.get("period"), f"{path}.period", PERIODS)
        p.positive_int(e.get("periods", 0), f"{path}.periods", minimum=0)
    elif mode == "yearly_clearing":
        month = p.positive_int(e.get("month"), f"{path}.month")
        day = p.positive_int(e.get("day"), f"{path}.day")
        if month and day:
            try:
                date(2001, month, day)  # not a leap year: 29 February is refused
            except ValueError:
                p.add(f"{path}.day", "must be a day of that month (29 February is not allowed)")


POINT_TYPE_KEYS = (
    "code",
    "name",
    "redeemable",
    "earn",
    "expiry",
    "burn_order",
    "refund_policy",
    "pending_days",
    "rounding",
    "caps",
    "hold_timeout_minutes",
    "reversal_days",
)


def _point_types(p: Problems, value: Any) -> set[str]:
    types = p.list(value, "point_types")
    if isinstance(value, list) and not types:
        p.add("point_types", "at least one point type is required")
    seen: set[str] = set()
    for n, raw in enumerate(types):
        path = f"point_types[{n}]"
        pt = p.object(raw, path, POINT_TYPE_KEYS)
        code = p.code(pt.get("code"), f"{path}.code")
        if code in seen:
            p.add(f"{path}.code", f"duplicate point type {code!r}")
        seen.add(code or "")
        if "redeemable" in pt and not isinstance(pt["redeemable"], bool):
            p.add(f"{path}.redeemable", "must be a boolean")
        if "name" in pt and not isinstance(pt["name"], str):
            p.add(f"{path}.name", "must be a string")
        for m, rule in enumerate(p.list(pt.get("earn", []), f"{path}.earn")):
            _earn_rule(p, rule, f"{path}.earn[{m}]")
        _expiry(p, pt.get("expiry", {"mode": "never"}), f"{path}.expiry")
        if "burn_order" in pt:
            p.choice(pt["burn_order"], f"{path}.burn_order", BURN_ORDERS)
        if "refund_policy" in pt:
            p.choice(pt["refund_policy"], f"{path}.refund_policy", REFUND_POLICIES)
        if "rounding" in pt:
            p.choice(pt["rounding"], f"{path}.rounding", ROUNDINGS)
        if "pending_days" in pt:
            p.positive_int(pt["pending_days"], f"{path}.pending_days", minimum=0)
        if "reversal_days" in pt:
            days = p.positive_int(pt["reversal_days"], f"{path}.reversal_days")
            if days is not None and days > MAX_REVERSAL_DAYS:
                p.add(f"{path}.reversal_days", f"must be at most {MAX_REVERSAL_DAYS}")
        if "hold_timeout_minutes" in pt:
            minutes = p.positive_int(pt["hold_timeout_minutes"], f"{path}.hold_timeout_minutes")
            if minutes is not None and minutes > MAX_HOLD_TIMEOUT_MINUTES:
                p.add(f"{path}.hold_timeout_minutes", f"must be at most {MAX_HOLD_TIMEOUT_MINUTES}")
        caps = p.object(pt.get("caps", {}), f"{path}.caps", ("per_order",))
        if "per_order" in caps:
            p.positive_int(caps["per_order"], f"{path}.caps.per_order")
    return seen


def _window(p: Problems, value: Any, path: str) -> None:
    w = p.object(value, path, ("mode", "days", "period"))
    mode = p.choice(w.get("mode"), f"{path}.mode", WINDOW_MODES)
    if mode == "rolling_days":
        p.positive_int(w.get("days"), f"{path}.days")
    elif mode == "calendar":
        p.choice(w.get("period"), f"{path}.period", PERIODS)


def _assessment(p: Problems, value: Any, path: str) -> None:
    a = p.object(value, path, ("mode", "period", "downgrade", "warning_days"))
    mode = p.choice(a.get("mode"), f"{path}.mode", ASSESSMENT_MODES)
    if mode in ("anniversary", "calendar"):
        p.choice(a.get("period", "year"), f"{path}.period", PERIODS)
    elif "period" in a:
        p.add(f"{path}.period", "a rolling assessment runs every day: no period")
    if "downgrade" in a:
        p.choice(a["downgrade"], f"{path}.downgrade", DOWNGRADES)
    if "warning_days" in a:
        p.positive_int(a["warning_days"], f"{path}.warning_days", minimum=0)


def _level_groups(
    p: Problems, value: Any, point_types: set[str], benefits: set[str], roles: set[Any]
) -> None:
    seen: set[str] = set()
    keys = ("code", "name", "role", "basis", "window", "assessment", "levels")
    for n, raw in enumerate(p.list(value, "level_groups")):
        path = f"level_groups[{n}]"
        g = p.object(raw, path, keys)
        code = p.code(g.get("code"), f"{path}.code")
        if code in seen:
            p.add(f"{path}.code", f"duplicate level group {code!r}")
        seen.add(code or "")
        role = g.get("role", "consumer")
        if not isinstance(role, str) or role not in roles:
            p.add(f"{path}.role", "not a role of the program")
        basis = g.get("basis")
        if not isinstance(basis, str) or (basis != "spend" and basis not in point_types):
            p.add(f"{path}.basis", "must be spend or the code of a point type")
        _window(p, g.get("window", {"mode": "lifetime"}), f"{path}.window")
        _assessment(p, g.get("assessment", {"mode": "calendar"}), f"{path}.assessment")
        _levels(p, g.get("levels"), f"{path}.levels", benefits)


def _levels(p: Problems, value: Any, path: str, benefits: set[str]) -> None:
    levels = p.list(value, path)
    if isinstance(value, list) and not levels:
        p.add(path, "at least one level is required")
    seen: set[str] = set()
    previous = -1
    for n, raw in enumerate(levels):
        lpath = f"{path}[{n}]"
        lv = p.object(raw, lpath, ("code", "name", "threshold", "benefits"))
        code = p.code(lv.get("code"), f"{lpath}.code")
        if code in seen:
            p.add(f"{lpath}.code", f"duplicate level {code!r}")
        seen.add(code or "")
        threshold = p.positive_int(lv.get("threshold"), f"{lpath}.threshold", minimum=0)
        if threshold is not None:
            if n == 0 and threshold != 0:
                p.add(f"{lpath}.threshold", "the first level starts at 0")
            elif n > 0 and threshold <= previous:
                p.add(f"{lpath}.threshold", "thresholds must increase up the ladder")
            elif threshold > MAX_THRESHOLD:
                p.add(f"{lpath}.threshold", f"must be at most {MAX_THRESHOLD}")
            previous = threshold
        for m, b in enumerate(p.list(lv.get("benefits", []), f"{lpath}.benefits")):
            if not isinstance(b, str) or b not in benefits:
                p.add(f"{lpath}.benefits[{m}]", "not a benefit of the program")


def _benefits(p: Problems, value: Any) -> set[str]:
    seen: set[str] = set()
    keys = ("code", "name", "enabled", "quota", "validity_days")
    for n, raw in enumerate(p.list(value, "benefits")):
        path = f"benefits[{n}]"
        b = p.object(raw, path, keys)
        code = p.code(b.get("code"), f"{path}.code")
        if code in seen:
            p.add(f"{path}.code", f"duplicate benefit {code!r}")
        seen.add(code or "")
        if "enabled" in b and not isinstance(b["enabled"], bool):
            p.add(f"{path}.enabled", "must be a boolean")
        if "quota" in b:
            q = p.object(b["quota"], f"{path}.quota", ("count", "period"))
            p.positive_int(q.get("count"), f"{path}.quota.count")
            p.choice(q.get("period", "lifetime"), f"{path}.quota.period", QUOTA_PERIODS)
        if "validity_days" in b:
            p.positive_int(b["validity_days"], f"{path}.validity_days")
    return seen


# -- parsing a validated document ----------------------------------------------------------------


def loyalty_of(document: Mapping[str, Any], version: int) -> LoyaltyRules:
    """The loyalty rules of a validated document."""
    return LoyaltyRules(
        version=version,
        currency=document.get("currency", "CNY"),
        timezone=document.get("timezone", "UTC"),
        point_types={pt["code"]: _point_type_of(pt) for pt in document.get("point_types", [])},
        level_groups={g["code"]: _group_of(g) for g in document.get("level_groups", [])},
        benefits={b["code"]: _benefit_of(b) for b in document.get("benefits", [])},
        role_point_types=_role_lists(document, "point_types"),
        role_level_groups=_role_lists(document, "level_groups"),
    )


def _role_lists(document: Mapping[str, Any], key: str) -> dict[str, frozenset[str]]:
    """Role -> the codes it lists under ``key``; a role declared twice lists the union."""
    lists: dict[str, frozenset[str]] = {}
    for r in document.get("roles", []):
        if r.get(key):
            lists[r["code"]] = lists.get(r["code"], frozenset()) | frozenset(r[key])
    return lists


def _earn_rule_of(r: Mapping[str, Any]) -> EarnRule:
    common: dict[str, Any] = {
        "min_amount": r.get("min_amount", 0),
        "channels": frozenset(r.get("channels", ())),
        "stores": frozenset(r.get("stores", ())),
    }
    if "per_amount" in r:
        return EarnRule(
            "per_amount",
            per_amount=r["per_amount"],
            points=r["points"],
            categories=frozenset(r.get("categories", ())),
            skus=frozenset(r.get("skus", ())),
            **common,
        )
    if "per_order" in r:
        return EarnRule("per_order", points=r["per_order"], **common)
    levels = r.get("levels") or {}
    return EarnRule(
        "multiplier",
        factor=Fraction(r["multiplier"]),
        level_group=levels.get("group"),
        levels=frozenset(levels.get("in", ())),
        birthday=r.get("birthday"),
        **common,
    )


def _point_type_of(pt: Mapping[str, Any]) -> PointTypeRules:
    e = pt.get("expiry", {"mode": "never"})
    return PointTypeRules(
        code=pt["code"],
        name=pt.get("name", pt["code"]),
        redeemable=pt.get("redeemable", True),
        earn=tuple(_earn_rule_of(r) for r in pt.get("earn", [])),
        expiry=Expiry(
            mode=e["mode"],
            days=e.get("days", 0),
            period=e.get("period", "year"),
            periods=e.get("periods", 0),
            month=e.get("month", 12),
            day=e.get("day", 31),
        ),
        burn_order=pt.get("burn_order", "soonest_expiry"),
        refund_policy=pt.get("refund_policy", "negative"),
        pending_days=pt.get("pending_days", 0),
        rounding=pt.get("rounding", "floor"),
        cap_per_order=pt.get("caps", {}).get("per_order"),
        hold_timeout_minutes=pt.get("hold_timeout_minutes", DEFAULT_HOLD_TIMEOUT_MINUTES),
        reversal_days=pt.get("reversal_days", DEFAULT_REVERSAL_DAYS),
    )


def _group_of(g: Mapping[str, Any]) -> LevelGroupRules:
    w = g.get("window", {"mode": "lifetime"})
    a = g.get("assessment", {"mode": "calendar"})
    return LevelGroupRules(
        code=g["code"],
        name=g.get("name", g["code"]),
        role=g.get("role", "consumer"),
        basis=g["basis"],
        window=Window(w["mode"], w.get("days", 0), w.get("period", "year")),
        assessment=Assessment(
            a["mode"],
            a.get("period", "year"),
            a.get("downgrade", "one_step"),
            a.get("warning_days", 30),
        ),
        levels=tuple(
            LevelRules(
                lv["code"],
                lv.get("name", lv["code"]),
                lv["threshold"],
                tuple(lv.get("benefits", ())),
            )
            for lv in g["levels"]
        ),
    )


def _benefit_of(b: Mapping[str, Any]) -> BenefitRules:
    quota = b.get("quota")
    return BenefitRules(
        code=b["code"],
        name=b.get("name", b["code"]),
        enabled=b.get("enabled", True),
        quota_count=quota["count"] if quota else None,
        quota_period=quota.get("period", "lifetime") if quota else "lifetime",
        validity_days=b.get("validity_days"),
    )
