"""Erasure and merges: what a merge copied from the source into the survivor's events is sealed
with the source's key, so erasing the source after an undo leaves none of its values readable.

Values are distinctive tokens, so "not readable" is a substring search over decoded events, the
export, and every row of every table of the tenant schema (events, projections, ...).
"""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from application.context import CommandContext
from application.customers import ChangeProfile, UnlinkIdentity
from application.kernel import Caller, execute
from application.privacy import EraseCustomer, export_customer
from domain.customer import Customer
from domain.values import Identity
from infrastructure.tenancy import Tenant
from projections.engine import catch_up
from projections.registry import PROJECTIONS
from tests.integration.merge_support import merge, merged, undo
from tests.integration.support import register
from tests.integration.test_privacy import found_in, schema_text

CTX = CommandContext(actor="test")


class Someone:
    def __init__(self, label: str) -> None:
        self.token = f"{label}{secrets.token_hex(5)}"
        self.name = f"Name-{self.token}"
        self.email = f"m.{self.token.lower()}@example.com"
        self.city = f"City-{self.token}"
        self.pos = f"POS-{self.token}"
        self.jd = f"JD-{self.token}"

    def values(self) -> list[str]:
        return [self.name, self.email, self.city, self.pos, self.jd]


def project(tenant: Tenant) -> None:
    for projection in PROJECTIONS:
        catch_up(tenant, projection)


def decoded_events_text(tenant: Tenant, customer_id: UUID) -> str:
    """Every event of the stream, decoded through the tenant's (sealing) mapper, as JSON."""
    app = tenant.app
    stored = app.recorder.select_events(customer_id)
    app.mapper.prepare(stored)
    return "\n".join(
        msgspec.json.encode(app.mapper.to_domain_event(e)).decode(errors="replace") for e in stored
    )


def export_text(tenant: Tenant, customer_id: UUID) -> str:
    return msgspec.json.encode(export_customer(tenant.app, customer_id).document).decode()


def merged_pair(tenant: Tenant) -> tuple[Someone, UUID, Someone, UUID]:
    """A survivor with a name only, and a source whose email, city and identities it lacks."""
    v, s = Someone("Survivor"), Someone("Source")
    survivor = register(tenant, ("pos_member_no", v.pos), name=v.name).customer_id
    source = register(
        tenant,
        ("pos_member_no", s.pos),
        ("jd_pin", s.jd),
        email=s.email,
        attributes={"city": s.city},
    ).customer_id
    return v, survivor, s, source


def test_erasing_a_restored_source_leaves_none_of_its_values_readable_in_the_former_survivor(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    v, survivor, s, source = merged_pair(tenant)
    merge_id = merged(tenant.app, survivor, source)
    # While merged, the survivor lives on: it drops one of the source's identities (its unlink
    # event names it) and changes a field the merge gave it (the history's "before" is the
    # source's value).
    execute(tenant.app, UnlinkIdentity(survivor, ("jd_pin", s.jd)), Caller(CTX.actor))
    execute(tenant.app, ChangeProfile(survivor, {}, {"city": "Own city"}), Caller(CTX.actor))
    project(tenant)
    assert s.email in decoded_events_text(tenant, survivor)  # the copy is readable until then
    assert found_in(schema_text(sql, tenant.schema), [s.jd])  # history held it
    undo(tenant.app, merge_id)
    project(tenant)  # the projections follow the log (a lag past the erasure: docs/identity.md)

    execute(tenant.app, EraseCustomer(source, "request"), Caller(CTX.actor))
    project(tenant)

    texts = {
        "events": decoded_events_text(tenant, survivor),
        "export": export_text(tenant, survivor),
        **schema_text(sql, tenant.schema),
    }
    assert found_in(texts, s.values()) == []
    # The survivor's own values are still there, and its stream still replays to the end.
    replayed = tenant.app.repository.get(survivor)
    assert isinstance(replayed, Customer)
    assert replayed.version == len(tenant.app.recorder.select_events(survivor))
    assert (replayed.name, replayed.identities) == (v.name, (Identity("pos_member_no", v.pos),))
    assert replayed.attributes == {"city": "Own city"}
    assert v.name in texts["events"]
    assert v.name in texts["export"]
    assert v.pos in texts["export"]


def test_erasing_the_survivor_while_the_merge_stands_shreds_the_sources_copies_too(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    v, survivor, s, source = merged_pair(tenant)
    merge(tenant.app, survivor, source)

    execute(tenant.app, EraseCustomer(survivor, None), Caller(CTX.actor))
    project(tenant)

    texts = {
        "survivor events": decoded_events_text(tenant, survivor),
        "source events": decoded_events_text(tenant, source),
        "export": export_text(tenant, survivor),
        **schema_text(sql, tenant.schema),
    }
    assert found_in(texts, [*v.values(), *s.values()]) == []
    assert tenant.app.repository.get(source).erased


def test_erasing_the_former_survivor_after_an_undo_leaves_the_restored_source_readable(
    tenant: Tenant,
) -> None:
    v, survivor, s, source = merged_pair(tenant)
    undo(tenant.app, merged(tenant.app, survivor, source))

    execute(tenant.app, EraseCustomer(survivor, None), Caller(CTX.actor))

    restored = tenant.app.repository.get(source)
    assert (restored.email, restored.attributes, restored.erased) == (
        s.email,
        {"city": s.city},
        False,
    )
    assert s.email in export_text(tenant, source)
    survivor_events = decoded_events_text(tenant, survivor)
    assert v.name not in survivor_events
    # The copies the former survivor's events hold are the source's data, sealed with its key.
    assert s.email in survivor_events
