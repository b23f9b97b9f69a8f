"""The ``level_groups`` section of a program: ladders checked (every problem listed) and parsed
into :class:`LevelGroupRules` (window, assessment, levels and their benefits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.loyalty.rules import (
    ASSESSMENT_MODES,
    DOWNGRADES,
    MAX_THRESHOLD,
    PERIODS,
    WINDOW_MODES,
    Assessment,
    LevelGroupRules,
    LevelRules,
    Window,
)
from domain.problems import Problems


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


def validate_level_groups(
    p: Problems, value: Any, point_types: set[str], benefits: set[str], roles: set[Any]
) -> None:
    keys = ("code", "name", "role", "basis", "window", "assessment", "levels")
    for path, g, _ in p.coded(value, "level_groups", keys, "level group"):
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
    previous = -1
    keys = ("code", "name", "threshold", "benefits")
    for n, (lpath, lv, _) in enumerate(p.coded(levels, path, keys, "level")):
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


def group_of(g: Mapping[str, Any]) -> LevelGroupRules:
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
