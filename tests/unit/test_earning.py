"""Earn rules and exact refund reversal (domain.earning, domain.order)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.earning import REST, WHOLE, Line, OrderFacts, earn, portions_of, split
from domain.errors import InvalidInput, RefundExceedsOrder
from domain.loyalty import EarnRule, PointTypeRules
from domain.order import Order

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def facts(amount: int, lines: list[Line] | None = None, **kw: object) -> OrderFacts:
    base: dict[str, object] = {
        "channel": "tmall",
        "store_id": None,
        "amount": amount,
        "portions": portions_of(amount, lines or []),
        "local_date": date(2026, 3, 1),
    }
    base.update(kw)
    return OrderFacts(**base)  # type: ignore[arg-type]


def per_amount(per: int = 100, points: int = 1, **kw: object) -> EarnRule:
    return EarnRule("per_amount", per_amount=per, points=points, **kw)  # type: ignore[arg-type]


def points_type(*rules: EarnRule, **kw: object) -> PointTypeRules:
    return PointTypeRules("points", "points", earn=rules, **kw)  # type: ignore[arg-type]


def test_per_amount_earns_floor_of_amount_over_per_amount_times_points() -> None:
    assert sum(earn(points_type(per_amount(100, 3)), facts(2933))) == 87


def test_zero_amount_order_earns_nothing_by_amount_but_per_order_points() -> None:
    pt = points_type(per_amount(), EarnRule("per_order", points=10))
    assert sum(earn(pt, facts(0))) == 10


def test_min_amount_keeps_small_orders_from_a_rule() -> None:
    pt = points_type(EarnRule("per_order", points=10, min_amount=5000))
    assert sum(earn(pt, facts(4999))) == 0
    assert sum(earn(pt, facts(5000))) == 10


def test_channel_and_store_rules_apply_only_there() -> None:
    pt = points_type(per_amount(100, 2, channels=frozenset({"pos"}), stores=frozenset({"s1"})))
    assert sum(earn(pt, facts(1000, channel="pos", store_id="s1"))) == 20
    assert sum(earn(pt, facts(1000, channel="pos", store_id="s2"))) == 0
    assert sum(earn(pt, facts(1000, channel="tmall", store_id="s1"))) == 0


def test_category_rule_earns_on_matching_lines_only() -> None:
    lines = [Line("a", "sku1", 1, 3000, "shoes"), Line("b", "sku2", 1, 2000, "bags")]
    pt = points_type(per_amount(100, 1, categories=frozenset({"shoes"})))
    assert earn(pt, facts(5000, lines)) == (30, 0)


def test_level_multiplier_applies_to_members_of_the_listed_levels() -> None:
    rule = EarnRule(
        "multiplier", factor=Fraction(3, 2), level_group="consumer", levels=frozenset({"gold"})
    )
    pt = points_type(per_amount(), rule)
    assert sum(earn(pt, facts(1000, levels={"consumer": "gold"}))) == 15
    assert sum(earn(pt, facts(1000, levels={"consumer": "normal"}))) == 10


def test_birthday_multiplier_by_day_and_by_month() -> None:
    day = EarnRule("multiplier", factor=Fraction(2), birthday="day")
    month = EarnRule("multiplier", factor=Fraction(2), birthday="month")
    on_day = facts(1000, birthday=date(1990, 3, 1))
    in_month = facts(1000, birthday=date(1990, 3, 20))
    assert sum(earn(points_type(per_amount(), day), on_day)) == 20
    assert sum(earn(points_type(per_amount(), day), in_month)) == 10
    assert sum(earn(points_type(per_amount(), month), in_month)) == 20


def test_rounding_modes_round_the_multiplied_total() -> None:
    rule = EarnRule("multiplier", factor=Fraction(3, 2))
    f = facts(500)  # base 5, x1.5 = 7.5
    assert sum(earn(points_type(per_amount(), rule), f)) == 7
    assert sum(earn(points_type(per_amount(), rule, rounding="half_up"), f)) == 8
    assert sum(earn(points_type(per_amount(), rule, rounding="ceil"), f)) == 8


def test_cap_per_order_limits_the_total() -> None:
    assert sum(earn(points_type(per_amount(), cap_per_order=50), facts(100_000))) == 50


def test_lines_short_of_the_amount_leave_a_rest_portion() -> None:
    portions = portions_of(1000, [Line("a", "s", 1, 600)])
    assert [(p.key, p.amount) for p in portions] == [("a", 600), (REST, 400)]
    assert [p.key for p in portions_of(1000, [])] == [WHOLE]


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_split_parts_sum_to_the_total_and_never_exceed_their_share(
    total: int, weights: list[int]
) -> None:
    parts = split(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    if whole:
        for part, w in zip(parts, weights, strict=True):
            assert part * whole <= total * w + whole  # at most one above the exact share


def placed(amount: int, portions: list[dict[str, object]]) -> Order:
    return Order.place(
        channel="tmall",
        order_id=f"o-{uuid4()}",
        customer_id=uuid4(),
        placed_at=AT,
        placed_on=AT.date(),
        amount=amount,
        portions=portions,
        store_id=None,
        staff_id=None,
        agent_id=None,
        program_version=1,
        fingerprint="x",
        outcome={},
        at=AT,
    )


def test_refund_by_lines_reverses_what_those_lines_earned() -> None:
    order = placed(
        5000,
        [
            {"key": "a", "amount": 3000, "earned": {"points": 30}},
            {"key": "b", "amount": 2000, "earned": {"points": 20}},
        ],
    )
    plan = order.plan_refund("r1", amount=None, lines={"b": 2000})
    assert plan.reversed == {"points": 20}
    assert plan.amount == 2000


def test_refund_of_more_than_a_line_has_left_is_refused_naming_the_line() -> None:
    order = placed(1000, [{"key": "a", "amount": 1000, "earned": {}}])
    with pytest.raises(RefundExceedsOrder) as e:
        order.plan_refund("r1", amount=None, lines={"a": 1001})
    assert e.value.line_id == "a"
    assert e.value.refundable == 1000


def test_refund_naming_an_unknown_line_is_invalid() -> None:
    order = placed(1000, [{"key": "a", "amount": 1000, "earned": {}}])
    with pytest.raises(InvalidInput):
        order.plan_refund("r1", amount=None, lines={"zz": 1})


def test_refund_beyond_what_remains_is_refused() -> None:
    order = placed(1000, [{"key": WHOLE, "amount": 1000, "earned": {"points": 10}}])
    order.refund(
        order.plan_refund("r1", amount=600, lines=None),
        fingerprint="f",
        outcome={},
        program_version=1,
        at=AT,
    )
    with pytest.raises(RefundExceedsOrder) as e:
        order.plan_refund("r2", amount=401, lines=None)
    assert e.value.refundable == 400


@given(
    st.lists(st.tuples(st.integers(1, 10**7), st.integers(0, 10**5)), min_size=1, max_size=5),
    st.lists(st.integers(1, 10**7), min_size=1, max_size=8),
)
def test_partial_refunds_reverse_monotonically_and_all_of_it_once_refunded_in_full(
    portions: list[tuple[int, int]], refunds: list[int]
) -> None:
    order = placed(
        sum(a for a, _ in portions),
        [{"key": f"l{n}", "amount": a, "earned": {"p": e}} for n, (a, e) in enumerate(portions)],
    )
    earned = sum(e for _, e in portions)
    for n, amount in enumerate(refunds):
        amount = min(amount, order.refundable)
        if amount == 0:
            break
        plan = order.plan_refund(f"r{n}", amount=amount, lines=None)
        assert sum(plan.by_portion.values()) == amount
        order.refund(plan, fingerprint="f", outcome={}, program_version=1, at=AT)
        assert 0 <= order.points_reversed.get("p", 0) <= earned
    if order.refundable:
        order.refund(
            order.plan_refund("last", amount=order.refundable, lines=None),
            fingerprint="f",
            outcome={},
            program_version=1,
            at=AT,
        )
    assert order.points_reversed.get("p", 0) == earned
    assert order.refunded_total == order.amount
