"""In-memory implementations of the kernel's ports: a ``Membercore`` on eventsourcing's POPO
recorder and an idempotency store in a dict. Handlers run on them unchanged, so the unit tier
tests commands in microseconds without PostgreSQL; the integration tier runs the same commands
on the real stores.

Events go through the project's msgspec mapper, so an event that would not survive PostgreSQL
does not survive here either. A save's side effect runs under the recorder's lock after its
events are appended (``cursor`` is None: the in-memory stores it completes need none); when it
raises, the events are taken out again, as the transaction's rollback would.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Mapper, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from application.app import Membercore, SideEffect
from application.errors import IdempotencyKeyReused, RequestInProgress
from application.idempotency import IdempotencyKey, StoredAnswer
from domain.values import Identity
from infrastructure.crypto import claim_id
from infrastructure.eventstore import MsgspecMapper


class _Recorder(POPOApplicationRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        side_effect: SideEffect | None = kwargs.get("side_effect")
        with self._database_lock:
            ids = self._insert_events(stored_events)
            if side_effect is not None:
                try:
                    side_effect(None, ids[-1] if ids else 0)
                except BaseException:
                    self._roll_back(stored_events)
                    raise
        self._notify_listeners()
        return ids

    def _roll_back(self, stored_events: Sequence[StoredEvent]) -> None:
        # A failed side effect undoes the save, as the transaction it stands for would.
        del self._stored_events[len(self._stored_events) - len(stored_events) :]
        for s in stored_events:
            del self._stored_events_index[str(s.originator_id)][s.originator_version]

    def last_position_of(self, originator_id: UUID) -> int:
        with self._database_lock:
            index = self._stored_events_index.get(str(originator_id))
            return max(index.values()) + 1 if index else 0

    def version_of(self, originator_id: UUID) -> int | None:
        # Called by a save's side effect, under the lock the insert holds.
        index = self._stored_events_index.get(str(originator_id))
        return max(index) if index else None


class InMemoryMembercore(Membercore):
    """``Membercore`` in memory: one per test, nothing shared."""

    name = Membercore.name

    def __init__(self, *, now: datetime | None = None) -> None:
        super().__init__(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        if now is not None:
            self.clock = lambda: now  # type: ignore[method-assign]

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    def construct_recorder(self) -> ApplicationRecorder:
        return _Recorder()

    def last_position_of(self, aggregate_id: UUID) -> int:
        assert isinstance(self.recorder, _Recorder)
        return self.recorder.last_position_of(aggregate_id)

    def still_at(self, versions: Mapping[UUID, int]) -> SideEffect:
        recorder = self.recorder
        assert isinstance(recorder, _Recorder)

        def check(curs: Any, position: int) -> None:
            moved = [i for i, v in versions.items() if recorder.version_of(i) != v]
            if moved:
                raise IntegrityError(f"read streams moved on: {moved}")

        return check

    def claim_id(self, identity: Identity) -> UUID:
        return claim_id(b"in-memory identity secret", identity)

    def erasure(self, customer_id: UUID) -> SideEffect:
        def forget(curs: Any, position: int) -> None:
            """Nothing is sealed in memory: the erasure event is the whole effect."""

        return forget


class InMemoryIdempotencyStore:
    """The idempotency port in a dict (claims never go stale: one process, one test)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], tuple[str, StoredAnswer | None]] = {}

    def begin(self, key: IdempotencyKey) -> StoredAnswer | None:
        with self._lock:
            found = self._keys.get((key.scope, key.key))
            if found is None:
                self._keys[(key.scope, key.key)] = (key.fingerprint, None)
                return None
            fingerprint, answer = found
            if fingerprint != key.fingerprint:
                raise IdempotencyKeyReused(key.key)
            if answer is None:
                raise RequestInProgress(key.key)
            return answer

    def answer(self, key: IdempotencyKey) -> StoredAnswer | None:
        with self._lock:
            found = self._keys.get((key.scope, key.key))
            return None if found is None else found[1]

    def completion(self, key: IdempotencyKey, answer: StoredAnswer) -> Any:
        def write(curs: Any, position: int) -> None:
            self.complete(key, StoredAnswer(answer.outcome, answer.body, position))

        return write

    def complete(self, key: IdempotencyKey, answer: StoredAnswer) -> None:
        with self._lock:
            found = self._keys.get((key.scope, key.key))
            if found is not None and found[1] is None:
                self._keys[(key.scope, key.key)] = (found[0], answer)

    def release(self, key: IdempotencyKey) -> None:
        with self._lock:
            found = self._keys.get((key.scope, key.key))
            if found is not None and found[1] is None:
                del self._keys[(key.scope, key.key)]
