"""Identity values normalised before matching: phones to E.164, emails checked and lower-cased.

The generic folding (full-width characters, whitespace, control characters) is the domain's
``Identity.parse``; the channel-specific rules need libraries, so they live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from eventsourcing.application import AggregateNotFoundError

from application.app import Membercore
from domain.customer import IdentityClaim
from domain.errors import FieldProblem, InvalidInput
from domain.program import ProgramRules
from domain.values import Identity


def normalise_phone(value: str, default_country: str | None, *, field: str) -> str:
    """E.164 (``+8613800138000``); numbers without a country code use the program's default."""
    try:
        number = phonenumbers.parse(value, default_country)
    except phonenumbers.NumberParseException as e:
        hint = "" if default_country else " (no default country: include +<country code>)"
        raise InvalidInput([FieldProblem(field, f"is not a phone number{hint}: {e}")]) from e
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput([FieldProblem(field, "is not a valid phone number")])
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str, *, field: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidInput([FieldProblem(field, f"is not an email address: {e}")]) from e
    return checked.normalized.lower()


def parse_identity(type_: str, value: str, rules: ProgramRules, *, field: str) -> Identity:
    identity = Identity.parse(type_, value, field=field)
    if identity.type == "phone":
        return Identity(
            "phone", normalise_phone(identity.value, rules.default_country, field=f"{field}.value")
        )
    if identity.type == "email":
        return Identity("email", normalise_email(identity.value, field=f"{field}.value"))
    return identity


def parse_identities(
    raw: Sequence[tuple[str, str]], rules: ProgramRules, *, field: str = "identities"
) -> tuple[Identity, ...]:
    """Every identity checked; all problems reported at once, each naming its index."""
    problems: list[FieldProblem] = []
    parsed: list[Identity] = []
    for n, (type_, value) in enumerate(raw):
        try:
            parsed.append(parse_identity(type_, value, rules, field=f"{field}[{n}]"))
        except InvalidInput as e:
            problems.extend(e.problems)
    if problems:
        raise InvalidInput(problems)
    return tuple(dict.fromkeys(parsed))


def load_claims(app: Membercore, identities: Sequence[Identity]) -> dict[Identity, IdentityClaim]:
    claims: dict[Identity, IdentityClaim] = {}
    for identity in identities:
        try:
            claims[identity] = app.repository.get(app.claim_id(identity))
        except AggregateNotFoundError:
            continue
    return claims


def holders_of(claims: dict[Identity, IdentityClaim]) -> dict[Identity, tuple[UUID, ...]]:
    return {i: c.holders for i, c in claims.items() if c.holders}
