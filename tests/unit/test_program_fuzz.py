"""Any malformed program document is refused with every problem listed, never a crash: a valid
document with one node replaced by arbitrary JSON, validated as a whole."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from application.program import country_exists, timezone_exists
from domain.errors import InvalidInput
from domain.program import validate_program

VALID: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "name": "积分",
            "redeemable": True,
            "earn": [
                {"per_amount": 100, "points": 1, "categories": ["shoes"], "min_amount": 0},
                {"per_order": 5, "channels": ["pos"]},
                {"multiplier": "1.5", "levels": {"group": "consumer", "in": ["gold"]}},
                {"multiplier": 2, "birthday": "month"},
            ],
            "expiry": {"mode": "yearly_clearing", "month": 12, "day": 31},
            "burn_order": "soonest_expiry",
            "refund_policy": "clamp",
            "pending_days": 7,
            "rounding": "half_up",
            "caps": {"per_order": 1000},
        },
        {"code": "growth", "redeemable": False, "earn": [{"per_amount": 100, "points": 1}]},
    ],
    "benefits": [{"code": "free_shipping", "quota": {"count": 2, "period": "month"}}],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "growth",
            "window": {"mode": "rolling_days", "days": 365},
            "assessment": {"mode": "anniversary", "period": "year", "downgrade": "recompute"},
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 1000, "benefits": ["free_shipping"]},
            ],
        }
    ],
    "roles": [{"code": "vip_agent", "point_types": ["points"]}],
    "identity": {"default_country": "CN", "rules": {"phone": {"match": "suggest"}}},
    "attributes": [{"code": "city", "type": "string"}],
    "survivorship": {"default": "newest", "fields": {"name": "survivor_wins"}},
    "staff_alerts": {"owner_removals": 5, "window_minutes": 60},
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for n, v in enumerate(node):
            out.extend(paths(v, (*prefix, n)))
    return out


PATHS = paths(VALID)[1:]


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def validate(doc: Any) -> None:
    validate_program(doc, timezone_exists=timezone_exists, country_exists=country_exists)


def test_the_base_document_is_valid() -> None:
    validate(VALID)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PATHS), JSON)
def test_one_node_replaced_by_any_json_is_valid_or_a_listed_problem(
    path: tuple[Any, ...], value: Any
) -> None:
    problems: tuple[Any, ...] = ()
    try:
        validate(replaced(path, value))
    except InvalidInput as e:
        problems = e.problems
        assert problems, "a refusal lists its problems"
