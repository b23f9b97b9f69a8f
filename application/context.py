"""What every command handler is given besides its command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID, uuid4


@dataclass(frozen=True)
class CommandContext:
    """``actor`` is who asked (an API key id, ``cli``, a job); ``new_id`` gives the id of what
    the command creates: derived from the client's id when it has one, so that a retry creates
    the same thing, and the same on every attempt of one run."""

    actor: str
    new_id: Callable[[], UUID] = field(default=uuid4)
