"""The program document: validated as a whole (every problem at once), parsed into rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from application.program import country_exists, timezone_exists
from domain.errors import InvalidInput
from domain.loyalty import loyalty_of
from domain.program import (
    BUILT_IN_ROLES,
    DEFAULT_RULES,
    AttributeSpec,
    IdentityRule,
    StaffAlerts,
    missing_required,
    rules_of,
    validate_attributes,
    validate_program,
)

MINIMAL: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [{"code": "points"}],
}

FULL: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "point_types": [
        {
            "code": "points",
            "name": "积分",
            "redeemable": True,
            "earn": [{"per_amount": 100, "points": 1}],
            "expiry": {"mode": "yearly_clearing", "month": 12, "day": 31},
        },
        {"code": "growth", "expiry": {"mode": "rolling_days", "days": 365}},
        {"code": "bonus", "expiry": {"mode": "end_of_period", "period": "quarter", "periods": 1}},
    ],
    "identity": {
        "default_country": "CN",
        "rules": {
            "phone": {"match": "suggest", "max_customers": 3},
            "wechat_unionid": {"match": "identify"},
            "device_id": {"match": "none", "max_customers": 50},
        },
        "default": {"match": "identify", "max_customers": 1},
    },
    "attributes": [
        {"code": "city", "type": "string", "label": "城市"},
        {"code": "size", "type": "enum", "values": ["S", "M", "L"], "required": True},
        {"code": "vip", "type": "boolean"},
        {"code": "height", "type": "number"},
        {"code": "wedding", "type": "date"},
    ],
    "roles": [{"code": "ambassador", "name": "大使", "point_types": ["points"]}],
    "survivorship": {
        "default": "non_empty",
        "fields": {"name": "newest", "birthday": "oldest", "attributes.city": "survivor_wins"},
    },
    "staff_alerts": {"owner_removals": 3, "window_minutes": 30},
}


def validate(document: Any) -> dict[str, Any]:
    return validate_program(
        document, timezone_exists=timezone_exists, country_exists=country_exists
    )


def problems(document: Any) -> dict[str, str]:
    """Field -> reason of every problem the document has."""
    with pytest.raises(InvalidInput) as raised:
        validate(document)
    return {p.field: p.reason for p in raised.value.problems}


def with_(path: str, value: Any, base: dict[str, Any] = MINIMAL) -> dict[str, Any]:
    """``base`` with ``value`` at a dotted path (list indexes as numbers)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_the_minimal_document_is_valid_and_returned_as_given() -> None:
    assert validate(copy.deepcopy(MINIMAL)) == MINIMAL


def test_a_document_using_every_section_is_valid() -> None:
    assert validate(copy.deepcopy(FULL)) == FULL


def test_every_problem_of_a_document_is_listed_at_once_each_naming_its_field() -> None:
    document = {
        "currency": "yuan",
        "timezone": "Mars/Olympus",
        "point_types": [
            {"code": "Points", "expiry": {"mode": "rolling_days"}},
            {"code": "b", "earn": [{"per_amount": 0, "points": -1}]},
        ],
        "identity": {"default_country": "XX", "rules": {"phone": {"match": "maybe"}}},
        "attributes": [{"code": "size", "type": "enum"}, {"code": "age", "type": "int"}],
        "survivorship": {"default": "loudest", "fields": {"shoe": "newest"}},
        "staff_alerts": {"owner_removals": 0, "window_minutes": 20000},
    }

    found = problems(document)

    assert set(found) == {
        "currency",
        "timezone",
        "point_types[0].code",
        "point_types[0].expiry.days",
        "point_types[1].earn[0].per_amount",
        "point_types[1].earn[0].points",
        "identity.default_country",
        "identity.rules.phone.match",
        "attributes[0].values",
        "attributes[1].type",
        "survivorship.default",
        "survivorship.fields.shoe",
        "staff_alerts.owner_removals",
        "staff_alerts.window_minutes",
    }


def test_a_document_that_is_not_an_object_is_one_problem_plus_each_missing_field() -> None:
    found = problems(["currency", "CNY"])

    assert found[""] == "must be an object"
    assert {"currency", "timezone", "point_types"} <= set(found)


@pytest.mark.parametrize("missing", ["currency", "timezone", "point_types"])
def test_each_required_field_is_named_when_missing(missing: str) -> None:
    document = {k: v for k, v in MINIMAL.items() if k != missing}

    assert list(problems(document)) == [missing]


def test_at_least_one_point_type_is_required() -> None:
    assert problems(with_("point_types", [])) == {
        "point_types": "at least one point type is required"
    }


def test_duplicate_codes_are_refused() -> None:
    doc = with_("point_types", [{"code": "p"}, {"code": "p"}])
    doc["attributes"] = [{"code": "a", "type": "string"}, {"code": "a", "type": "number"}]

    assert set(problems(doc)) == {"point_types[1].code", "attributes[1].code"}


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("colour", "blue", "colour"),
        ("point_types.0.flavour", "sweet", "point_types[0].flavour"),
        ("identity.fallback", {}, "identity.fallback"),
        ("identity.rules.phone", {"match": "identify", "limit": 2}, "identity.rules.phone.limit"),
        ("survivorship.per_field", {}, "survivorship.per_field"),
        ("staff_alerts.email", "a@b.c", "staff_alerts.email"),
    ],
)
def test_unknown_fields_are_refused_at_every_level(path: str, value: Any, field: str) -> None:
    document = with_(path, value)

    found = problems(document)

    assert found == {field: "unknown field"}


def test_an_identifying_type_shared_by_several_customers_is_refused() -> None:
    document = with_("identity.rules.phone", {"match": "identify", "max_customers": 2})

    assert problems(document) == {
        "identity.rules.phone.max_customers": "an identifying type must be unique (1): use suggest"
    }


def test_an_identifying_default_shared_by_several_customers_is_refused() -> None:
    document = with_("identity.default", {"max_customers": 5})  # match defaults to identify

    assert list(problems(document)) == ["identity.default.max_customers"]


def test_a_suggesting_type_may_be_shared() -> None:
    validate(with_("identity.rules.phone", {"match": "suggest", "max_customers": 5}))


def test_yearly_clearing_on_29_february_is_refused() -> None:
    document = with_("point_types.0.expiry", {"mode": "yearly_clearing", "month": 2, "day": 29})

    found = problems(document)

    assert list(found) == ["point_types[0].expiry.day"]
    assert "29 February" in found["point_types[0].expiry.day"]


@pytest.mark.parametrize(("month", "day"), [(2, 28), (12, 31), (1, 1)])
def test_yearly_clearing_on_a_day_of_every_year_is_valid(month: int, day: int) -> None:
    validate(with_("point_types.0.expiry", {"mode": "yearly_clearing", "month": month, "day": day}))


@pytest.mark.parametrize("minutes", [0, -5, 43201, 1.5, "30", True])
def test_a_hold_timeout_outside_1_to_43200_minutes_is_refused(minutes: Any) -> None:
    found = problems(with_("point_types.0.hold_timeout_minutes", minutes))

    assert list(found) == ["point_types[0].hold_timeout_minutes"]


def test_the_hold_timeout_defaults_to_30_minutes_and_takes_the_documents_value() -> None:
    assert loyalty_of(MINIMAL, 1).point_types["points"].hold_timeout_minutes == 30
    document = with_("point_types.0.hold_timeout_minutes", 43200)
    validate(document)
    assert loyalty_of(document, 1).point_types["points"].hold_timeout_minutes == 43200


@pytest.mark.parametrize(("month", "day"), [(4, 31), (13, 1), (0, 5)])
def test_yearly_clearing_on_no_such_day_is_refused(month: int, day: int) -> None:
    document = with_(
        "point_types.0.expiry", {"mode": "yearly_clearing", "month": month, "day": day}
    )

    assert problems(document)


def test_an_enum_attribute_needs_values_and_only_enums_have_values() -> None:
    doc = with_(
        "attributes",
        [
            {"code": "size", "type": "enum", "values": []},
            {"code": "city", "type": "string", "values": ["x"]},
            {"code": "tier", "type": "enum", "values": ["gold", ""]},
        ],
    )

    assert set(problems(doc)) == {
        "attributes[0].values",
        "attributes[1].values",
        "attributes[2].values",
    }


def test_survivorship_may_name_a_declared_attribute_but_no_undeclared_one() -> None:
    doc = with_("attributes", [{"code": "city", "type": "string"}])
    doc["survivorship"] = {"fields": {"attributes.city": "newest", "attributes.size": "newest"}}

    assert list(problems(doc)) == ["survivorship.fields.attributes.size"]


def test_the_alert_window_is_at_most_a_week() -> None:
    validate(with_("staff_alerts", {"owner_removals": 5, "window_minutes": 10080}))

    assert list(problems(with_("staff_alerts", {"window_minutes": 10081}))) == [
        "staff_alerts.window_minutes"
    ]


# -- rules_of ---------------------------------------------------------------------------------


def test_rules_of_the_full_document_give_every_customer_facing_rule() -> None:
    rules = rules_of(FULL, 4)

    assert rules.version == 4
    assert rules.declared
    assert rules.default_country == "CN"
    assert rules.identity_rule("phone") == IdentityRule("suggest", 3)
    assert rules.identity_rule("wechat_unionid") == IdentityRule("identify", 1)
    assert rules.identity_rule("device_id") == IdentityRule("none", 50)
    assert rules.identity_rule("jd_pin") == IdentityRule("identify", 1)  # the default
    assert rules.attributes["size"] == AttributeSpec("size", "enum", ("S", "M", "L"), True)
    assert rules.attributes["city"] == AttributeSpec("city", "string")
    assert rules.roles == (*BUILT_IN_ROLES, "ambassador")
    assert rules.survivorship_of("name") == "newest"
    assert rules.survivorship_of("birthday") == "oldest"
    assert rules.survivorship_of("attributes.city") == "survivor_wins"
    assert rules.survivorship_of("email") == "non_empty"
    assert rules.staff_alerts == StaffAlerts(owner_removals=3, window_minutes=30)


def test_rules_of_the_minimal_document_are_the_defaults_with_its_version() -> None:
    rules = rules_of(MINIMAL, 1)

    assert rules.declared
    assert rules.default_country is None
    assert rules.identity_rule("anything") == IdentityRule("identify", 1)
    assert rules.attributes == {}
    assert rules.roles == BUILT_IN_ROLES
    assert rules.survivorship_of("name") == "non_empty"
    assert rules.staff_alerts == StaffAlerts()


def test_without_a_program_nothing_is_declared() -> None:
    assert not DEFAULT_RULES.declared
    assert DEFAULT_RULES.identity_rule("phone") == IdentityRule("identify", 1)


# -- attribute values -------------------------------------------------------------------------

SPECS = rules_of(FULL, 1).attributes


def test_declared_attributes_are_checked_and_every_problem_named() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_attributes(
            {"size": "XL", "vip": "yes", "height": "tall", "wedding": "2020-13-01", "shoe": 42},
            SPECS,
        )

    assert {p.field for p in raised.value.problems} == {
        "attributes.size",
        "attributes.vip",
        "attributes.height",
        "attributes.wedding",
        "attributes.shoe",
    }


def test_valid_declared_values_are_kept_strings_trimmed_and_none_clears() -> None:
    values = {"size": "M", "vip": False, "height": 1.75, "wedding": "2020-02-29", "city": " 上海 "}

    assert validate_attributes({**values, "city": " 上海 ", "size": None}, SPECS) == {
        **values,
        "city": "上海",
        "size": None,
    }


def test_without_a_program_any_snake_case_code_with_a_scalar_value_is_kept() -> None:
    kept = validate_attributes(
        {"city": "Shanghai", "n": 3, "vip": True, "x": None}, {}, declared=False
    )

    assert kept == {"city": "Shanghai", "n": 3, "vip": True, "x": None}
    with pytest.raises(InvalidInput) as raised:
        validate_attributes({"Bad Code": 1, "tags": ["a"], "o": {"k": 1}}, {}, declared=False)
    assert {p.field for p in raised.value.problems} == {
        "attributes.Bad Code",
        "attributes.tags",
        "attributes.o",
    }


def test_a_required_attribute_must_be_given() -> None:
    with pytest.raises(InvalidInput) as raised:
        missing_required({"city": "x"}, SPECS)

    assert [p.field for p in raised.value.problems] == ["attributes.size"]
    missing_required({"size": "S"}, SPECS)


def test_a_role_may_list_only_declared_point_types_and_level_groups() -> None:
    doc = with_(
        "roles",
        [{"code": "agent", "point_types": ["points", "gold"], "level_groups": ["consumer"]}],
    )
    assert problems(doc) == {
        "roles[0].point_types[1]": "not a point type of the program",
        "roles[0].level_groups[0]": "not a level group of the program",
    }


ROLE_BOUND: dict[str, Any] = {
    **MINIMAL,
    "point_types": [{"code": "points"}, {"code": "commission_credit"}, {"code": "growth"}],
    "level_groups": [
        {
            "code": "consumer",
            "role": "consumer",
            "basis": "spend",
            "levels": [{"code": "normal", "threshold": 0}],
        },
        {
            "code": "agent",
            "role": "agent",
            "basis": "spend",
            "levels": [{"code": "rookie", "threshold": 0}],
        },
    ],
    "roles": [
        {
            "code": "agent",
            "point_types": ["commission_credit", "growth"],
            "level_groups": ["consumer"],
        },
        {"code": "consumer", "point_types": ["growth"]},
    ],
}


def test_a_point_type_no_role_lists_is_earned_by_every_role() -> None:
    rules = loyalty_of(validate(ROLE_BOUND), 1)
    assert rules.earns("points", ["consumer"])
    assert rules.earns("points", ["beauty_advisor"])
    assert rules.earns("points", [])


def test_a_point_type_listed_by_roles_is_earned_only_by_holders_of_one_of_them() -> None:
    rules = loyalty_of(validate(ROLE_BOUND), 1)
    assert rules.earns("commission_credit", ["agent"])
    assert not rules.earns("commission_credit", ["consumer"])
    assert rules.earns("growth", ["consumer"])
    assert rules.earns("growth", ["guide", "agent"])
    assert not rules.earns("growth", ["guide"])


def test_a_ladder_holds_its_own_role_and_every_role_that_lists_it() -> None:
    rules = loyalty_of(validate(ROLE_BOUND), 1)
    assert rules.on_group("consumer", ["consumer"])
    assert rules.on_group("consumer", ["agent"])  # listed by the agent role
    assert rules.on_group("agent", ["agent"])
    assert not rules.on_group("agent", ["consumer"])
    assert not rules.on_group("consumer", ["guide"])
    assert not rules.on_group("no_such_group", ["agent"])
