"""Fault injection at COMMIT for the ambiguous-commit tests (reliability case C7).

``lost_after_commit(app)`` lets the next save commit for real and then fails it as a connection
lost after COMMIT was sent would: the caller sees ``OperationalError`` although everything is
stored. ``lost_before_commit(app)`` fails the next save without committing. Both wrap the
tenant recorder's group commit, so every write path (events, idempotency completion, side
effects) goes through the real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import OperationalError

LOST = "server closed the connection unexpectedly (injected after COMMIT)"


@contextmanager
def _faulty_commit(app: Any, *, commit: bool, times: int) -> Iterator[list[int]]:
    recorder = app.recorder
    original = recorder._commit
    fired: list[int] = []

    def commit_then_lose(batch: list[Any]) -> None:
        if len(fired) >= times:
            original(batch)
            return
        if commit:
            original(batch)
        fired.append(len(batch))
        for save in batch:
            if save.error is None:
                save.error = OperationalError(LOST)
            save.done = True

    recorder._commit = commit_then_lose
    try:
        yield fired
    finally:
        del recorder._commit


def lost_after_commit(app: Any, times: int = 1) -> Any:
    """The next ``times`` saves commit, then answer a lost connection."""
    return _faulty_commit(app, commit=True, times=times)


def lost_before_commit(app: Any, times: int = 1) -> Any:
    """The next ``times`` saves fail with a lost connection before anything is written."""
    return _faulty_commit(app, commit=False, times=times)


def event_count(app: Any) -> int:
    return int(app.recorder.max_notification_id() or 0)
