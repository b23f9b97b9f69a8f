"""Merges move consents (newest decision per purpose and channel), the parent-agent link and the
referrer (when the survivor has none), and the undo gives back only what is unchanged since."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.context import CommandContext
from application.merges import merge_customers, undo_merge
from application.privacy import record_consent
from application.relationships import set_parent_agent
from domain.customer import Customer
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up
from tests.integration.customer_events import doc
from tests.integration.support import register

CTX = CommandContext(actor="test")


def customer(tenant: Tenant, customer_id: UUID) -> Customer:
    found = tenant.app.repository.get(customer_id)
    assert isinstance(found, Customer)
    return found


def consent(tenant: Tenant, customer_id: UUID, channel: str, granted: bool, version: str) -> None:
    record_consent(
        tenant.app,
        customer_id,
        purpose="marketing",
        channel=channel,
        granted=granted,
        policy_version=version,
        source="test",
        ctx=CTX,
    )


def decisions(tenant: Tenant, customer_id: UUID) -> dict[str, tuple[bool, str | None]]:
    return {
        channel: (c.granted, c.policy_version)
        for (_, channel), c in customer(tenant, customer_id).consents.items()
    }


def agent(tenant: Tenant, pos: str, **fields: Any) -> UUID:
    return register(tenant, ("pos_member_no", pos), roles=["agent"], **fields).customer_id


def test_a_merge_keeps_the_newest_consent_decision_per_channel_and_undo_restores_the_survivors(
    tenant: Tenant, sql: Any
) -> None:
    survivor = register(tenant, ("pos_member_no", "V")).customer_id
    source = register(tenant, ("pos_member_no", "S")).customer_id
    consent(tenant, source, "sms", True, "s1")  # older than the survivor's sms decision
    consent(tenant, survivor, "sms", False, "v1")
    consent(tenant, survivor, "email", True, "v1")  # older than the source's email decision
    consent(tenant, source, "email", False, "s2")
    consent(tenant, source, "wechat", True, "s3")  # the survivor has none

    merge_id = merge_customers(tenant.app, survivor, source, CTX).merge_id

    assert decisions(tenant, survivor) == {
        "sms": (False, "v1"),
        "email": (False, "s2"),
        "wechat": (True, "s3"),
    }
    catch_up(tenant, CustomerProfileProjection())
    profile = {
        c["channel"]: (c["granted"], c["policy_version"])
        for c in doc(sql, tenant, survivor)["consents"]
    }
    assert profile == decisions(tenant, survivor)

    undo_merge(tenant.app, merge_id, CTX)

    assert decisions(tenant, survivor) == {"sms": (False, "v1"), "email": (True, "v1")}
    assert decisions(tenant, source) == {
        "sms": (True, "s1"),
        "email": (False, "s2"),
        "wechat": (True, "s3"),
    }
    catch_up(tenant, CustomerProfileProjection())
    profile = {
        c["channel"]: (c["granted"], c["policy_version"])
        for c in doc(sql, tenant, survivor)["consents"]
    }
    assert profile == decisions(tenant, survivor)


def test_undo_keeps_a_consent_decided_again_on_the_survivor_after_the_merge(
    tenant: Tenant,
) -> None:
    survivor = register(tenant, ("pos_member_no", "V")).customer_id
    source = register(tenant, ("pos_member_no", "S")).customer_id
    consent(tenant, source, "sms", True, "s1")
    merge_id = merge_customers(tenant.app, survivor, source, CTX).merge_id
    consent(tenant, survivor, "sms", True, "v2")

    undo_merge(tenant.app, merge_id, CTX)

    assert decisions(tenant, survivor) == {"sms": (True, "v2")}


def test_a_merge_gives_the_survivor_the_sources_parent_agent_and_referrer_and_undo_takes_them(
    tenant: Tenant, sql: Any
) -> None:
    top = agent(tenant, "TOP")
    referrer = register(tenant, ("pos_member_no", "R")).customer_id
    survivor = agent(tenant, "V")
    source = agent(tenant, "S", referrer_id=referrer)
    set_parent_agent(tenant.app, source, top, CTX)

    merge_id = merge_customers(tenant.app, survivor, source, CTX).merge_id

    merged = customer(tenant, survivor)
    assert (merged.parent_agent_id, merged.referrer_id) == (top, referrer)
    catch_up(tenant, CustomerProfileProjection())
    profile = doc(sql, tenant, survivor)
    assert (profile["parent_agent_id"], profile["referrer_id"]) == (str(top), str(referrer))

    undo_merge(tenant.app, merge_id, CTX)

    restored = customer(tenant, survivor)
    assert (restored.parent_agent_id, restored.referrer_id) == (None, None)
    back = customer(tenant, source)
    assert (back.parent_agent_id, back.referrer_id) == (top, referrer)
    catch_up(tenant, CustomerProfileProjection())
    profile = doc(sql, tenant, survivor)
    assert (profile["parent_agent_id"], profile["referrer_id"]) == (None, None)


def test_a_survivors_own_parent_and_referrer_stay_and_a_parent_changed_since_is_kept_on_undo(
    tenant: Tenant,
) -> None:
    top, other = agent(tenant, "TOP"), agent(tenant, "OTHER")
    own_referrer = register(tenant, ("pos_member_no", "R1")).customer_id
    survivor = agent(tenant, "V", referrer_id=own_referrer)
    source = agent(tenant, "S", referrer_id=register(tenant, ("jd_pin", "R2")).customer_id)
    set_parent_agent(tenant.app, source, top, CTX)

    merge_id = merge_customers(tenant.app, survivor, source, CTX).merge_id
    assert customer(tenant, survivor).referrer_id == own_referrer  # it had one: not replaced
    set_parent_agent(tenant.app, survivor, other, CTX)  # changed since the merge
    undo_merge(tenant.app, merge_id, CTX)

    assert customer(tenant, survivor).parent_agent_id == other
    assert customer(tenant, survivor).referrer_id == own_referrer


def test_a_merge_does_not_take_a_parent_agent_that_would_close_a_cycle(tenant: Tenant) -> None:
    survivor = agent(tenant, "V")
    below = agent(tenant, "BELOW")
    set_parent_agent(tenant.app, below, survivor, CTX)  # BELOW is in the survivor's downline
    source = agent(tenant, "S")
    set_parent_agent(tenant.app, source, below, CTX)

    merge_id = merge_customers(tenant.app, survivor, source, CTX).merge_id

    assert customer(tenant, survivor).parent_agent_id is None
    undo_merge(tenant.app, merge_id, CTX)
    assert customer(tenant, source).parent_agent_id == below
