"""The application wired to one tenant's schema on the shared pool."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import BaseInfrastructureFactory, Mapper
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment

from application.app import Membercore
from infrastructure.eventstore import MsgspecMapper, SharedPoolDatastore, TenantRecorder


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
        super().__init__(env={"CREATE_TABLE": "n", "IS_SNAPSHOTTING_ENABLED": "n"})

    def construct_factory(self, env: Environment) -> TenantFactory:
        return TenantFactory(env, self.datastore)

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    @property
    def tenant_recorder(self) -> TenantRecorder:
        assert isinstance(self.recorder, TenantRecorder)
        return self.recorder

    def last_position_of(self, aggregate_id: UUID) -> int:
        return self.tenant_recorder.last_position_of(aggregate_id)
