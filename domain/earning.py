"""What an order earns, and what a refund of part of it takes back: pure and exact.

An order is split into *portions*: its lines, plus a ``_rest`` portion for any amount the lines
do not cover (shipping, fees); an order without lines is one ``_order`` portion. Each point
type's earn is allocated over the portions (largest remainder, ties to the earlier portion), so a
refund can reverse exactly what the refunded part earned: after refunding ``r`` of a portion of
amount ``a`` that earned ``e``, ``floor(e * r / a)`` of it is reversed in total, and all of it
once the portion is refunded in full. Sums are exact at every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from domain.loyalty import EarnRule, PointTypeRules

REST = "_rest"
WHOLE = "_order"


@dataclass(frozen=True)
class Line:
    line_id: str
    sku: str
    quantity: int
    amount: int
    category: str | None = None


@dataclass(frozen=True)
class Portion:
    key: str
    amount: int
    sku: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class OrderFacts:
    """What earn rules look at. ``levels``: group -> level code when the order was placed;
    ``local_date``: the order's date in the tenant time zone (birthday rules)."""

    channel: str
    store_id: str | None
    amount: int
    portions: tuple[Portion, ...]
    local_date: date
    birthday: date | None = None
    levels: Mapping[str, str] | None = None


def portions_of(amount: int, lines: Sequence[Line]) -> tuple[Portion, ...]:
    """The order's portions; the caller has checked that the lines do not exceed ``amount``."""
    if not lines:
        return (Portion(WHOLE, amount),)
    portions = [Portion(ln.line_id, ln.amount, ln.sku, ln.category) for ln in lines]
    rest = amount - sum(ln.amount for ln in lines)
    if rest > 0:
        portions.append(Portion(REST, rest))
    return tuple(portions)


def split(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder; ties to the earlier).

    All weights zero: everything to the first. The parts always sum to ``total``.
    """
    if not weights:
        return []
    whole = sum(weights)
    if whole == 0:
        return [total] + [0] * (len(weights) - 1)
    parts = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda n: (-(total * weights[n] % whole), n))
    for n in remainders[: total - sum(parts)]:
        parts[n] += 1
    return parts


def _applies(rule: EarnRule, facts: OrderFacts) -> bool:
    if rule.channels and facts.channel not in rule.channels:
        return False
    if rule.stores and facts.store_id not in rule.stores:
        return False
    return facts.amount >= rule.min_amount


def _eligible(rule: EarnRule, portion: Portion) -> bool:
    if rule.categories and portion.category not in rule.categories:
        return False
    return not (rule.skus and portion.sku not in rule.skus)


def _multiplier_holds(rule: EarnRule, facts: OrderFacts) -> bool:
    if not _applies(rule, facts):
        return False
    if rule.level_group is not None:
        level = (facts.levels or {}).get(rule.level_group)
        if level not in rule.levels:
            return False
    if rule.birthday is not None:
        born = facts.birthday
        if born is None or born.month != facts.local_date.month:
            return False
        if rule.birthday == "day" and born.day != facts.local_date.day:
            return False
    return True


def _round(value: Fraction, mode: str) -> int:
    if mode == "ceil":
        return -((-value.numerator) // value.denominator)
    if mode == "half_up":
        return int((value + Fraction(1, 2)).__floor__())
    return value.__floor__()


def earn(point_type: PointTypeRules, facts: OrderFacts) -> tuple[int, ...]:
    """Points of ``point_type`` the order earns, per portion (in ``facts.portions`` order).

    Base rules add up (per amount: ``floor(eligible / per_amount) * points``; per order: a
    fixed number); the multipliers that hold multiply the base together; the product is
    rounded by the type's rounding, capped per order, and allocated over the portions in
    proportion to what each contributed to the base.
    """
    portions = facts.portions
    base = [0] * len(portions)
    for rule in point_type.earn:
        if rule.kind == "multiplier" or not _applies(rule, facts):
            continue
        if rule.kind == "per_amount":
            eligible = (
                [p.amount if _eligible(rule, p) else 0 for p in portions]
                if rule.filters_lines
                else [p.amount for p in portions]
            )
            points = sum(eligible) // rule.per_amount * rule.points
        else:
            eligible = [p.amount for p in portions]
            points = rule.points
        for n, part in enumerate(split(points, eligible)):
            base[n] += part
    factor = Fraction(1)
    for rule in point_type.earn:
        if rule.kind == "multiplier" and _multiplier_holds(rule, facts):
            factor *= rule.factor
    total = _round(sum(base) * factor, point_type.rounding)
    if point_type.cap_per_order is not None:
        total = min(total, point_type.cap_per_order)
    return tuple(split(total, base)) if any(base) else tuple([0] * len(portions))


def reversed_so_far(earned: int, amount: int, refunded: int) -> int:
    """Of ``earned`` points on a portion of ``amount``, how many a refund of ``refunded`` (in
    total so far) takes back: all once refunded in full, ``floor(earned * refunded / amount)``
    before."""
    if refunded >= amount:
        return earned
    return earned * refunded // amount


def spread_refund(amount: int, refundable: Sequence[int]) -> list[int]:
    """A refund by amount spread over the portions in proportion to what each has left."""
    return split(amount, refundable)
