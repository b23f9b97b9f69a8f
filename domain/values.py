"""Value objects and input normalisation shared by the aggregates."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from domain.errors import FieldProblem, InvalidInput

IDENTITY_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_IDENTITY_VALUE = 256


# Control characters have no place in names or ids, and PostgreSQL text cannot hold NUL at all.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def fold_text(value: str) -> str:
    """Fold full-width characters (NFKC) and trim surrounding whitespace, as channels send both."""
    return unicodedata.normalize("NFKC", value).strip()


def optional_text(value: str | None, *, field: str) -> str | None:
    """Folded text, None when absent or blank; control characters are refused."""
    if value is None:
        return None
    folded = fold_text(value)
    if CONTROL_CHARACTERS.search(folded):
        raise InvalidInput([FieldProblem(field, "must not contain control characters")])
    return folded or None


@dataclass(frozen=True, order=True)
class Identity:
    """One channel account of a person: ``wechat_unionid:o6_bmjrPTlm6_2sgVt7hMZOPfL2M``, ..."""

    type: str
    value: str

    @classmethod
    def parse(cls, type_: str, value: str, *, field: str = "identities") -> Identity:
        """Validate and normalise; raise :class:`InvalidInput` naming ``field`` when it is bad."""
        problems: list[FieldProblem] = []
        folded_type = fold_text(type_).lower()
        folded_value = fold_text(value)
        if not IDENTITY_TYPE.match(folded_type):
            problems.append(FieldProblem(f"{field}.type", "must match ^[a-z][a-z0-9_]{0,31}$"))
        if not folded_value:
            problems.append(FieldProblem(f"{field}.value", "must not be empty"))
        elif CONTROL_CHARACTERS.search(folded_value):
            problems.append(FieldProblem(f"{field}.value", "must not contain control characters"))
        elif len(folded_value) > MAX_IDENTITY_VALUE:
            problems.append(
                FieldProblem(f"{field}.value", f"must be at most {MAX_IDENTITY_VALUE} characters")
            )
        if problems:
            raise InvalidInput(problems)
        return cls(folded_type, folded_value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def parse_role(role: str, *, field: str = "roles") -> str:
    folded = fold_text(role).lower()
    if not ROLE_NAME.match(folded):
        raise InvalidInput(
            [FieldProblem(field, f"role {role!r} must match ^[a-z][a-z0-9_]{{0,31}}$")]
        )
    return folded
