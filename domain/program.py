"""The program: a tenant's configuration as one versioned, event-sourced document.

The document is validated as a whole: every problem is listed at once, each naming its field.
Parsing is pure; whatever needs the outside world (does this time zone exist, is this a country)
is passed in as a predicate by the application.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import FieldProblem, InvalidInput
from domain.loyalty import LoyaltyRules, loyalty_of, validate_loyalty
from domain.problems import CODE, Problems

# Fixed forever: the one program aggregate of a tenant has this id.
PROGRAM_ID = uuid5(UUID("0b5e54c1-7d0e-5c2e-8f8e-3f1c0f6a2a11"), "program")

CURRENCY = re.compile(r"^[A-Z]{3}$")
MATCH_MODES = ("identify", "suggest", "none")
ATTRIBUTE_TYPES = ("string", "number", "boolean", "date", "enum")
SURVIVORSHIP = ("survivor_wins", "non_empty", "newest", "oldest")
BUILT_IN_ROLES = ("consumer", "agent", "partner", "store_manager", "guide")
# Profile fields a merge decides between (besides custom attributes, ``attributes.<code>``).
MERGEABLE_FIELDS = ("name", "phone", "email", "birthday", "owner", "channel", "store_id")
MAX_STRING_ATTRIBUTE = 1000
# How many customers may share a value of a suggest/none type when the program does not say.
SHARED_DEFAULT = 10


@dataclass(frozen=True)
class IdentityRule:
    """``identify``: a match is the same person (auto-merge); ``suggest``: a merge candidate for
    review; ``none``: never matched on. ``max_customers``: how many may share one value."""

    match: str = "identify"
    max_customers: int = 1


@dataclass(frozen=True)
class AttributeSpec:
    code: str
    type: str
    values: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class StaffAlerts:
    """Raise an alert when one staff member ends this many ownerships within the window."""

    owner_removals: int = 20
    window_minutes: int = 60


@dataclass(frozen=True)
class ProgramRules:
    """The parts of the program the customer commands read, parsed once per version."""

    version: int
    default_country: str | None = None
    identity_rules: Mapping[str, IdentityRule] = field(default_factory=dict)
    default_identity_rule: IdentityRule = IdentityRule()
    attributes: Mapping[str, AttributeSpec] = field(default_factory=dict)
    roles: tuple[str, ...] = BUILT_IN_ROLES
    survivorship: Mapping[str, str] = field(default_factory=dict)
    default_survivorship: str = "non_empty"
    staff_alerts: StaffAlerts = StaffAlerts()

    @property
    def declared(self) -> bool:
        """Whether a program exists: only then are attributes checked against declarations."""
        return self.version > 0

    def identity_rule(self, identity_type: str) -> IdentityRule:
        return self.identity_rules.get(identity_type, self.default_identity_rule)

    def survivorship_of(self, name: str) -> str:
        return self.survivorship.get(name, self.default_survivorship)


# Without a program, every identity identifies its person and values are not shared.
DEFAULT_RULES = ProgramRules(version=0)


def validate_program(
    document: Any,
    *,
    timezone_exists: Callable[[str], bool],
    country_exists: Callable[[str], bool],
) -> dict[str, Any]:
    """The document, checked as a whole; raises :class:`InvalidInput` listing every problem."""
    p = Problems()
    doc = p.object(
        document,
        "",
        (
            "currency",
            "timezone",
            "point_types",
            "identity",
            "attributes",
            "roles",
            "survivorship",
            "staff_alerts",
            "level_groups",
            "benefits",
        ),
    )
    if not isinstance(doc.get("currency"), str) or not CURRENCY.match(doc["currency"]):
        p.add("currency", "must be an ISO 4217 code such as CNY or USD")
    tz = doc.get("timezone")
    if not isinstance(tz, str) or not timezone_exists(tz):
        p.add("timezone", "must be an IANA time zone such as Asia/Shanghai or UTC")
    validate_loyalty(p, doc)
    _identity(p, doc.get("identity", {}), country_exists)
    _attributes(p, doc.get("attributes", []))
    _roles(p, doc.get("roles", []))
    _survivorship(p, doc.get("survivorship", {}), doc.get("attributes", []))
    alerts = p.object(
        doc.get("staff_alerts", {}), "staff_alerts", tuple(StaffAlerts.__annotations__)
    )
    if "owner_removals" in alerts:
        p.positive_int(alerts["owner_removals"], "staff_alerts.owner_removals")
    window = alerts.get("window_minutes", 60)
    if p.positive_int(window, "staff_alerts.window_minutes") and window > 7 * 24 * 60:
        p.add("staff_alerts.window_minutes", "must be at most 10080 (7 days)")
    if p.items:
        raise InvalidInput(p.items)
    return doc


def _rule(p: Problems, value: Any, path: str) -> None:
    r = p.object(value, path, ("match", "max_customers"))
    match = p.choice(r.get("match", "identify"), f"{path}.match", MATCH_MODES)
    limit = p.positive_int(r.get("max_customers", 1), f"{path}.max_customers")
    if match == "identify" and limit not in (None, 1):
        p.add(f"{path}.max_customers", "an identifying type must be unique (1): use suggest")


def _identity(p: Problems, value: Any, country_exists: Callable[[str], bool]) -> None:
    ident = p.object(value, "identity", ("default_country", "rules", "default"))
    country = ident.get("default_country")
    if country is not None and (not isinstance(country, str) or not country_exists(country)):
        p.add("identity.default_country", "must be an ISO 3166 region code such as CN")
    for type_, rule in p.mapping(ident.get("rules", {}), "identity.rules").items():
        p.code(type_, f"identity.rules.{type_}")
        _rule(p, rule, f"identity.rules.{type_}")
    if "default" in ident:
        _rule(p, ident["default"], "identity.default")


def _attributes(p: Problems, value: Any) -> None:
    keys = ("code", "type", "values", "required", "label")
    for path, a, _ in p.coded(value, "attributes", keys, "attribute"):
        kind = p.choice(a.get("type"), f"{path}.type", ATTRIBUTE_TYPES)
        if kind == "enum":
            values = a.get("values")
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and v for v in values)
            ):
                p.add(f"{path}.values", "an enum needs a non-empty list of strings")
        elif "values" in a:
            p.add(f"{path}.values", "only enum attributes have values")
        if "required" in a and not isinstance(a["required"], bool):
            p.add(f"{path}.required", "must be a boolean")


def _roles(p: Problems, value: Any) -> None:
    for n, raw in enumerate(p.list(value, "roles")):
        path = f"roles[{n}]"
        r = p.object(raw, path, ("code", "name", "point_types", "level_groups"))
        p.code(r.get("code"), f"{path}.code")
        for key in ("point_types", "level_groups"):
            for m, c in enumerate(p.list(r.get(key, []), f"{path}.{key}")):
                p.code(c, f"{path}.{key}[{m}]")


def _survivorship(p: Problems, value: Any, attributes: Any) -> None:
    s = p.object(value, "survivorship", ("default", "fields"))
    if "default" in s:
        p.choice(s["default"], "survivorship.default", SURVIVORSHIP)
    codes = (
        {a["code"] for a in attributes if isinstance(a, dict) and isinstance(a.get("code"), str)}
        if isinstance(attributes, list)
        else set()
    )
    known = set(MERGEABLE_FIELDS) | {f"attributes.{c}" for c in codes}
    for name, rule in p.mapping(s.get("fields", {}), "survivorship.fields").items():
        if name not in known:
            p.add(f"survivorship.fields.{name}", "not a profile field or declared attribute")
        p.choice(rule, f"survivorship.fields.{name}", SURVIVORSHIP)


def rules_of(document: Mapping[str, Any], version: int) -> ProgramRules:
    """The customer-facing rules of a validated document."""
    ident = document.get("identity", {})

    def rule(raw: Mapping[str, Any]) -> IdentityRule:
        match = raw.get("match", "identify")
        # A value that only suggests a match is shared by design (a family or store phone).
        shared = 1 if match == "identify" else SHARED_DEFAULT
        return IdentityRule(match, raw.get("max_customers", shared))

    attributes = {
        a["code"]: AttributeSpec(
            a["code"], a["type"], tuple(a.get("values", ())), a.get("required", False)
        )
        for a in document.get("attributes", [])
    }
    roles = tuple(dict.fromkeys((*BUILT_IN_ROLES, *(r["code"] for r in document.get("roles", [])))))
    surv = document.get("survivorship", {})
    alerts = document.get("staff_alerts", {})
    return ProgramRules(
        version=version,
        default_country=ident.get("default_country"),
        identity_rules={t: rule(r) for t, r in ident.get("rules", {}).items()},
        default_identity_rule=rule(ident.get("default", {})),
        attributes=attributes,
        roles=roles,
        survivorship=dict(surv.get("fields", {})),
        default_survivorship=surv.get("default", "non_empty"),
        staff_alerts=StaffAlerts(**alerts),
    )


FREE_FORM = AttributeSpec("*", "scalar")


def validate_attributes(
    values: Mapping[str, Any],
    specs: Mapping[str, AttributeSpec],
    *,
    field: str = "attributes",
    declared: bool = True,
) -> dict[str, Any]:
    """Custom attribute values checked against their declarations; ``None`` clears a value.

    Dates are kept as ISO strings, numbers as given (integers or finite decimals). Before a
    tenant has a program (``declared=False``) any snake_case code with a scalar value is kept.
    """
    problems: list[FieldProblem] = []
    out: dict[str, Any] = {}
    for code, value in values.items():
        path = f"{field}.{code}"
        spec = specs.get(code) if declared else (FREE_FORM if CODE.match(code) else None)
        if spec is None:
            problems.append(FieldProblem(path, "not an attribute declared in the program"))
            continue
        if value is None:
            out[code] = None
            continue
        reason = _attribute_problem(spec, value)
        if reason:
            problems.append(FieldProblem(path, reason))
        else:
            out[code] = value.strip() if isinstance(value, str) else value
    if problems:
        raise InvalidInput(problems)
    return out


def _attribute_problem(spec: AttributeSpec, value: Any) -> str | None:
    if spec.type == "scalar":
        if isinstance(value, str):
            return _attribute_problem(AttributeSpec(spec.code, "string"), value)
        if isinstance(value, bool):
            return None
        return _attribute_problem(AttributeSpec(spec.code, "number"), value)
    if spec.type == "string":
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > MAX_STRING_ATTRIBUTE or re.search(r"[\x00-\x08\x0b-\x1f\x7f]", value):
            return f"must be at most {MAX_STRING_ATTRIBUTE} characters, no control characters"
    elif spec.type == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return "must be a finite number"
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            return "must be true or false"
    elif spec.type == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return "must be a date YYYY-MM-DD"
    elif spec.type == "enum" and value not in spec.values:
        return f"must be one of {', '.join(spec.values)}"
    return None


def missing_required(values: Mapping[str, Any], specs: Mapping[str, AttributeSpec]) -> None:
    missing = [
        FieldProblem(f"attributes.{c}", "is required by the program")
        for c, s in specs.items()
        if s.required and values.get(c) is None
    ]
    if missing:
        raise InvalidInput(missing)


class Program(Aggregate):
    """The tenant's program document. Every replacement is an event; versions never rewrite."""

    TOPIC: ClassVar[str] = "membercore.Program"

    class Created(Aggregate.Created):
        TOPIC = "membercore.Program.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.Program.Event"

    class Defined(Created):
        """The first program document. v1."""

        TOPIC = "membercore.Program.Defined"
        document: dict[str, Any]
        actor: str

    class Replaced(Event):
        """A new version of the document replaced the previous one. v1."""

        TOPIC = "membercore.Program.Replaced"
        document: dict[str, Any]
        actor: str

        def apply(self, aggregate: Program) -> None:
            aggregate.document = self.document

    def __init__(self, document: dict[str, Any], actor: str) -> None:
        self.document = document

    @classmethod
    def define(cls, document: dict[str, Any], *, actor: str, at: datetime) -> Program:
        return cls._create(cls.Defined, id=PROGRAM_ID, timestamp=at, document=document, actor=actor)

    def replace(self, document: dict[str, Any], *, actor: str, at: datetime) -> bool:
        """Record a new version; an identical document records nothing (returns False)."""
        if document == self.document:
            return False
        self.trigger_event(self.Replaced, document=document, actor=actor, timestamp=at)
        return True

    @property
    def rules(self) -> ProgramRules:
        return rules_of(self.document, self.version)

    @property
    def loyalty(self) -> LoyaltyRules:
        return loyalty_of(self.document, self.version)
