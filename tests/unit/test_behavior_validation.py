"""RecordBehaviors input: per-type ``data`` rules, folding, field-named problems, fingerprints."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.behaviors import (
    BEHAVIOR_TYPES,
    DATA_FIELDS,
    MAX_BATCH,
    MAX_INT,
    BehaviorInput,
    IntRule,
    TextRule,
    parse_behaviors,
)
from domain.errors import InvalidInput
from domain.values import fold_text

CUSTOMER = UUID("982b55cd-79ed-4383-8da3-bc5c9afc6b84")
AT = datetime(2026, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))

VALID_DATA: dict[str, dict[str, Any]] = {
    "page_view": {
        "url": "https://shop.example.com/p/1",
        "title": "Tea",
        "referrer": "https://x.cn",
    },
    "product_view": {"sku": "TEA-001", "category": "tea"},
    "search": {"query": "green tea", "results": 12},
    "add_to_cart": {"sku": "TEA-001", "quantity": 2, "amount": 3990},
    "feedback": {"rating": 5, "text": "Lovely.\nWill buy again."},
}


def item(type_: str = "search", n: int = 0, **changes: Any) -> BehaviorInput:
    base = BehaviorInput(
        event_id=f"ev-{n}",
        customer_id=CUSTOMER,
        type=type_,
        occurred_at=AT,
        data=dict(VALID_DATA[type_]),
        channel="miniprogram",
    )
    return replace(base, **changes)


def problems_of(items: list[BehaviorInput]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse_behaviors(items)
    return {p.field: p.reason for p in caught.value.problems}


# -- valid input ------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", BEHAVIOR_TYPES)
def test_each_type_with_its_documented_fields_parses_to_the_same_data(type_: str) -> None:
    [parsed] = parse_behaviors([item(type_)])
    assert parsed.type == type_
    assert parsed.data == VALID_DATA[type_]
    assert parsed.customer_id == CUSTOMER
    assert parsed.channel == "miniprogram"


def test_occurred_at_is_normalised_to_the_same_instant_in_utc() -> None:
    [parsed] = parse_behaviors([item()])
    assert parsed.occurred_at == AT
    assert parsed.occurred_at.utcoffset() == timedelta(0)
    assert parsed.occurred_at.hour == 2


def test_text_is_folded_from_full_width_and_trimmed() -> None:
    [parsed] = parse_behaviors(
        [
            item(
                data={"query": "  \uff47\uff52\uff45\uff45\uff4e tea ", "results": 0},
                channel=" app ",
            )
        ]
    )
    assert parsed.data == {"query": "green tea", "results": 0}
    assert parsed.channel == "app"


def test_null_or_blank_optional_fields_are_dropped() -> None:
    [parsed] = parse_behaviors(
        [item("page_view", data={"url": "https://a.cn/", "title": "  ", "referrer": None})]
    )
    assert parsed.data == {"url": "https://a.cn/"}


def test_feedback_text_keeps_line_breaks_and_normalises_carriage_returns() -> None:
    [parsed] = parse_behaviors([item("feedback", data={"text": "good\r\nfast\tdelivery\rthanks"})])
    assert parsed.data == {"text": "good\nfast\tdelivery\nthanks"}


def test_feedback_with_only_a_rating_or_only_text_is_valid() -> None:
    parsed = parse_behaviors(
        [item("feedback", 0, data={"rating": 1}), item("feedback", 1, data={"text": "meh"})]
    )
    assert [p.data for p in parsed] == [{"rating": 1}, {"text": "meh"}]


def test_a_full_batch_of_1000_items_parses() -> None:
    assert len(parse_behaviors([item(n=n) for n in range(MAX_BATCH)])) == MAX_BATCH


# -- invalid input names the field ------------------------------------------------------------


def test_missing_required_data_field_names_it() -> None:
    problems = problems_of([item(), item(n=1), item(n=2), item(n=3, data={"results": 1})])
    assert problems == {"behaviors[3].data.query": "is required"}


def test_unknown_data_field_is_refused_naming_it() -> None:
    problems = problems_of([item("product_view", data={"sku": "A", "colour": "red"})])
    assert problems == {"behaviors[0].data.colour": "is not a field of product_view"}


def test_boolean_is_not_an_integer() -> None:
    problems = problems_of([item("add_to_cart", data={"sku": "A", "quantity": True})])
    assert problems == {"behaviors[0].data.quantity": "must be an integer"}


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        ("add_to_cart", {"sku": "A", "quantity": 0}, "quantity"),
        ("add_to_cart", {"sku": "A", "quantity": 1, "amount": -1}, "amount"),
        ("search", {"query": "q", "results": -1}, "results"),
        ("feedback", {"rating": 6}, "rating"),
        ("feedback", {"rating": 0}, "rating"),
        ("search", {"query": "q", "results": MAX_INT + 1}, "results"),
    ],
)
def test_integers_out_of_range_are_refused(type_: str, data: dict[str, Any], field: str) -> None:
    problems = problems_of([item(type_, data=data)])
    assert list(problems) == [f"behaviors[0].data.{field}"]
    assert problems[f"behaviors[0].data.{field}"].startswith("must be between")


@pytest.mark.parametrize(
    ("type_", "field", "limit"),
    [("page_view", "url", 2048), ("search", "query", 512), ("feedback", "text", 2000)],
)
def test_text_over_its_limit_after_folding_is_refused(type_: str, field: str, limit: int) -> None:
    data = {**VALID_DATA[type_], field: "x" * (limit + 1)}
    assert problems_of([item(type_, data=data)]) == {
        f"behaviors[0].data.{field}": f"must be at most {limit} characters"
    }
    data[field] = " " + "x" * limit + " "
    assert parse_behaviors([item(type_, data=data)])[0].data[field] == "x" * limit


def test_control_characters_are_refused_in_single_line_text() -> None:
    problems = problems_of([item(data={"query": "a\nb"})])
    assert problems == {"behaviors[0].data.query": "must not contain control characters"}


def test_feedback_needs_a_rating_or_a_non_blank_text() -> None:
    problems = problems_of([item("feedback", data={}), item("feedback", 1, data={"text": "  "})])
    assert set(problems) == {"behaviors[0].data", "behaviors[1].data"}


def test_blank_required_text_is_refused() -> None:
    assert problems_of([item("product_view", data={"sku": " \u3000 "})]) == {
        "behaviors[0].data.sku": "must not be empty"
    }


def test_top_level_problems_name_their_fields_across_the_batch() -> None:
    problems = problems_of(
        [
            item(n=0, event_id="has space"),
            item(n=1, occurred_at=datetime(2026, 5, 1)),  # naive on purpose
            item(n=2, type="checkout"),
            item(n=3, channel="tm\x00all"),
        ]
    )
    assert set(problems) == {
        "behaviors[0].event_id",
        "behaviors[1].occurred_at",
        "behaviors[2].type",
        "behaviors[3].channel",
    }


def test_an_empty_or_oversized_batch_is_refused() -> None:
    assert set(problems_of([])) == {"behaviors"}
    assert set(problems_of([item(n=n) for n in range(MAX_BATCH + 1)])) == {"behaviors"}


# -- fingerprints -----------------------------------------------------------------------------


def test_fingerprint_ignores_key_order_utc_offset_and_character_width() -> None:
    a = parse_behaviors([item(data={"query": "green tea", "results": 3})])[0]
    b = parse_behaviors(
        [
            item(
                data={"results": 3, "query": "\uff47reen tea "},
                occurred_at=AT.astimezone(UTC),
            )
        ]
    )[0]
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 32


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"query": "black tea", "results": 12}},
        {"data": {"query": "green tea"}},
        {"occurred_at": AT + timedelta(microseconds=1)},
        {"channel": None},
        {"customer_id": UUID(int=1)},
        {"type": "product_view", "data": {"sku": "green tea"}},
    ],
)
def test_fingerprint_changes_with_any_content_change(change: dict[str, Any]) -> None:
    a = parse_behaviors([item()])[0]
    b = parse_behaviors([item(**change)])[0]
    assert a.fingerprint != b.fingerprint


# -- properties -------------------------------------------------------------------------------


def _is_stable_text(value: str) -> bool:
    return bool(value) and fold_text(value) == value and "\x00" not in value


def _folded_text(max_length: int, multiline: bool) -> st.SearchStrategy[str]:
    excluded = ["Cs", "Cc"]
    chars = st.characters(exclude_categories=excluded)
    if multiline:
        chars = chars | st.sampled_from("\n\t")
    return (
        st.text(chars, min_size=1, max_size=min(max_length, 40))
        .map(lambda s: unicodedata.normalize("NFKC", s).strip())
        .filter(lambda s: _is_stable_text(s) and len(s) <= max_length)
    )


def _value(spec: TextRule | IntRule) -> st.SearchStrategy[Any]:
    if isinstance(spec, TextRule):
        return _folded_text(spec.max_length, spec.multiline)
    return st.integers(spec.minimum, spec.maximum)


@st.composite
def valid_data(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, spec in DATA_FIELDS[type_].items():
        if spec.required or draw(st.booleans()):
            data[name] = draw(_value(spec))
    if type_ == "feedback" and not data:
        data["rating"] = draw(st.integers(1, 5))
    return data


@st.composite
def valid_items(draw: st.DrawFn) -> BehaviorInput:
    type_ = draw(st.sampled_from(BEHAVIOR_TYPES))
    offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60)))
    return BehaviorInput(
        event_id=draw(st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z")),
        customer_id=draw(st.uuids()),
        type=type_,
        occurred_at=draw(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
        ).replace(tzinfo=timezone(offset)),
        data=draw(valid_data(type_)),
        channel=draw(st.none() | _folded_text(64, multiline=False)),
    )


@given(valid_items())
def test_property_any_valid_item_round_trips(raw: BehaviorInput) -> None:
    [parsed] = parse_behaviors([raw])
    assert (parsed.event_id, parsed.customer_id, parsed.type, parsed.channel) == (
        raw.event_id,
        raw.customer_id,
        raw.type,
        raw.channel,
    )
    assert parsed.occurred_at == raw.occurred_at
    assert parsed.data == raw.data
    # Parsing what was stored gives it back unchanged, fingerprint included.
    [again] = parse_behaviors(
        [
            BehaviorInput(
                parsed.event_id,
                parsed.customer_id,
                parsed.type,
                parsed.occurred_at,
                parsed.data,
                parsed.channel,
            )
        ]
    )
    assert again == parsed
    assert again.fingerprint == parsed.fingerprint


def _bad_values(spec: TextRule | IntRule) -> st.SearchStrategy[Any]:
    if isinstance(spec, TextRule):
        controls = "\x00\x07\x1b\x7f" if spec.multiline else "\x00\n\t\x1b\x7f"
        return st.one_of(
            st.integers(),
            st.booleans(),
            st.lists(st.integers(), max_size=2),
            st.just("x" * (spec.max_length + 1)),
            st.sampled_from(controls).map(lambda c: f"a{c}b"),
        )
    return st.one_of(
        st.text(max_size=3),
        st.booleans(),
        st.floats(allow_nan=False),
        st.integers(max_value=spec.minimum - 1),
        st.integers(min_value=spec.maximum + 1),
    )


@st.composite
def corrupted_batches(draw: st.DrawFn) -> tuple[list[BehaviorInput], str]:
    """A batch of valid items, one of which has one bad field; and that field's path."""
    items = draw(st.lists(valid_items(), min_size=1, max_size=4))
    n = draw(st.integers(0, len(items) - 1))
    target = items[n]
    at = f"behaviors[{n}]"
    specs = DATA_FIELDS[target.type]
    kind = draw(st.sampled_from(["value", "missing", "unknown", "event_id", "time", "type"]))
    required = [name for name, spec in specs.items() if spec.required]
    if kind == "missing" and required:
        name = draw(st.sampled_from(required))
        data = {k: v for k, v in target.data.items() if k != name}
        items[n] = replace(target, data=data)
        return items, f"{at}.data.{name}"
    if kind == "unknown":
        name = draw(st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda s: s not in specs))
        items[n] = replace(target, data={**target.data, name: draw(st.integers())})
        return items, f"{at}.data.{name}"
    if kind == "event_id":
        bad = draw(st.sampled_from(["", "x" * 129, "a b", "a/b", "\u00e9", "a\x00"]))
        items[n] = replace(target, event_id=bad)
        return items, f"{at}.event_id"
    if kind == "time":
        items[n] = replace(target, occurred_at=target.occurred_at.replace(tzinfo=None))
        return items, f"{at}.occurred_at"
    if kind == "type":
        bad_type = draw(st.text(max_size=12).filter(lambda s: s not in BEHAVIOR_TYPES))
        items[n] = replace(target, type=bad_type)
        return items, f"{at}.type"
    name = draw(st.sampled_from(sorted(specs)))
    items[n] = replace(target, data={**target.data, name: draw(_bad_values(specs[name]))})
    return items, f"{at}.data.{name}"


@given(corrupted_batches())
def test_property_any_invalid_field_yields_a_problem_naming_it(
    case: tuple[list[BehaviorInput], str],
) -> None:
    items, field = case
    with pytest.raises(InvalidInput) as caught:
        parse_behaviors(items)
    assert field in {p.field for p in caught.value.problems}, caught.value.problems
