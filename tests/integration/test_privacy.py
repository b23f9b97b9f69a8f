"""Erasure by crypto-shredding, on the real database: once erased, no personal value is left.

Every value a test gives is a distinctive token, so "appears nowhere" is a plain substring search
over every row of every table of the tenant schema (bytea decoded as UTF-8), and over the logs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import pytest
import structlog
from psycopg.sql import SQL, Identifier

from application.context import CommandContext
from application.customers import ChangeProfile, LinkIdentities, UnlinkIdentity
from application.kernel import Caller, execute
from application.privacy import EraseCustomer, RecordConsent, export_customer
from domain.customer import Customer
from domain.errors import CustomerErased, CustomerMerged
from domain.values import Identity
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import Tenant
from projections.engine import catch_up
from projections.registry import PROJECTIONS
from tests.integration.merge_support import merge
from tests.integration.support import register

CTX = CommandContext(actor="test")


class Person:
    """Distinctive personal values of one person (each contains ``token``)."""

    def __init__(self, label: str) -> None:
        self.token = f"{label}{secrets.token_hex(6)}"
        digits = f"{int(secrets.token_hex(3), 16) % 10**8:08d}"
        self.name = f"Name-{self.token}"
        self.renamed = f"Renamed-{self.token}"
        self.phone = f"+86139{digits}"
        self.email = f"mail.{self.token.lower()}@example.com"
        self.unionid = f"o6_{self.token}"
        self.pos = f"POS-{self.token}"
        self.jd = f"jd-{self.token}"
        self.city = f"City-{self.token}"

    def values(self) -> list[str]:
        """What must never be readable after erasure (the phone without its +)."""
        return [
            self.name,
            self.renamed,
            self.phone.removeprefix("+"),
            self.email,
            self.unionid,
            self.pos,
            self.jd,
            self.city,
        ]

    def register(self, tenant: Tenant) -> UUID:
        return register(
            tenant,
            ("wechat_unionid", self.unionid),
            ("pos_member_no", self.pos),
            name=self.name,
            phone=self.phone,
            email=self.email,
            attributes={"city": self.city},
        ).customer_id

    def live_a_little(self, tenant: Tenant, customer_id: UUID) -> None:
        """Changes whose events carry personal values too."""
        execute(
            tenant.app, ChangeProfile(customer_id, {"name": self.renamed}, {}), Caller(CTX.actor)
        )
        execute(tenant.app, LinkIdentities(customer_id, [("jd_pin", self.jd)]), Caller(CTX.actor))
        execute(
            tenant.app,
            RecordConsent(
                customer_id,
                purpose="marketing",
                channel="sms",
                granted=True,
                policy_version="v1",
                source="pos",
            ),
            Caller(CTX.actor),
        )


def schema_text(sql: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """Every row of every table of ``schema`` as text, per table; bytea decoded as UTF-8."""
    tables = [
        r["table_name"]
        for r in sql.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (schema,),
        ).fetchall()
    ]
    assert "membercore_events" in tables
    out: dict[str, str] = {}
    for table in tables:
        name = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        parts = [r["row"] for r in sql.execute(SQL("SELECT t::text AS row FROM {} t").format(name))]
        for row in sql.execute(SQL("SELECT * FROM {}").format(name)):
            for value in row.values():
                if isinstance(value, bytes | memoryview):
                    parts.append(bytes(value).decode("utf-8", errors="replace"))
        out[table] = "\n".join(parts)
    return out


def found_in(texts: dict[str, str], values: Iterable[str]) -> list[tuple[str, str]]:
    return [(table, v) for table, text in texts.items() for v in values if v in text]


def project(tenant: Tenant) -> None:
    for projection in PROJECTIONS:
        catch_up(tenant, projection)


def test_sealed_events_hold_no_personal_value_in_the_clear_even_before_erasure(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    person = Person("Sealed")
    customer_id = person.register(tenant)
    person.live_a_little(tenant, customer_id)

    events = schema_text(sql, tenant.schema)["membercore_events"]

    assert found_in({"membercore_events": events}, person.values()) == []
    assert tenant.app.repository.get(customer_id).name == person.renamed  # yet it reads back


def test_after_erasure_no_personal_value_is_left_anywhere_in_the_tenant_schema_or_the_logs(
    tenant: Tenant,
    sql: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    erased, merged_in, keeper = Person("Erased"), Person("MergedIn"), Person("Keeper")
    with structlog.testing.capture_logs() as logs:
        customer_id = erased.register(tenant)
        erased.live_a_little(tenant, customer_id)
        other_id = merged_in.register(tenant)
        merged_in.live_a_little(tenant, other_id)
        merge(tenant.app, customer_id, other_id)
        keeper_id = keeper.register(tenant)
        keeper.live_a_little(tenant, keeper_id)
        project(tenant)
        before = schema_text(sql, tenant.schema)
        # The read models hold the values until the erasure (so the search can find them).
        assert found_in(before, [erased.name, erased.unionid])

        execute(tenant.app, EraseCustomer(customer_id, "customer request"), Caller(CTX.actor))
        project(tenant)

    gone = [*erased.values(), *merged_in.values()]
    assert found_in(schema_text(sql, tenant.schema), gone) == []
    out, err = capfd.readouterr()
    logged = "\n".join([repr(logs), caplog.text, out, err])
    assert [v for v in gone if v in logged] == []
    # The keeper is untouched: still readable, still in the read models.
    assert tenant.app.repository.get(keeper_id).name == keeper.renamed
    assert found_in(schema_text(sql, tenant.schema), [keeper.renamed, keeper.jd])


def test_an_erased_customer_still_replays_as_erased_and_others_still_decrypt(
    tenant: Tenant,
) -> None:
    erased, keeper = Person("Erased"), Person("Keeper")
    customer_id = erased.register(tenant)
    erased.live_a_little(tenant, customer_id)
    keeper_id = keeper.register(tenant)
    keeper.live_a_little(tenant, keeper_id)

    execute(tenant.app, EraseCustomer(customer_id, None), Caller(CTX.actor))

    customer = tenant.app.repository.get(customer_id)
    assert isinstance(customer, Customer)
    assert customer.erased
    assert customer.identities == ()
    assert (customer.name, customer.phone, customer.email, customer.birthday) == (None,) * 4
    assert customer.attributes == {}
    assert customer.version == 5  # every event still replays, with the personal fields empty
    assert set(customer.consents) == {("marketing", "sms")}  # not personal: kept
    other = tenant.app.repository.get(keeper_id)
    assert (other.name, other.phone, other.email) == (keeper.renamed, keeper.phone, keeper.email)
    assert other.attributes == {"city": keeper.city}
    assert Identity("jd_pin", keeper.jd) in other.identities


def test_a_restarted_runtime_cannot_read_the_erased_data_either(
    tenant: Tenant, settings: Settings
) -> None:
    erased, keeper = Person("Erased"), Person("Keeper")
    customer_id = erased.register(tenant)
    keeper_id = keeper.register(tenant)
    execute(tenant.app, EraseCustomer(customer_id, None), Caller(CTX.actor))

    fresh = Runtime.open(settings)  # its own pool, no cached aggregate or key
    try:
        app = fresh.tenants.get(tenant.slug).app
        assert app is not tenant.app
        customer = app.repository.get(customer_id)
        assert customer.erased
        assert (customer.name, customer.identities, customer.attributes) == (None, (), {})
        stored = list(app.recorder.select_events(customer_id))
        decoded = [app.mapper.to_domain_event(s) for s in stored]
        assert decoded[0].name is None
        assert decoded[0].identities == ()
        assert app.repository.get(keeper_id).name == keeper.name
    finally:
        fresh.close()


def test_export_after_erasure_shows_empty_personal_values(tenant: Tenant) -> None:
    erased = Person("Erased")
    customer_id = erased.register(tenant)
    erased.live_a_little(tenant, customer_id)
    exported_before = msgspec.json.encode(export_customer(tenant.app, customer_id).document)
    assert erased.renamed.encode() in exported_before

    execute(tenant.app, EraseCustomer(customer_id, "request"), Caller(CTX.actor))
    exported = export_customer(tenant.app, customer_id).document

    state = exported["customer"]
    assert state["erased"] is True
    assert state["identities"] == []
    assert not {"name", "phone", "email", "birthday"} & set(state["profile"])
    assert not [k for k in state["profile"] if k.startswith("attributes.")]
    registered = msgspec.json.decode(msgspec.json.encode(exported["events"][0]))
    assert registered["type"] == "Registered"
    assert registered["data"]["name"] is None
    assert registered["data"]["identities"] == []
    assert registered["data"]["attributes"] == {}
    assert exported["events"][-1]["type"] == "Erased"
    text = msgspec.json.encode(exported).decode()
    assert [v for v in erased.values() if v in text] == []


def test_erasing_releases_the_identities_a_new_registration_may_then_take(
    tenant: Tenant,
) -> None:
    erased = Person("Erased")
    customer_id = erased.register(tenant)
    execute(tenant.app, EraseCustomer(customer_id, None), Caller(CTX.actor))

    again = register(tenant, ("wechat_unionid", erased.unionid), phone=erased.phone)

    assert not again.matched
    assert again.customer_id != customer_id


def test_erasing_twice_or_a_merged_away_customer_is_refused(tenant: Tenant) -> None:
    a, b = Person("A").register(tenant), Person("B").register(tenant)
    merge(tenant.app, a, b)

    with pytest.raises(CustomerMerged):
        execute(tenant.app, EraseCustomer(b, None), Caller(CTX.actor))
    execute(tenant.app, EraseCustomer(a, None), Caller(CTX.actor))
    with pytest.raises(CustomerErased):
        execute(tenant.app, EraseCustomer(a, None), Caller(CTX.actor))
    with pytest.raises(CustomerErased):
        execute(tenant.app, ChangeProfile(a, {"name": "x"}, {}), Caller(CTX.actor))


def test_erasing_a_survivor_erases_the_customers_merged_into_it(tenant: Tenant) -> None:
    survivor, source = Person("Survivor"), Person("Source")
    a, b = survivor.register(tenant), source.register(tenant)
    merge(tenant.app, a, b)

    execute(tenant.app, EraseCustomer(a, None), Caller(CTX.actor))

    merged_away = tenant.app.repository.get(b)
    assert merged_away.erased
    assert (merged_away.name, merged_away.identities) == (None, ())


def test_stored_idempotent_responses_hold_no_identity_value_after_erasure(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    # The API stores each command's answer for replay (idempotency_keys.body). Link and unlink
    # are asked with the identity values: once the person is erased they must not stay readable.
    erased = Person("Erased")
    customer_id = erased.register(tenant)
    keyed = Caller("test", tenant.slug, tenant.idempotency)
    link = LinkIdentities(customer_id, [("jd_pin", erased.jd)])
    unlink = UnlinkIdentity(customer_id, ("jd_pin", erased.jd))
    execute(tenant.app, link, keyed, client_id=secrets.token_hex(8))
    execute(tenant.app, unlink, keyed, client_id=secrets.token_hex(8))

    execute(tenant.app, EraseCustomer(customer_id, None), Caller(CTX.actor))

    stored = schema_text(sql, tenant.schema)["idempotency_keys"]
    assert erased.jd not in stored
