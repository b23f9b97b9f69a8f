"""The import's row formats: an NDJSON line or a CSV record decoded, checked like a request
(``parse_registration``) and turned into a :class:`ParsedRow` or a :class:`Rejection` with every
problem found. Pure: runs in the import's worker processes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import msgspec

from application.errors import ConcurrencyConflict
from application.registration import (
    ParsedRegistration,
    RegisterCustomer,
    parse_registration,
)
from domain.errors import DomainError, InvalidInput
from domain.program import ProgramRules
from domain.values import Identity

# -- row formats ----------------------------------------------------------------------------


class IdentityIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    value: str


class CustomerRow(msgspec.Struct, forbid_unknown_fields=True):
    """One NDJSON line: the POST /v1/customers body (``identities`` may be left out when a
    ``phone`` or ``email`` is given: they are identities too)."""

    identities: list[IdentityIn] = msgspec.field(default_factory=list)
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    roles: list[str] | None = None
    owner: str | None = None
    referrer_id: UUID | None = None
    channel: str | None = None
    store_id: str | None = None


# The same bounds as the HTTP body (api/schemas.py RegisterCustomerBody).
LIMITS: dict[str, int] = {
    "name": 256,
    "phone": 64,
    "email": 254,
    "owner": 128,
    "channel": 64,
    "store_id": 128,
}
MAX_IDENTITIES = 50
MAX_ATTRIBUTES = 200
MAX_ROLES = 20

_ndjson = msgspec.json.Decoder(CustomerRow)
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.S)


@dataclass(frozen=True)
class RowProblem:
    """One problem of one row: the field (None: the row as a whole) and why."""

    field: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Rejection:
    """A row that was not imported, with every problem found (``code`` as the API's)."""

    row: int
    code: str
    errors: tuple[RowProblem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "errors": [e.to_dict() for e in self.errors]}

    @classmethod
    def of(cls, row: int, error: DomainError | ConcurrencyConflict) -> Rejection:
        if isinstance(error, InvalidInput):
            problems = tuple(RowProblem(p.field, p.reason) for p in error.problems)
        else:
            problems = (RowProblem(None, error.detail),)
        return cls(row, error.code, problems)


class BadRow(Exception):
    """A row that cannot be read as given (malformed JSON, wrong types, a bad CSV cell).

    ``command`` is the rest of the row when it can still be checked, so that every problem of
    the row is reported at once.
    """

    def __init__(
        self, problems: Sequence[RowProblem], command: RegisterCustomer | None = None
    ) -> None:
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = tuple(problems)
        self.command = command


def _bounds(row: CustomerRow) -> list[RowProblem]:
    problems = [
        RowProblem(name, f"must be at most {limit} characters")
        for name, limit in LIMITS.items()
        if (value := getattr(row, name)) is not None and len(value) > limit
    ]
    if len(row.identities) > MAX_IDENTITIES:
        problems.append(RowProblem("identities", f"at most {MAX_IDENTITIES} identities"))
    if len(row.attributes) > MAX_ATTRIBUTES:
        problems.append(RowProblem("attributes", f"at most {MAX_ATTRIBUTES} attributes"))
    if row.roles is not None and len(row.roles) > MAX_ROLES:
        problems.append(RowProblem("roles", f"at most {MAX_ROLES} roles"))
    return problems


def _command(row: CustomerRow, problems: Sequence[RowProblem] = ()) -> RegisterCustomer:
    problems = [*problems, *_bounds(row)]
    command = RegisterCustomer.of(row)
    if problems:
        raise BadRow(problems, command)
    return command


def decode_ndjson(line: bytes) -> RegisterCustomer:
    """One NDJSON line as a registration command; :class:`BadRow` when it cannot be read."""
    try:
        row = _ndjson.decode(line)
    except msgspec.ValidationError as e:
        match = _AT.match(str(e))
        path = match["path"] if match and match["path"] else None
        reason = match["reason"] if match else str(e)
        unknown = _UNKNOWN.search(reason)
        if unknown:
            path = f"{path}.{unknown[1]}" if path else unknown[1]
        raise BadRow([RowProblem(path, reason)]) from None
    except msgspec.DecodeError as e:
        raise BadRow([RowProblem(None, f"not a JSON object: {e}")]) from None
    except UnicodeDecodeError:  # msgspec's answer to invalid UTF-8 inside a string
        raise BadRow([RowProblem(None, "not valid UTF-8")]) from None
    return _command(row)


CSV_FIELDS = ("name", "phone", "email", "birthday", "channel", "store_id", "owner")
CSV_OTHER = ("identity_type", "identity_value", "identities", "roles", "referrer_id")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class CsvHeaderError(ValueError):
    """The header names a column the import does not know (nothing is imported)."""


@dataclass(frozen=True)
class CsvLayout:
    """Which column holds what, from the header row.

    Columns: ``name``, ``phone``, ``email``, ``birthday`` (YYYY-MM-DD), ``channel``,
    ``store_id``, ``owner``, ``roles`` (``a|b``), ``referrer_id``; identities as
    ``identity_type`` + ``identity_value``, ``identities`` (``type:value|type:value``) and/or one
    ``identity.<type>`` column per type; custom attributes as ``attr.<code>``. Empty cells are
    absent values.
    """

    header: tuple[str, ...]

    @classmethod
    def of(cls, header: Sequence[str]) -> CsvLayout:
        names = tuple(h.strip().lstrip("\ufeff").strip() for h in header)
        unknown = [
            n
            for n in names
            if n not in CSV_FIELDS
            and n not in CSV_OTHER
            and not (n.startswith("attr.") and len(n) > 5)
            and not (n.startswith("identity.") and len(n) > 9)
        ]
        if unknown:
            raise CsvHeaderError(f"unknown CSV columns: {', '.join(unknown)}")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise CsvHeaderError(f"duplicated CSV columns: {', '.join(duplicated)}")
        if "identity_type" in names and "identity_value" not in names:
            raise CsvHeaderError("identity_type needs an identity_value column")
        if "identity_value" in names and "identity_type" not in names:
            raise CsvHeaderError("identity_value needs an identity_type column")
        return cls(names)

    def decode(self, record: Sequence[str], rules: ProgramRules) -> RegisterCustomer:
        if len(record) != len(self.header):
            raise BadRow(
                [RowProblem(None, f"has {len(record)} cells, the header {len(self.header)}")]
            )
        cells = {k: v.strip() for k, v in zip(self.header, record, strict=True) if v.strip()}
        problems = [RowProblem(k, "is not valid UTF-8") for k, v in cells.items() if "\ufffd" in v]
        identities: list[tuple[str, str]] = []
        if "identity_type" in cells or "identity_value" in cells:
            identities.append((cells.get("identity_type", ""), cells.get("identity_value", "")))
        for part in cells.get("identities", "").split("|"):
            if part.strip():
                type_, sep, value = part.partition(":")
                if not sep:
                    problems.append(RowProblem("identities", f"{part!r} is not type:value"))
                identities.append((type_.strip(), value.strip()))
        attributes: dict[str, Any] = {}
        for name, value in cells.items():
            if name.startswith("identity."):
                identities.append((name.removeprefix("identity."), value))
            elif name.startswith("attr."):
                code = name.removeprefix("attr.")
                typed = _attribute(value, code, rules, problems)
                if typed is not None:
                    attributes[code] = typed
        birthday: date | None = None
        if "birthday" in cells:
            try:
                birthday = date.fromisoformat(cells["birthday"])
            except ValueError:
                problems.append(RowProblem("birthday", "must be a date YYYY-MM-DD"))
        referrer: UUID | None = None
        if "referrer_id" in cells:
            try:
                referrer = UUID(cells["referrer_id"])
            except ValueError:
                problems.append(RowProblem("referrer_id", "must be a UUID"))
        roles = [r for r in cells.get("roles", "").split("|") if r.strip()] or None
        row = CustomerRow(
            identities=[IdentityIn(t, v) for t, v in identities],
            name=cells.get("name"),
            phone=cells.get("phone"),
            email=cells.get("email"),
            birthday=birthday,
            attributes=attributes,
            roles=roles,
            owner=cells.get("owner"),
            referrer_id=referrer,
            channel=cells.get("channel"),
            store_id=cells.get("store_id"),
        )
        return _command(row, problems)


def _attribute(value: str, code: str, rules: ProgramRules, problems: list[RowProblem]) -> Any:
    """A CSV cell as the type the program declares for the attribute (text otherwise)."""
    spec = rules.attributes.get(code) if rules.declared else None
    kind = spec.type if spec is not None else "string"
    if kind == "number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                problems.append(RowProblem(f"attributes.{code}", "must be a finite number"))
                return None
    if kind == "boolean":
        folded = value.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        problems.append(RowProblem(f"attributes.{code}", "must be true or false"))
        return None
    return value


# -- parsing (pure: may run in worker processes) ---------------------------------------------


@dataclass(frozen=True)
class ParsedRow:
    """A row checked like a request, with the claim id of each of its identities."""

    row: int
    reg: ParsedRegistration
    claim_ids: tuple[bytes, ...]  # UUID bytes: rows cross processes, ids key sets (cheaper)


Parsed = ParsedRow | Rejection
RawRow = tuple[int, Any]
"""(row number, the raw row: an NDJSON line as bytes, a CSV record as a list of cells, or the
:class:`RowProblem` that kept the reader from reading it)."""


def parse_rows(
    raws: Iterable[RawRow],
    rules: ProgramRules,
    claim_id: Callable[[Identity], UUID],
    layout: CsvLayout | None = None,
) -> list[Parsed]:
    """Decode and check ``raws`` (NDJSON lines, or CSV records when ``layout`` is given)."""
    out: list[Parsed] = []
    for row, raw in raws:
        if isinstance(raw, RowProblem):
            out.append(Rejection(row, InvalidInput.code, (raw,)))
            continue
        problems: list[RowProblem] = []
        try:
            cmd = decode_ndjson(raw) if layout is None else layout.decode(raw, rules)
        except BadRow as e:
            problems += e.problems
            if e.command is None:
                out.append(Rejection(row, InvalidInput.code, tuple(problems)))
                continue
            cmd = e.command
        try:
            reg = parse_registration(cmd, rules)
        except InvalidInput as e:
            problems += (RowProblem(p.field, p.reason) for p in e.problems)
        if problems:
            out.append(Rejection(row, InvalidInput.code, tuple(problems)))
            continue
        out.append(ParsedRow(row, reg, tuple(claim_id(i).bytes for i in reg.identities)))
    return out
