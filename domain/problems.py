"""Validation helpers for documents checked as a whole (the program): every problem is listed."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from domain.errors import FieldProblem

CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Problems:
    """Collects every problem of a document, each naming its field, so all are reported at once."""

    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(FieldProblem(path, reason))

    def object(self, value: Any, path: str, allowed: Sequence[str]) -> dict[str, Any]:
        """``value`` as a dict, with every unknown key reported; {} when it is not one."""
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return {}
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else key, "unknown field")
        return value

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        """``value`` as a dict whose keys are names the caller checks; {} when it is not one."""
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return {}
        return value

    def list(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.add(path, "must be a list")
            return []
        return value

    def code(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not CODE.match(value):
            self.add(path, "must match ^[a-z][a-z0-9_]{0,31}$")
            return None
        return value

    def positive_int(self, value: Any, path: str, *, minimum: int = 1) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(path, f"must be an integer >= {minimum}")
            return None
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str | None:
        if value not in choices:
            self.add(path, f"must be one of {', '.join(choices)}")
            return None
        return str(value)

    def coded(
        self, value: Any, path: str, allowed: Sequence[str], what: str
    ) -> Iterator[tuple[str, dict[str, Any], str | None]]:
        """Each object of the list ``value`` (unknown keys reported) with its path and its
        ``code`` (None when not a valid code); a code given twice is a duplicate ``what``."""
        seen: set[str] = set()
        for n, raw in enumerate(self.list(value, path)):
            item_path = f"{path}[{n}]"
            item = self.object(raw, item_path, allowed)
            code = self.code(item.get("code"), f"{item_path}.code")
            if code in seen:
                self.add(f"{item_path}.code", f"duplicate {what} {code!r}")
            seen.add(code or "")
            yield item_path, item, code
