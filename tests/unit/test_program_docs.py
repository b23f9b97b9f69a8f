"""docs/program.md cannot drift from the code: its example programs are validated here.

A ```json block right after a ``<!-- program: full -->`` line is a whole program document and must
pass ``validate_program``; the block after ``<!-- program: invalid -->`` must fail with exactly
the problems the response block after it lists. Any other block that looks like a program (a
top-level ``currency``) must carry one of the two marks, so a new example cannot escape the test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from application.program import country_exists, timezone_exists
from domain.earning import Line, OrderFacts, earn, portions_of
from domain.errors import InvalidInput
from domain.loyalty import POINT_TYPE_KEYS, loyalty_of
from domain.program import validate_program

DOC = Path(__file__).resolve().parents[2] / "docs" / "program.md"
FENCE = re.compile(r"^```json\n(.*?)^```", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!-- program: (full|invalid) -->\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    mark: str | None
    heading: str
    value: Any


def _blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        mark = MARK.search(before[-1]) if before else None
        heading = next((ln for ln in reversed(before) if ln.startswith("#")), "")
        blocks.append(
            Block(
                line=len(before) + 1,
                mark=mark.group(1) if mark else None,
                heading=heading,
                value=json.loads(m.group(1)),
            )
        )
    return blocks


BLOCKS = _blocks()
FULL = [b for b in BLOCKS if b.mark == "full"]


def validate(document: Any) -> dict[str, Any]:
    return validate_program(
        document, timezone_exists=timezone_exists, country_exists=country_exists
    )


def test_every_json_block_of_the_page_parses_and_there_are_full_programs() -> None:
    assert len(BLOCKS) >= 6
    assert len(FULL) >= 3


@pytest.mark.parametrize("block", FULL, ids=[f"line {b.line}" for b in FULL])
def test_every_full_program_of_the_docs_is_valid(block: Block) -> None:
    assert validate(block.value) == block.value


def test_every_program_shaped_block_is_marked_full_or_invalid() -> None:
    unmarked = [
        b.line for b in BLOCKS if isinstance(b.value, dict) and "currency" in b.value and not b.mark
    ]
    assert unmarked == []


def test_the_invalid_example_fails_with_exactly_the_problems_the_docs_list() -> None:
    [n] = [n for n, b in enumerate(BLOCKS) if b.mark == "invalid"]
    response = BLOCKS[n + 1].value
    with pytest.raises(InvalidInput) as raised:
        validate(BLOCKS[n].value)
    got = [{"field": p.field, "reason": p.reason} for p in raised.value.problems]
    assert got == response["errors"]
    assert str(raised.value).startswith(response["detail"].removesuffix("..."))


def full_example() -> dict[str, Any]:
    [block] = [b for b in FULL if "example" in b.heading.lower() and "full" in b.heading.lower()]
    value: dict[str, Any] = block.value
    return value


def test_the_full_example_has_both_ladders_both_point_types_and_benefits() -> None:
    doc = full_example()
    assert set(doc) == {
        "currency",
        "timezone",
        "point_types",
        "level_groups",
        "benefits",
        "identity",
        "attributes",
        "roles",
        "survivorship",
        "staff_alerts",
    }
    rules = loyalty_of(doc, 1)
    points, growth = rules.point_types["points"], rules.point_types["growth"]
    assert (points.name, points.redeemable, points.expiry.mode) == ("积分", True, "yearly_clearing")
    assert (growth.name, growth.redeemable) == ("成长值", False)
    # Every earn-rule kind and condition appears.
    kinds = {r.kind for r in points.earn}
    assert kinds == {"per_amount", "per_order", "multiplier"}
    assert any(r.categories for r in points.earn)
    assert any(r.channels for r in points.earn)
    assert any(r.stores for r in points.earn)
    assert any(r.min_amount for r in points.earn)
    assert any(r.level_group for r in points.earn)
    assert any(r.birthday for r in points.earn)

    consumer, agent = rules.level_groups["consumer"], rules.level_groups["agent"]
    assert (consumer.role, consumer.basis) == ("consumer", "growth")
    assert [(lv.code, lv.name) for lv in consumer.levels] == [
        ("normal", "普通"),
        ("gold", "黄金"),
        ("platinum", "白金"),
    ]
    assert (agent.role, agent.basis) == ("agent", "spend")
    assert [(lv.code, lv.name) for lv in agent.levels] == [
        ("rookie", "新手团长"),
        ("gold_leader", "金牌团长"),
    ]
    granted = {b for g in rules.level_groups.values() for lv in g.levels for b in lv.benefits}
    assert granted <= set(rules.benefits)
    assert rules.benefits["lounge"].enabled is False


def test_the_full_example_worked_earn_is_what_the_engine_computes() -> None:
    # "A gold member's ¥399.00 all-skincare mini-program order in their birthday month earns
    # 399 + 399 + 20 = 818 base x 1.5 x 2 = 2454 points" (and 399 growth).
    rules = loyalty_of(full_example(), 1)
    facts = OrderFacts(
        channel="mini_program",
        store_id=None,
        amount=39900,
        portions=portions_of(39900, [Line("1", "SERUM-30", 1, 39900, "skincare")]),
        local_date=date(2026, 3, 10),
        birthday=date(1990, 3, 21),
        levels={"consumer": "gold"},
    )
    assert sum(earn(rules.point_types["points"], facts)) == 2454
    assert sum(earn(rules.point_types["growth"], facts)) == 399


def test_the_docs_name_every_field_the_validator_accepts() -> None:
    text = DOC.read_text(encoding="utf-8")
    fields: tuple[str, ...] = (
        *("currency", "timezone", "point_types", "level_groups", "benefits", "identity"),
        *("attributes", "roles", "survivorship", "staff_alerts"),
        # point types and earn rules
        *("redeemable", "earn", "expiry", "burn_order", "refund_policy", "pending_days"),
        *("rounding", "caps", "per_order", "per_amount", "points", "multiplier", "categories"),
        *("skus", "channels", "stores", "min_amount", "levels", "birthday"),
        *("rolling_days", "end_of_period", "yearly_clearing", "never", "days", "period"),
        *("periods", "month", "day", "soonest_expiry", "oldest_first", "negative", "clamp"),
        *("floor", "half_up", "ceil"),
        # level groups
        *("role", "basis", "window", "assessment", "downgrade", "warning_days", "threshold"),
        *("lifetime", "calendar", "anniversary", "rolling", "one_step", "recompute"),
        # benefits
        *("enabled", "quota", "count", "validity_days"),
        # the rest
        *("default_country", "rules", "default", "match", "max_customers", "identify"),
        *("suggest", "none", "type", "values", "required", "label", "fields"),
        *("owner_removals", "window_minutes"),
    )
    fields += POINT_TYPE_KEYS
    in_code = " ".join(re.findall(r"`([^`\n]+)`", text))
    missing = [f for f in fields if not re.search(rf"(?<![\w]){f}(?![\w])", in_code)]
    assert missing == []
