"""The application wired to one tenant's schema on the shared pool."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from eventsourcing.persistence import BaseInfrastructureFactory, Mapper
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment

from application.app import Membercore, SideEffect
from domain.values import Identity
from infrastructure.behaviors import erase_customer_behaviors
from infrastructure.crypto import KeyRing, SealingMapper, claim_id, identity_secret
from infrastructure.eventstore import SharedPoolDatastore, TenantRecorder


class TenantFactory(PostgresFactory):
    application_recorder_class = TenantRecorder

    def __init__(self, env: Environment, datastore: PostgresDatastore) -> None:
        BaseInfrastructureFactory.__init__(self, env)
        self.datastore = datastore


class TenantApp(Membercore):
    """``Membercore`` on a tenant schema. Tables are created by provisioning, never here."""

    # eventsourcing names every subclass after itself unless told: the persisted name must stay.
    name = Membercore.name

    def __init__(self, pool: Any, schema: str) -> None:
        self.schema = schema
        self.datastore = SharedPoolDatastore(pool, schema)
        self._identity_secret: bytes | None = None
        super().__init__(env={"CREATE_TABLE": "n", "IS_SNAPSHOTTING_ENABLED": "n"})

    def construct_factory(self, env: Environment) -> TenantFactory:
        return TenantFactory(env, self.datastore)

    def construct_mapper(self) -> Mapper[UUID]:
        self.keys = KeyRing(self.datastore)
        return SealingMapper(self.keys)

    @property
    def sealing_mapper(self) -> SealingMapper:
        assert isinstance(self.mapper, SealingMapper)
        return self.mapper

    def claim_id(self, identity: Identity) -> UUID:
        if self._identity_secret is None:
            self._identity_secret = identity_secret(self.datastore)
        return claim_id(self._identity_secret, identity)

    def ensure_keys(self, customer_ids: Iterable[UUID]) -> None:
        self.keys.ensure(customer_ids)

    def erasure(self, customer_id: UUID) -> SideEffect:
        def destroy(curs: Any, position: int) -> None:
            self.keys.destroy_in(curs, customer_id)
            erase_customer_behaviors(curs, self.schema, customer_id)

        return destroy

    def erased(self, customer_id: UUID) -> None:
        self.keys.forget(customer_id)

    @property
    def tenant_recorder(self) -> TenantRecorder:
        assert isinstance(self.recorder, TenantRecorder)
        return self.recorder

    def last_position_of(self, aggregate_id: UUID) -> int:
        return self.tenant_recorder.last_position_of(aggregate_id)

    def still_at(self, versions: Mapping[UUID, int]) -> SideEffect:
        return self.tenant_recorder.still_at(versions)

    def get_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Several aggregates with one query: cached ones fast-forwarded by the events after
        their cached version, the others built from their events. Missing ids are left out.
        Each returned aggregate is the caller's own copy (the cache keeps another)."""
        cache = self.repository.cache
        current: dict[UUID, Any] = {}
        wanted = list(dict.fromkeys(aggregate_ids))
        for aggregate_id in wanted:
            try:
                cached = cache.get(aggregate_id) if cache is not None else None
            except KeyError:
                continue
            # Copied under the repository's fast-forward lock (other threads fast-forward the
            # cached object in place), and its version read from the copy. The lock is the
            # library's own (eventsourcing 9.5, pinned below 9.6).
            lock = self.repository._use_fastforward_lock(aggregate_id)
            try:
                with lock:
                    current[aggregate_id] = copy.deepcopy(cached)
            finally:
                self.repository._disuse_fastforward_lock(aggregate_id)
        stored = self.tenant_recorder.events_after(
            {i: (current[i].version if i in current else 0) for i in wanted}
        )
        self.sealing_mapper.prepare(stored)  # the keys of sealed events, in bulk
        for stored_event in stored:
            event: Any = self.mapper.to_domain_event(stored_event)
            aggregate_id = event.originator_id
            current[aggregate_id] = event.mutate(current.get(aggregate_id))
        if cache is not None:
            for aggregate_id, aggregate in current.items():
                cache.put(aggregate_id, copy.deepcopy(aggregate))
        return current
