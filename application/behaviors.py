"""RecordBehaviors: page views, product views, searches, add-to-cart and feedback, in batches.

Behaviours are high-volume facts that change no balance, so they are not events of the customer
stream: they go to an append-only table of their own (docs/adr/0006). This module validates and
normalises a batch into typed :class:`Behavior` items and decides each item's outcome; the
storage is behind :class:`BehaviorStore` (no SQL here).

Idempotency is by the client's ``event_id``: the same id with the same content is a replay, the
same id with other content is refused (``idempotency_key_reused``), item by item.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol
from uuid import UUID

import msgspec
from eventsourcing.persistence import InterfaceError, OperationalError

from application.errors import IdempotencyKeyReused, ServiceUnavailable
from domain.errors import (
    CustomerErased,
    CustomerNotFound,
    DomainError,
    FieldProblem,
    InvalidInput,
)
from domain.values import fold_text, optional_text

BEHAVIOR_TYPES = ("page_view", "product_view", "search", "add_to_cart", "feedback")
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BATCH = 1000
MAX_CHANNEL = 64
# Integers in ``data`` stay exact in every JSON reader (JavaScript included).
MAX_INT = 2**53 - 1
# Multi-line text (feedback) keeps line breaks and tabs; every other control character is refused.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Stored fingerprint of a behaviour whose data was erased (see infrastructure.behaviors).
ERASED_FINGERPRINT = b""

DB_ATTEMPTS = 3


@dataclass(frozen=True)
class TextRule:
    max_length: int
    required: bool = False
    multiline: bool = False


@dataclass(frozen=True)
class IntRule:
    minimum: int
    maximum: int = MAX_INT
    required: bool = False


Rule = TextRule | IntRule

# The fields each type's ``data`` may hold; anything else is refused.
DATA_FIELDS: dict[str, dict[str, Rule]] = {
    "page_view": {
        "url": TextRule(2048, required=True),
        "title": TextRule(512),
        "referrer": TextRule(2048),
    },
    "product_view": {"sku": TextRule(128, required=True), "category": TextRule(256)},
    "search": {"query": TextRule(512, required=True), "results": IntRule(0)},
    "add_to_cart": {
        "sku": TextRule(128, required=True),
        "quantity": IntRule(1, required=True),
        "amount": IntRule(0),  # minor units (fen, cents)
    },
    "feedback": {"rating": IntRule(1, 5), "text": TextRule(2000, multiline=True)},
}
# Feedback needs at least one of these (both are optional on their own).
_AT_LEAST_ONE = {"feedback": ("rating", "text")}


@dataclass(frozen=True)
class BehaviorInput:
    """One behaviour as a client sent it (types already checked by the wire schema)."""

    event_id: str
    customer_id: UUID
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]
    channel: str | None = None


@dataclass(frozen=True)
class RecordBehaviors:
    behaviors: Sequence[BehaviorInput]


@dataclass(frozen=True)
class Behavior:
    """A validated, normalised behaviour: what is stored (``occurred_at`` in UTC)."""

    event_id: str
    customer_id: UUID
    type: str
    occurred_at: datetime
    channel: str | None
    data: dict[str, str | int]

    @cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 of the canonical item: equal for equal content, whatever the key order,
        the UTC offset the time was given in, or the width of the characters."""
        canonical = msgspec.json.encode(
            {
                "customer_id": str(self.customer_id),
                "type": self.type,
                "occurred_at": self.occurred_at.isoformat(timespec="microseconds"),
                "channel": self.channel,
                "data": self.data,
            },
            order="sorted",
        )
        return hashlib.sha256(canonical).digest()


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # stored now
    REPLAYED = "replayed"  # stored before (or earlier in this batch) with the same content
    REJECTED = "rejected"  # see the error


@dataclass(frozen=True)
class ItemResult:
    event_id: str
    outcome: Outcome
    error: DomainError | IdempotencyKeyReused | None = None


@dataclass(frozen=True)
class BehaviorsRecorded:
    """One result per input item, in input order."""

    results: tuple[ItemResult, ...]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)


class CustomerState(StrEnum):
    ACTIVE = "active"  # registered, behaviours are stored
    ERASED = "erased"  # registered, then erased: nothing more is stored about them


@dataclass(frozen=True)
class Appended:
    """What :meth:`BehaviorStore.append` found: the state of each of the batch's customers that
    is registered (absent: unknown), and the stored fingerprint of each event id that was taken."""

    customers: dict[UUID, CustomerState]
    taken: dict[str, bytes]


class BehaviorStore(Protocol):
    def append(self, behaviors: Sequence[Behavior]) -> Appended:
        """In one transaction, safe against a concurrent erasure: look the batch's customers up
        (one query), store the behaviours of active customers whose ``event_id`` is new (one
        statement), and read the fingerprints stored under the event ids that were taken."""


# -- validation -------------------------------------------------------------------------------


def _text(value: object, spec: TextRule, field: str, problems: list[FieldProblem]) -> str | None:
    if not isinstance(value, str):
        problems.append(FieldProblem(field, "must be a string"))
        return None
    if spec.multiline:
        folded: str | None = fold_text(value.replace("\r\n", "\n").replace("\r", "\n"))
        if folded and _CONTROL_BUT_LINES.search(folded):
            problems.append(FieldProblem(field, "must not contain control characters"))
            return None
        folded = folded or None
    else:
        try:
            folded = optional_text(value, field=field)
        except InvalidInput as e:
            problems.extend(e.problems)
            return None
    if folded is not None and len(folded) > spec.max_length:
        problems.append(FieldProblem(field, f"must be at most {spec.max_length} characters"))
        return None
    if folded is None and spec.required:
        problems.append(FieldProblem(field, "must not be empty"))
    return folded


def _int(value: object, spec: IntRule, field: str, problems: list[FieldProblem]) -> int | None:
    # JSON true/false decode to bool, a subclass of int: not a count.
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(FieldProblem(field, "must be an integer"))
        return None
    if not spec.minimum <= value <= spec.maximum:
        problems.append(FieldProblem(field, f"must be between {spec.minimum} and {spec.maximum}"))
        return None
    return value


def _parse_data(
    type_: str, data: object, field: str, problems: list[FieldProblem]
) -> dict[str, str | int]:
    if not isinstance(data, Mapping):
        problems.append(FieldProblem(field, "must be an object"))
        return {}
    specs = DATA_FIELDS[type_]
    parsed: dict[str, str | int] = {}
    for name in sorted(set(data) - set(specs), key=str):
        problems.append(FieldProblem(f"{field}.{name}", f"is not a field of {type_}"))
    for name, spec in specs.items():
        path = f"{field}.{name}"
        value = data.get(name)
        if value is None:  # absent and null mean the same
            if spec.required:
                problems.append(FieldProblem(path, "is required"))
            continue
        result = (
            _text(value, spec, path, problems)
            if isinstance(spec, TextRule)
            else _int(value, spec, path, problems)
        )
        if result is not None:
            parsed[name] = result
    one_of = _AT_LEAST_ONE.get(type_, ())
    reported = {p.field for p in problems}
    if one_of and not any(n in parsed or f"{field}.{n}" in reported for n in one_of):
        # Blank text counts as absent: an empty ``data`` is what erasure leaves behind.
        problems.append(FieldProblem(field, f"must give at least one of {', '.join(one_of)}"))
    return parsed


def _parse_item(item: BehaviorInput, n: int, problems: list[FieldProblem]) -> Behavior | None:
    at = f"behaviors[{n}]"
    before = len(problems)
    if not isinstance(item.event_id, str) or not EVENT_ID.match(item.event_id):
        problems.append(
            FieldProblem(f"{at}.event_id", "must be 1-128 characters from [A-Za-z0-9._:-]")
        )
    if not isinstance(item.customer_id, UUID):
        problems.append(FieldProblem(f"{at}.customer_id", "must be a UUID"))
    occurred_at = item.occurred_at
    if not isinstance(occurred_at, datetime) or occurred_at.utcoffset() is None:
        problems.append(FieldProblem(f"{at}.occurred_at", "must be a time with a UTC offset"))
    channel = None
    if item.channel is not None:
        channel = _text(item.channel, TextRule(MAX_CHANNEL), f"{at}.channel", problems)
    data: dict[str, str | int] = {}
    if item.type not in DATA_FIELDS:
        problems.append(FieldProblem(f"{at}.type", f"must be one of {', '.join(BEHAVIOR_TYPES)}"))
    else:
        data = _parse_data(item.type, item.data, f"{at}.data", problems)
    if len(problems) > before:
        return None
    return Behavior(
        event_id=item.event_id,
        customer_id=item.customer_id,
        type=item.type,
        occurred_at=occurred_at.astimezone(UTC),
        channel=channel,
        data=data,
    )


def parse_behaviors(items: Sequence[BehaviorInput]) -> list[Behavior]:
    """Validate and normalise a batch; :class:`InvalidInput` names every bad field
    (``behaviors[3].data.query``). Text is NFKC-folded and trimmed; blank optional text is
    dropped, as are optional fields given as null."""
    if not items:
        raise InvalidInput([FieldProblem("behaviors", "at least one behaviour is required")])
    if len(items) > MAX_BATCH:
        raise InvalidInput([FieldProblem("behaviors", f"at most {MAX_BATCH} per request")])
    problems: list[FieldProblem] = []
    parsed = [_parse_item(item, n, problems) for n, item in enumerate(items)]
    if problems:
        raise InvalidInput(problems)
    return [b for b in parsed if b is not None]


# -- the command ------------------------------------------------------------------------------


def _decide(store: BehaviorStore, behaviors: Sequence[Behavior]) -> list[ItemResult]:
    first: dict[str, Behavior] = {}
    for b in behaviors:
        first.setdefault(b.event_id, b)
    unique = list(first.values())
    appended = store.append(unique)

    decided: dict[str, ItemResult] = {}
    for b in unique:
        state = appended.customers.get(b.customer_id)
        taken = appended.taken.get(b.event_id)
        if state is None:
            decided[b.event_id] = ItemResult(
                b.event_id, Outcome.REJECTED, CustomerNotFound(b.customer_id)
            )
        elif state is CustomerState.ERASED:
            decided[b.event_id] = ItemResult(
                b.event_id, Outcome.REJECTED, CustomerErased(b.customer_id)
            )
        elif taken is None:
            decided[b.event_id] = ItemResult(b.event_id, Outcome.ACCEPTED)
        elif taken in (b.fingerprint, ERASED_FINGERPRINT):
            # An erased behaviour is not stored again: its id stays spent.
            decided[b.event_id] = ItemResult(b.event_id, Outcome.REPLAYED)
        else:
            decided[b.event_id] = ItemResult(
                b.event_id, Outcome.REJECTED, IdempotencyKeyReused(b.event_id)
            )

    results: list[ItemResult] = []
    for b in behaviors:
        representative = first[b.event_id]
        result = decided[b.event_id]
        if b is representative:
            results.append(result)
        elif b.fingerprint != representative.fingerprint:
            results.append(
                ItemResult(b.event_id, Outcome.REJECTED, IdempotencyKeyReused(b.event_id))
            )
        elif result.outcome is Outcome.ACCEPTED:
            results.append(ItemResult(b.event_id, Outcome.REPLAYED))
        else:
            results.append(result)
    return results


def record_behaviors(store: BehaviorStore, cmd: RecordBehaviors) -> BehaviorsRecorded:
    """Store a batch of behaviours; one result per item (accepted, replayed or rejected).

    Invalid input rejects the whole batch (:class:`InvalidInput`, nothing stored). Lost
    connections are retried, which is safe: storing is idempotent by event id (an item whose
    first attempt committed unseen answers ``replayed`` on the retry).
    """
    behaviors = parse_behaviors(cmd.behaviors)
    for n in range(DB_ATTEMPTS):
        try:
            return BehaviorsRecorded(tuple(_decide(store, behaviors)))
        except (OperationalError, InterfaceError) as e:
            if n == DB_ATTEMPTS - 1:
                raise ServiceUnavailable(f"database unavailable: {e}") from e
            time.sleep(random.uniform(0, 0.01 * (2**n)))  # noqa: S311 - jitter, not a secret
    raise AssertionError("unreachable")
