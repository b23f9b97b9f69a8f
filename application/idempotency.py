"""Idempotency by client id: the port the kernel uses, and its value types.

A first request claims its key; the claim is completed in the same transaction as the command's
events (so a crash can never leave events without their stored answer, or the reverse). A replay
with the same fingerprint gets the stored answer; another fingerprint is refused. A completed key
is final: completing it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

StoredOutcome = Literal["created", "done", "rejected"]


@dataclass(frozen=True)
class IdempotencyKey:
    """``scope`` names the operation (and path parameters); ``key`` is the client's id;
    ``fingerprint`` is a digest of the whole request."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer to a key: an outcome with its body, or a rejection (its problem fields:
    ``code``, ``detail`` and the error's own). ``position`` is filled in by the store when it
    completes the key in the events' transaction."""

    outcome: StoredOutcome
    body: dict[str, Any]
    position: int | None


class IdempotencyStore(Protocol):
    def begin(self, key: IdempotencyKey) -> StoredAnswer | None:
        """Claim ``key``: None when claimed now, the stored answer for a replay.

        Raises IdempotencyKeyReused (other fingerprint) or RequestInProgress (claimed, not done).
        """

    def answer(self, key: IdempotencyKey) -> StoredAnswer | None:
        """The stored answer of a completed key (None while it is not completed)."""

    def completion(self, key: IdempotencyKey, answer: StoredAnswer) -> Any:
        """A side effect for ``save()`` that completes the claim in the events' transaction."""

    def complete(self, key: IdempotencyKey, answer: StoredAnswer) -> None:
        """Complete the claim alone, for outcomes that wrote no events (matches, rejections)."""

    def release(self, key: IdempotencyKey) -> None:
        """Drop an unfinished claim after a transient failure, so the client can retry."""
