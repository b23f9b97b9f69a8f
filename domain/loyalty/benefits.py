"""The ``benefits`` section of a program: checked (every problem listed) and parsed into
:class:`BenefitRules`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.loyalty.rules import (
    QUOTA_PERIODS,
    BenefitRules,
)
from domain.problems import Problems


def validate_benefits(p: Problems, value: Any) -> set[str]:
    seen: set[str] = set()
    keys = ("code", "name", "enabled", "quota", "validity_days")
    for path, b, code in p.coded(value, "benefits", keys, "benefit"):
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


def benefit_of(b: Mapping[str, Any]) -> BenefitRules:
    quota = b.get("quota")
    return BenefitRules(
        code=b["code"],
        name=b.get("name", b["code"]),
        enabled=b.get("enabled", True),
        quota_count=quota["count"] if quota else None,
        quota_period=quota.get("period", "lifetime") if quota else "lifetime",
        validity_days=b.get("validity_days"),
    )
