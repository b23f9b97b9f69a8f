"""Identity.parse: normalisation (NFKC, trim, lower-case type) and validation naming the field."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.errors import FieldProblem, InvalidInput
from domain.values import MAX_IDENTITY_VALUE, Identity, parse_role


def full_width(text: str) -> str:
    """The full-width spelling of printable ASCII, as some channels send it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def problems_of(type_: str, value: str, field: str = "identities") -> tuple[FieldProblem, ...]:
    with pytest.raises(InvalidInput) as raised:
        Identity.parse(type_, value, field=field)
    return raised.value.problems


def test_full_width_helper_spells_ascii_in_full_width_forms() -> None:
    assert full_width("P1") == "\uff30\uff11"


def test_parse_folds_full_width_characters_in_type_and_value() -> None:
    identity = Identity.parse(full_width("PHONE"), full_width("13800138000"))

    assert identity == Identity("phone", "13800138000")


def test_parse_trims_ascii_and_ideographic_whitespace() -> None:
    identity = Identity.parse("  phone\t", "\u3000 13800138000 \n\u3000")

    assert identity == Identity("phone", "13800138000")


def test_parse_lower_cases_the_type_but_keeps_the_case_of_the_value() -> None:
    identity = Identity.parse("WeChat_UnionID", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M")

    assert identity == Identity("wechat_unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M")


def test_parse_gives_full_width_and_ascii_spellings_the_same_claim_id() -> None:
    assert (
        Identity.parse(full_width("phone"), f" {full_width('13800138000')}\u3000").claim_id
        == Identity.parse("phone", "13800138000").claim_id
    )


@pytest.mark.parametrize(
    "bad_type",
    ["", "   ", "1phone", "_phone", "phone-number", "phone number", "ph.one", "a" * 33, "手机"],
)
def test_parse_rejects_a_bad_type_naming_the_type_field(bad_type: str) -> None:
    (problem,) = problems_of(bad_type, "13800138000", field="identities[2]")

    assert problem.field == "identities[2].type"


def test_parse_accepts_a_type_of_32_characters() -> None:
    assert Identity.parse("a" * 32, "x").type == "a" * 32


@pytest.mark.parametrize("empty", ["", " ", "\u3000", "\t\n"])
def test_parse_rejects_an_empty_value_naming_the_value_field(empty: str) -> None:
    (problem,) = problems_of("phone", empty, field="identities[0]")

    assert problem.field == "identities[0].value"
    assert "empty" in problem.reason


def test_parse_rejects_a_value_over_the_maximum_length_naming_the_value_field() -> None:
    (problem,) = problems_of("phone", "x" * (MAX_IDENTITY_VALUE + 1))

    assert problem.field == "identities.value"
    assert str(MAX_IDENTITY_VALUE) in problem.reason


def test_parse_measures_the_length_after_folding() -> None:
    padded = "  " + "x" * MAX_IDENTITY_VALUE + "  "

    assert Identity.parse("phone", padded).value == "x" * MAX_IDENTITY_VALUE


def test_parse_reports_a_bad_type_and_a_bad_value_together() -> None:
    problems = problems_of("9", "", field="identities[1]")

    assert [p.field for p in problems] == ["identities[1].type", "identities[1].value"]


def test_invalid_input_is_a_domain_error_with_a_stable_code_and_readable_detail() -> None:
    with pytest.raises(InvalidInput) as raised:
        Identity.parse("9", "x", field="identities[4]")

    assert raised.value.code == "invalid_input"
    assert raised.value.detail.startswith("identities[4].type: ")


types = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,31}", fullmatch=True).flatmap(
    lambda t: st.sampled_from([t, full_width(t), f" {t}\u3000", t.upper()])
)


@given(type_=types, value=st.text(max_size=300))
def test_parsing_a_parsed_identity_again_changes_nothing(type_: str, value: str) -> None:
    try:
        once = Identity.parse(type_, value)
    except InvalidInput:
        assume(False)
        return
    assert Identity.parse(once.type, once.value) == once
    assert Identity.parse(str(once).split(":", 1)[0], str(once).split(":", 1)[1]) == once


@given(value=st.text(min_size=1, max_size=50))
def test_parse_result_has_no_surrounding_whitespace_and_is_nfkc(value: str) -> None:
    try:
        identity = Identity.parse("phone", value)
    except InvalidInput:
        assume(False)
        return
    assert identity.value == identity.value.strip()
    assert unicodedata.is_normalized("NFKC", identity.value)


def test_parse_role_folds_and_lower_cases() -> None:
    assert parse_role(f" {full_width('AGENT')} ") == "agent"


def test_parse_role_rejects_a_bad_role_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_role("store-manager", field="roles[1]")

    assert [p.field for p in raised.value.problems] == ["roles[1]"]
