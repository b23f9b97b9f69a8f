"""Idempotency by client id: the port the handlers and the API use, and its value types.

A first request claims its key; the claim is completed in the same transaction as the command's
events (so a crash can never leave events without their stored response, or the reverse). A
replay with the same fingerprint gets the stored response; another fingerprint is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec


@dataclass(frozen=True)
class IdempotencyKey:
    """``scope`` names the operation (and path parameters); ``key`` is the client's id."""

    scope: str
    key: str
    fingerprint: str

    @classmethod
    def for_request(cls, scope: str, key: str, request: Mapping[str, Any] | Any) -> IdempotencyKey:
        canonical = msgspec.json.encode(msgspec.to_builtins(request), order="sorted")
        return cls(scope, key, hashlib.sha256(canonical).hexdigest())


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]
    position: int | None


class IdempotencyStore(Protocol):
    def begin(self, key: IdempotencyKey) -> StoredResponse | None:
        """Claim ``key``: None when claimed now, the stored response for a replay.

        Raises IdempotencyKeyReused (other fingerprint) or RequestInProgress (claimed, not done).
        """

    def completion(self, key: IdempotencyKey, status: int, body: dict[str, Any]) -> object:
        """A side effect for ``save()`` that completes the claim in the events' transaction."""

    def complete(self, key: IdempotencyKey, response: StoredResponse) -> None:
        """Complete the claim alone, for outcomes that wrote no events (matches, rejections)."""

    def release(self, key: IdempotencyKey) -> None:
        """Drop an unfinished claim after an unexpected failure, so the client can retry."""
