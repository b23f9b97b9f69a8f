"""The ``point_types`` section of a program: checked (every problem listed) and parsed into
:class:`PointTypeRules` (earn rules, expiry, burn order, refund policy, holds, reversals)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from fractions import Fraction
from typing import Any

from domain.loyalty.rules import (
    BIRTHDAY_SCOPES,
    BURN_ORDERS,
    CONDITIONS,
    DECIMAL,
    DEFAULT_HOLD_TIMEOUT_MINUTES,
    DEFAULT_REVERSAL_DAYS,
    EXPIRY_MODES,
    MAX_HOLD_TIMEOUT_MINUTES,
    MAX_REVERSAL_DAYS,
    PERIODS,
    REFUND_POLICIES,
    ROUNDINGS,
    EarnRule,
    Expiry,
    PointTypeRules,
)
from domain.problems import Problems


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


def validate_point_types(p: Problems, value: Any) -> set[str]:
    types = p.list(value, "point_types")
    if isinstance(value, list) and not types:
        p.add("point_types", "at least one point type is required")
    seen: set[str] = set()
    for path, pt, code in p.coded(types, "point_types", POINT_TYPE_KEYS, "point type"):
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


def point_type_of(pt: Mapping[str, Any]) -> PointTypeRules:
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
