"""Merges move consents (newest decision per purpose and channel), the parent-agent link and the
referrer (when the survivor has none), and the undo gives back only what is unchanged since."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.context import CommandContext
from application.kernel import Caller, execute
from application.privacy import RecordConsent
from application.relationships import SetParentAgent
from domain.customer import Customer
from infrastructure.tenancy import Tenant
from projections.customer_profile import CustomerProfileProjection
from projections.engine import catch_up
from tests.integration.customer_events import doc
from tests.integration.merge_support import merged, undo
from tests.integration.support import register

CTX = CommandContext(actor="test")


def customer(tenant: Tenant, customer_id: UUID) -> Customer:
    found = tenant.app.repository.get(customer_id)
    assert isinstance(found, Customer)
    return found


def consent(tenant: Tenant, customer_id: UUID, channel: str, granted: bool, version: str) -> None:
    execute(
        tenant.app,
        RecordConsent(
            customer_id,
            purpose="marketing",
            channel=channel,
            granted=granted,
            policy_version=version,
            source="test",
        ),
        Caller(CTX.actor),
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

    merge_id = merged(tenant.app, survivor, source)

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

    undo(tenant.app, merge_id)

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
    merge_id = merged(tenant.app, survivor, source)
    consent(tenant, survivor, "sms", True, "v2")

    undo(tenant.app, merge_id)

    assert decisions(tenant, survivor) == {"sms": (True, "v2")}


def test_a_merge_gives_the_survivor_the_sources_parent_agent_and_referrer_and_undo_takes_them(
    tenant: Tenant, sql: Any
) -> None:
    top = agent(tenant, "TOP")
    referrer = register(tenant, ("pos_member_no", "R")).customer_id
    survivor = agent(tenant, "V")
    source = agent(tenant, "S", referrer_id=referrer)
    execute(tenant.app, SetParentAgent(source, top), Caller(CTX.actor))

    merge_id = merged(tenant.app, survivor, source)

    taken = customer(tenant, survivor)
    assert (taken.parent_agent_id, taken.referrer_id) == (top, referrer)
    catch_up(tenant, CustomerProfileProjection())
    profile = doc(sql, tenant, survivor)
    assert (profile["parent_agent_id"], profile["referrer_id"]) == (str(top), str(referrer))

    undo(tenant.app, merge_id)

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
    execute(tenant.app, SetParentAgent(source, top), Caller(CTX.actor))

    merge_id = merged(tenant.app, survivor, source)
    assert customer(tenant, survivor).referrer_id == own_referrer  # it had one: not replaced
    execute(
        tenant.app, SetParentAgent(survivor, other), Caller(CTX.actor)
    )  # changed since the merge
    undo(tenant.app, merge_id)

    assert customer(tenant, survivor).parent_agent_id == other
    assert customer(tenant, survivor).referrer_id == own_referrer


def test_a_merge_does_not_take_a_parent_agent_that_would_close_a_cycle(tenant: Tenant) -> None:
    survivor = agent(tenant, "V")
    below = agent(tenant, "BELOW")
    execute(
        tenant.app, SetParentAgent(below, survivor), Caller(CTX.actor)
    )  # BELOW is in the survivor's downline
    source = agent(tenant, "S")
    execute(tenant.app, SetParentAgent(source, below), Caller(CTX.actor))

    merge_id = merged(tenant.app, survivor, source)

    assert customer(tenant, survivor).parent_agent_id is None
    undo(tenant.app, merge_id)
    assert customer(tenant, source).parent_agent_id == below
