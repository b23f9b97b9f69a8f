"""Identities: values normalised before matching (phones to E.164, emails checked and
lower-cased), and the claims that make each value unique per tenant.

The generic folding (full-width characters, whitespace, control characters) is the domain's
``Identity.parse``; the channel-specific rules need libraries, so they live here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from eventsourcing.domain import Aggregate

from application.app import Membercore
from application.loaders import many
from domain.customer import Customer
from domain.errors import FieldProblem, InvalidInput
from domain.identity_claim import IdentityClaim
from domain.program import ProgramRules
from domain.registration import NewCustomer, Suggestion, decide_registration
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
    """The claims of those identities that someone holds or held (one read for all)."""
    ids = {app.claim_id(i): i for i in identities}
    return {ids[claim_id]: claim for claim_id, claim in many(app, ids).items()}


def holders_of(claims: Mapping[Identity, IdentityClaim]) -> dict[Identity, tuple[UUID, ...]]:
    return {i: c.holders for i, c in claims.items() if c.holders}


def hold(
    app: Membercore,
    identity: Identity,
    customer_id: UUID,
    claim: IdentityClaim | None,
    rules: ProgramRules,
    at: datetime,
) -> list[Aggregate]:
    """The claim making ``customer_id`` a holder of ``identity`` (new, or one more holder):
    refused when another customer holds an identifying value, or the type's limit is reached."""
    if claim is None:
        return [IdentityClaim.claim(identity, customer_id, claim_id=app.claim_id(identity), at=at)]
    limit = rules.identity_rule(identity.type).max_customers
    return [claim] if claim.add_holder(customer_id, limit=limit, at=at) else []


def record_suggestions(
    customer: Customer, suggestions: Sequence[Suggestion], *, actor: str, at: datetime
) -> None:
    """One ``MatchSuggested`` per other customer sharing a suggesting identity (a merge
    candidate listed by GET /v1/merge-candidates)."""
    for s in suggestions:
        if s.other_id != customer.id:
            customer.suggest_match(s.other_id, s.identity_type, actor=actor, at=at)


def suggest_on_link(
    customer: Customer,
    identities: Sequence[Identity],
    claims: Mapping[Identity, IdentityClaim],
    rules: ProgramRules,
    *,
    actor: str,
    at: datetime,
) -> None:
    """Linking (or PATCHing to) a value of a ``suggest`` type that others hold suggests them,
    exactly as registering with it does: the same decision over the claims' holders (this
    customer, already added as one, is no candidate of itself). ``identify`` types are left
    out: one held by another customer is refused (409) when its claim is taken, never merged
    silently."""
    suggesting = [i for i in identities if rules.identity_rule(i.type).match == "suggest"]
    if not suggesting:
        return
    decision = decide_registration(suggesting, holders_of(claims), rules)
    # Without identifying identities nobody is matched: the decision is a NewCustomer.
    assert isinstance(decision, NewCustomer)
    record_suggestions(customer, decision.suggestions, actor=actor, at=at)
