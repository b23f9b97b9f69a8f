"""The loyalty sections of a program document cross-checked together (``validate_loyalty``), and
a validated document parsed into :class:`LoyaltyRules` (``loyalty_of``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.loyalty.benefits import benefit_of, validate_benefits
from domain.loyalty.levels import group_of, validate_level_groups
from domain.loyalty.point_types import point_type_of, validate_point_types
from domain.loyalty.rules import (
    LoyaltyRules,
)
from domain.problems import Problems


def validate_loyalty(p: Problems, doc: Mapping[str, Any]) -> None:
    """Point types, level groups and benefits of a program document, cross-checked."""
    point_types = validate_point_types(p, doc.get("point_types"))
    benefits = validate_benefits(p, doc.get("benefits", []))
    declared = doc.get("roles", [])
    roles = {"consumer", "agent", "partner", "store_manager", "guide"} | {
        r["code"]
        for r in (declared if isinstance(declared, list) else [])
        if isinstance(r, dict) and isinstance(r.get("code"), str)
    }
    validate_level_groups(p, doc.get("level_groups", []), point_types, benefits, roles)
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


def loyalty_of(document: Mapping[str, Any], version: int) -> LoyaltyRules:
    """The loyalty rules of a validated document."""
    return LoyaltyRules(
        version=version,
        currency=document.get("currency", "CNY"),
        timezone=document.get("timezone", "UTC"),
        point_types={pt["code"]: point_type_of(pt) for pt in document.get("point_types", [])},
        level_groups={g["code"]: group_of(g) for g in document.get("level_groups", [])},
        benefits={b["code"]: benefit_of(b) for b in document.get("benefits", [])},
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
