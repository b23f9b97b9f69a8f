"""The command kernel: the one way a write runs.

parse (the caller builds a ``Command``) → load and decide (the command's handler, a pure decision
in ``domain/`` on what it read) → save once (one transaction: the events, the handler's side
effect and the idempotency key's completion) → answer (``Answer``: created, done or replayed).

Retries are bounded. A stream taken by another writer (``IntegrityError``) is reloaded and decided
again. A connection lost around COMMIT is ambiguous: the kernel then reads back the first event it
tried to store; when that event is there, exactly as decided, the save committed and the command
answers what it decided instead of running again.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import msgspec
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from application.app import Membercore, SideEffect, both
from application.context import CommandContext
from application.errors import (
    ConcurrencyConflict,
    RejectionReplayed,
    ServiceUnavailable,
    UnknownOperation,
)
from application.idempotency import (
    IdempotencyKey,
    IdempotencyStore,
    StoredAnswer,
    StoredOutcome,
)
from domain.errors import DomainError

# Enough for a handful of writers racing on one stream on a busy 2-core machine (~1 s of
# back-off in all); past it the client gets concurrency_conflict and may retry.
MAX_ATTEMPTS = 10
# Connection losses are retried this many times before the command answers unavailable.
MAX_LOST_CONNECTIONS = 3


class Outcome(StrEnum):
    CREATED = "created"
    DONE = "done"
    REPLAYED = "replayed"


@dataclass(frozen=True)
class Answer:
    """What a command did: ``outcome``, its response ``body`` and the log position of its last
    event (read-your-writes for queries with ``min_position``)."""

    outcome: Outcome
    body: dict[str, Any]
    position: int


@dataclass(frozen=True)
class Decision:
    """What one attempt decided: the aggregates to save (their pending events), an optional side
    effect written in the same transaction, and the answer. A decision saving nothing answers at
    ``position`` when given (a job that ran its own commands), else at the last position of
    ``position_of`` (0 when None)."""

    outcome: Outcome
    body: dict[str, Any]
    save: Sequence[Aggregate] = ()
    # Read, not changed, but decided on: the save commits only while they are still at the
    # versions read (a grant decided on a customer a merge has since taken away is decided
    # again, as a write to a stale stream is).
    unchanged: Sequence[Aggregate] = ()
    side_effect: SideEffect | None = None
    position_of: UUID | None = None
    after_commit: Callable[[], None] | None = None
    position: int | None = None

    def unsaved_position(self, app: Membercore) -> int:
        if self.position is not None:
            return self.position
        return app.last_position_of(self.position_of) if self.position_of else 0

    def pending(self) -> list[Any]:
        return [e for aggregate in self.save for e in aggregate.pending_events]


@dataclass(frozen=True)
class Command:
    """A write, named as its operation id (``RedeemPoints``).

    ``scope`` names the fields that say which resource it acts on (the route's path parameters):
    with the operation they scope its idempotency key. ``client_id`` names the field holding the
    client's id for it, when the body carries one (``redemption_id``); commands without one take
    an optional ``Idempotency-Key``.
    """

    operation: ClassVar[str]
    scope: ClassVar[tuple[str, ...]] = ()
    client_id: ClassVar[str | None] = None
    # Decisions a lost race may cost: more for commands many writers race for on one stream
    # (a quota, where each round lets one writer through).
    attempts: ClassVar[int] = MAX_ATTEMPTS

    def key_scope(self) -> str:
        return ":".join([self.operation, *(str(getattr(self, f)) for f in self.scope)])

    def own_client_id(self) -> str | None:
        return None if self.client_id is None else str(getattr(self, self.client_id))

    def fingerprint(self) -> str:
        # Every field but what only carries the work (``UNFINGERPRINTED``): a reused client id
        # with another request (body or path) is refused.
        state = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.metadata.get("fingerprint", True)
        }
        canonical = msgspec.json.encode(msgspec.to_builtins(state), order="sorted")
        return hashlib.sha256(canonical).hexdigest()


# Field metadata of what a command carries to do its work but is not part of the request (a
# stream, say): such a field is left out of the fingerprint, which names the request.
UNFINGERPRINTED = {"fingerprint": False}

C = TypeVar("C", bound=Command)
Handler = Callable[[Membercore, Any, CommandContext], Decision]


@dataclass(frozen=True)
class Registered(Generic[C]):
    command: type[C]
    handler: Handler


REGISTRY: dict[str, Registered[Any]] = {}


def handles(command: type[C]) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the one way ``command`` runs (keyed by its operation id)."""

    def register(handler: Handler) -> Handler:
        existing = REGISTRY.get(command.operation)
        if existing is not None and existing.handler is not handler:
            raise ValueError(f"operation {command.operation} has two handlers")
        REGISTRY[command.operation] = Registered(command, handler)
        return handler

    return register


def handler_of(command: Command) -> Handler:
    registered = REGISTRY.get(command.operation)
    if registered is None or not isinstance(command, registered.command):
        raise UnknownOperation(command.operation)
    return registered.handler


@dataclass(frozen=True)
class Caller:
    """Who runs a command: ``actor`` (an API key id, ``cli``, a job) in ``tenant``."""

    actor: str
    tenant: str = ""
    idempotency: IdempotencyStore | None = field(default=None, compare=False)


def execute(
    app: Membercore, command: Command, caller: Caller, *, client_id: str | None = None
) -> Answer:
    """Run ``command`` once per client id: a repeat answers the first outcome (``REPLAYED``),
    a repeated rejection raises ``RejectionReplayed``."""
    handler = handler_of(command)
    client_id = command.own_client_id() or client_id
    if client_id is None or caller.idempotency is None:
        # One id for every attempt: a retry decides the same ids as the attempt it repeats.
        fresh = uuid4()
        ctx = CommandContext(caller.actor, new_id=lambda: fresh)
        return _attempts(app, handler, command, ctx, None)

    store = caller.idempotency
    scope = command.key_scope()
    key = IdempotencyKey(scope, client_id, command.fingerprint())
    stored = store.begin(key)
    if stored is not None:
        return _replay(stored)
    # Ids derived from the key make a retried command decide byte-identical events.
    derived = uuid5(NAMESPACE_URL, f"membercore:{caller.tenant}:{scope}:{client_id}")
    ctx = CommandContext(caller.actor, new_id=lambda: derived)
    try:
        return _attempts(app, handler, command, ctx, (store, key))
    except DomainError as e:
        # The rejection is this key's answer: replaying it must not run the command again.
        store.complete(key, StoredAnswer("rejected", rejection_of(e), None))
        raise
    except BaseException:
        # Transient failures (conflicts, database down) leave the key free for a retry; a key
        # whose command committed is already done, and releasing never touches a done key.
        store.release(key)
        raise


def rejection_of(e: DomainError) -> dict[str, Any]:
    return {"code": e.code, "detail": e.detail, **e.problem_fields()}


def _stored(outcome: Outcome) -> StoredOutcome:
    return "created" if outcome is Outcome.CREATED else "done"


def _replay(stored: StoredAnswer) -> Answer:
    if stored.outcome == "rejected":
        raise RejectionReplayed(stored.body)
    return Answer(Outcome.REPLAYED, stored.body, stored.position or 0)


Completion = tuple[IdempotencyStore, IdempotencyKey] | None


def _attempts(
    app: Membercore, handler: Handler, command: Command, ctx: CommandContext, key: Completion
) -> Answer:
    # Lost races and lost connections have budgets of their own: a command that may decide
    # only a few times still gets its retries after a dropped connection, and the reverse.
    conflicts = lost = 0
    # A save whose connection was lost and whose outcome could not be read back yet: until it
    # is known not to have committed, deciding again could answer something else.
    unresolved: tuple[Decision, list[Any]] | None = None
    while True:
        decision: Decision | None = None
        pending: list[Any] = []
        try:
            if unresolved is not None:
                answer = _if_committed(app, *unresolved, key)
                if answer is not None:
                    return answer
                unresolved = None
            decision = handler(app, command, ctx)
            # Saving collects them: kept to find out later whether they were stored.
            pending = decision.pending()
            return _save(app, decision, pending, key)
        except IntegrityError:
            conflicts += 1
            if conflicts >= command.attempts:
                raise ConcurrencyConflict(command.attempts) from None
        except (OperationalError, InterfaceError) as e:
            if decision is not None:
                unresolved = (decision, pending)
                try:
                    answer = _if_committed(app, decision, pending, key)
                except (OperationalError, InterfaceError):
                    answer = None
                else:
                    unresolved = None
                if answer is not None:
                    return answer
            lost += 1
            if lost >= MAX_LOST_CONNECTIONS:
                raise ServiceUnavailable(f"database unavailable: {e}") from e
        back_off = 0.002 * (2 ** (conflicts + lost))
        time.sleep(random.uniform(0, min(0.2, back_off)))  # noqa: S311 - jitter, not a secret


def _save(app: Membercore, decision: Decision, pending: list[Any], key: Completion) -> Answer:
    if not pending and decision.side_effect is None:
        position = decision.unsaved_position(app)
        if key is not None:
            store, k = key
            store.complete(k, StoredAnswer(_stored(decision.outcome), decision.body, position))
        return Answer(decision.outcome, decision.body, position)
    completion = None
    if key is not None:
        store, k = key
        completion = store.completion(
            k, StoredAnswer(_stored(decision.outcome), decision.body, None)
        )
    guard = None
    if decision.unchanged:
        guard = app.still_at({a.id: a.version for a in decision.unchanged})
    side_effect = both(guard, decision.side_effect, completion)
    recordings = app.save(*decision.save, side_effect=side_effect)
    position = recordings[-1].notification.id if recordings else decision.unsaved_position(app)
    if decision.after_commit is not None:
        decision.after_commit()
    return Answer(decision.outcome, decision.body, position)


def _if_committed(
    app: Membercore, decision: Decision, pending: list[Any], key: Completion
) -> Answer | None:
    """The answer of a save that committed although its connection was lost, None when it did
    not commit. Raises what the database raises when that cannot be read now."""
    if key is not None:
        # Completed in the events' transaction: done means the save committed.
        store, k = key
        done = store.answer(k)
        position = None if done is None else (done.position or 0)
    elif pending:
        position = app.stored_position(pending)
    else:
        return None
    if position is None:
        return None
    if decision.after_commit is not None:
        decision.after_commit()
    return Answer(decision.outcome, decision.body, position)
