"""What every command handler is given besides its command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4


def _no_completion(status: int, body: dict[str, Any]) -> object | None:
    return None


@dataclass(frozen=True)
class CommandContext:
    """``actor`` is who asked (an API key id, ``cli``); ``complete`` turns the command's response
    into a side effect that stores it for idempotent replay in the events' own transaction."""

    actor: str
    complete: Callable[[int, dict[str, Any]], object | None] = _no_completion
    new_id: Callable[[], UUID] = field(default=uuid4)

    @property
    def idempotent(self) -> bool:
        return self.complete is not _no_completion
