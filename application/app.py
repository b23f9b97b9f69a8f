"""The event-sourced application: one instance per tenant, persisted under a fixed name."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

from domain.values import Identity

SideEffect = Callable[[Any, int], None]
"""Writes rows in the saving transaction (cursor, position of the save's last event)."""


def both(*effects: Any) -> SideEffect | None:
    """One side effect running each given one in order (None when there is none)."""
    present = [e for e in effects if e is not None]
    if not present:
        return None

    def run(curs: Any, position: int) -> None:
        for effect in present:
            effect(curs, position)

    return run


def utc_now() -> datetime:
    return datetime.now(UTC)


class DueIndex(Protocol):
    """What the scheduled jobs find due by ``as_of`` (the infrastructure wires an index)."""

    def points_accounts(self, as_of: datetime) -> list[UUID]:
        """Points accounts with lots due or holds timed out by ``as_of``."""

    def memberships(self, as_of: datetime) -> list[UUID]:
        """Level memberships with an assessment, warning or override end due by ``as_of``."""


class NoDueIndex:
    def points_accounts(self, as_of: datetime) -> list[UUID]:
        raise NotImplementedError("the infrastructure wires the due index")

    def memberships(self, as_of: datetime) -> list[UUID]:
        raise NotImplementedError("the infrastructure wires the due index")


class OwnerIndex(Protocol):
    """Which customers a staff member owns, for a handover (the infrastructure wires an index
    brought to the log head first, so no customer owned before the command is missed)."""

    def owned_by(self, staff_id: str) -> list[UUID]:
        """Active customers owned by ``staff_id``, in id order."""


class NoOwnerIndex:
    def owned_by(self, staff_id: str) -> list[UUID]:
        raise NotImplementedError("the infrastructure wires the owner index")


class Membercore(Application[UUID]):
    """Commands load aggregates, let them decide, and save their events in one transaction.

    ``name`` is persisted (table ``membercore_events``, tracking keys): never rename it.
    """

    name = "membercore"
    env = {"AGGREGATE_CACHE_MAXSIZE": "2000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}

    clock: Callable[[], datetime] = staticmethod(utc_now)
    due: DueIndex = NoDueIndex()
    owners: OwnerIndex = NoOwnerIndex()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Held while one batch round is decided and saved: concurrent batches of one tenant in
        # this process take turns by round instead of racing for the same buyers' streams
        # (each lost race re-decides half a round on fresh reads).
        self.batch_rounds = threading.Lock()
        super().__init__(*args, **kwargs)

    def last_position_of(self, aggregate_id: UUID) -> int:
        """Log position of the aggregate's latest event (read-your-writes for no-op commands)."""
        raise NotImplementedError("provided by the infrastructure's recorder")

    def still_at(self, versions: Mapping[UUID, int]) -> SideEffect:
        """A side effect for a save that raises ``IntegrityError`` (the save is then decided
        again) unless each of these streams is still at the version given."""
        raise NotImplementedError("provided by the infrastructure's recorder")

    def get_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Several aggregates at once (the infrastructure reads them in one query); missing ids
        are left out. Each is the caller's own copy."""
        found: dict[UUID, Any] = {}
        for aggregate_id in dict.fromkeys(aggregate_ids):
            try:
                found[aggregate_id] = self.repository.get(aggregate_id)
            except AggregateNotFoundError:
                continue
        return found

    def stored_position(self, events: Sequence[Any]) -> int | None:
        """Log position of the last of ``events`` when the first is stored exactly as given
        (a save that committed although its caller lost the connection), else None."""
        first = events[0]
        version = first.originator_version
        stored = list(self.recorder.select_events(first.originator_id, gt=version - 1, lte=version))
        if not stored or self.mapper.to_domain_event(stored[0]) != first:
            return None
        return self.last_position_of(events[-1].originator_id)

    def claim_id(self, identity: Identity) -> UUID:
        """Id of the claim making ``identity`` unique: a keyed hash of the normalised value."""
        raise NotImplementedError("provided by the infrastructure (the tenant's secret)")

    def ensure_keys(self, customer_ids: Iterable[UUID]) -> None:
        """Make the data keys of new customers ahead of a batch save (one round trip)."""

    def erasure(self, customer_id: UUID) -> SideEffect:
        """A side effect destroying the customer's data key in the erasure's own transaction."""
        raise NotImplementedError("provided by the infrastructure's key ring")

    def erased(self, customer_id: UUID) -> None:
        """Called after an erasure committed (drop cached keys)."""
