"""Identity.parse: normalisation (NFKC, trim, lower-case type) and validation naming the field;
phones to E.164 and emails lower-cased (application.identities)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from application.identities import parse_identities, parse_identity
from domain.errors import FieldProblem, InvalidInput
from domain.program import DEFAULT_RULES, ProgramRules
from domain.values import MAX_IDENTITY_VALUE, Identity, parse_role
from infrastructure.crypto import claim_id


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
    secret = b"s" * 32
    folded = Identity.parse(full_width("phone"), f" {full_width('+8613800138000')}\u3000")

    assert claim_id(secret, folded) == claim_id(secret, Identity.parse("phone", "+8613800138000"))


# -- channel-specific normalisation (application.identities) -----------------------------------

CN = ProgramRules(version=1, default_country="CN")


@pytest.mark.parametrize(
    "spelling",
    ["+8613800138000", "+86 138 0013 8000", "+86-138-0013-8000", full_width("+8613800138000")],
)
def test_a_phone_with_its_country_code_is_normalised_to_e164_without_a_program(
    spelling: str,
) -> None:
    assert parse_identity("phone", spelling, DEFAULT_RULES, field="i") == Identity(
        "phone", "+8613800138000"
    )


def test_a_phone_without_country_code_is_refused_without_a_program_naming_the_value() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_identity("phone", "13800138000", DEFAULT_RULES, field="identities[3]")

    (problem,) = raised.value.problems
    assert problem.field == "identities[3].value"
    assert "country code" in problem.reason


def test_a_national_phone_number_takes_the_programs_default_country() -> None:
    assert parse_identity("phone", "138 0013 8000", CN, field="i") == Identity(
        "phone", "+8613800138000"
    )
    assert parse_identity("phone", "+1 650 253 0000", CN, field="i") == Identity(
        "phone", "+16502530000"
    )


@pytest.mark.parametrize("bad", ["1", "12345", "+86 1", "phone"])
def test_an_invalid_phone_number_is_refused_even_with_a_default_country(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_identity("phone", bad, CN, field="i")


def test_an_email_identity_is_checked_and_lower_cased() -> None:
    assert parse_identity("EMAIL", " Li.Lei@Example.COM ", DEFAULT_RULES, field="i") == Identity(
        "email", "li.lei@example.com"
    )
    with pytest.raises(InvalidInput):
        parse_identity("email", "not-an-address", DEFAULT_RULES, field="i")


def test_other_identity_types_keep_the_case_of_their_value() -> None:
    assert parse_identity("jd_pin", " JD_Pin ", CN, field="i") == Identity("jd_pin", "JD_Pin")


def test_parse_identities_reports_every_bad_one_by_index_and_drops_duplicates() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_identities([("phone", "1"), ("jd_pin", "ok"), ("email", "x")], DEFAULT_RULES)
    assert [p.field for p in raised.value.problems] == [
        "identities[0].value",
        "identities[2].value",
    ]

    parsed = parse_identities([("phone", "+8613800138000"), ("PHONE", "+86 138 0013 8000")], CN)
    assert parsed == (Identity("phone", "+8613800138000"),)


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
