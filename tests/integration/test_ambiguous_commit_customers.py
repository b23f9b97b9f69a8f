"""A connection lost around COMMIT, for every customer command (reliability cases C5, C7).

After COMMIT the command has happened: the kernel finds that out (the idempotency key completed
in the same transaction, or its first event read back) and answers what it decided, once. Before
COMMIT nothing happened: the kernel runs it again and it happens once. Either way the log holds
what one clean run writes, and a client's retry with the same key answers the first answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.customers import (
    AddTags,
    ChangeProfile,
    LinkIdentities,
    RemoveTag,
    UnlinkIdentity,
)
from application.kernel import Caller, Command, execute
from application.privacy import EraseCustomer, RecordConsent
from application.registration import RegisterCustomer
from application.relationships import (
    AddRole,
    AssignOwner,
    EndOwner,
    EndRole,
    HandOverCustomers,
    SetParentAgent,
)
from domain.errors import IdentityNotHeld
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import (
    FAULTS,
    KEYED,
    Attempt,
    Fault,
    check_against_twin,
    event_count,
    pinned,
    rejection_replayed,
)
from tests.integration.support import register

# A setup makes what the command needs (in the tenant, under a fresh label) and the command.
Setup = Callable[[Tenant, str], Command]
AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _member(tenant: Tenant, label: str, **fields: Any) -> UUID:
    return register(tenant, ("member_no", f"{label}-m"), **fields).customer_id


def _register_new(tenant: Tenant, label: str) -> Command:
    return RegisterCustomer(identities=[("member_no", f"{label}-new")], name="New")


def _register_match(tenant: Tenant, label: str) -> Command:
    _member(tenant, label)
    return RegisterCustomer(identities=[("member_no", f"{label}-m"), ("jd_pin", f"{label}-jd")])


def _link(tenant: Tenant, label: str) -> Command:
    return LinkIdentities(_member(tenant, label), [("jd_pin", f"{label}-jd")])


def _unlink(tenant: Tenant, label: str) -> Command:
    cid = register(tenant, ("member_no", f"{label}-m"), ("jd_pin", f"{label}-jd")).customer_id
    return UnlinkIdentity(cid, ("jd_pin", f"{label}-jd"))


def _change_profile(tenant: Tenant, label: str) -> Command:
    cid = _member(tenant, label, email=f"{label}-old@example.com")
    return ChangeProfile(cid, {"name": "Renamed", "email": f"{label}-new@example.com"})


def _add_tags(tenant: Tenant, label: str) -> Command:
    return AddTags(_member(tenant, label), ["vip", "tea_lover"])


def _remove_tag(tenant: Tenant, label: str) -> Command:
    cid = _member(tenant, label)
    execute(tenant.app, AddTags(cid, ["vip"]), Caller("t"))
    return RemoveTag(cid, "vip")


def _add_role(tenant: Tenant, label: str) -> Command:
    return AddRole(_member(tenant, label), "agent")


def _end_role(tenant: Tenant, label: str) -> Command:
    return EndRole(_member(tenant, label, roles=["consumer", "agent"]), "agent", "left")


def _set_parent(tenant: Tenant, label: str) -> Command:
    top = register(tenant, ("member_no", f"{label}-top"), roles=["agent"]).customer_id
    parent = register(tenant, ("member_no", f"{label}-p"), roles=["agent"]).customer_id
    # The tenant's agent network exists before the command (the twin would start it).
    execute(tenant.app, SetParentAgent(parent, top), Caller("t"))
    return SetParentAgent(_member(tenant, label, roles=["agent"]), parent)


def _assign_owner(tenant: Tenant, label: str) -> Command:
    return AssignOwner(_member(tenant, label), f"{label}-staff", "new store")


def _end_owner(tenant: Tenant, label: str) -> Command:
    return EndOwner(_member(tenant, label, owner=f"{label}-staff"), f"{label}-staff", "left")


def _consent(tenant: Tenant, label: str) -> Command:
    return RecordConsent(_member(tenant, label), "marketing", "sms", True, "v1", "signup")


def _erase(tenant: Tenant, label: str) -> Command:
    return EraseCustomer(_member(tenant, label, name="Gone"), "customer request")


def _handover(tenant: Tenant, label: str) -> Command:
    for n in range(3):
        register(tenant, ("member_no", f"{label}-h{n}"), owner=f"{label}-leaver")
    return HandOverCustomers(f"{label}-leaver", f"{label}-heir")


COMMANDS: dict[str, Setup] = {
    "RegisterCustomer new": _register_new,
    "RegisterCustomer matched": _register_match,
    "LinkIdentities": _link,
    "UnlinkIdentity": _unlink,
    "ChangeProfile": _change_profile,
    "AddTags": _add_tags,
    "RemoveTag": _remove_tag,
    "AddRole": _add_role,
    "EndRole": _end_role,
    "SetParentAgent": _set_parent,
    "AssignOwner": _assign_owner,
    "EndOwner": _end_owner,
    "RecordConsent": _consent,
    "EraseCustomer": _erase,
    "HandOverCustomers": _handover,
}


@pytest.fixture
def fixed(tenant: Tenant) -> Tenant:
    return pinned(tenant, at=AT)


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without what names this run's own customers."""
    ids = {"customer_id", "customer_ids", "parent_id", "from_staff_id", "to_staff_id", "owner"}
    ids |= {"ended_owner"}
    return {k: v for k, v in body.items() if k not in ids}


@KEYED
@FAULTS
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_connection_lost_at_commit_leaves_one_effect_and_the_first_answer(
    fixed: Tenant, name: str, fault: Fault, keyed: bool
) -> None:
    def attempt() -> Attempt:
        """The command under a fresh label, and how many events have been written since."""
        cmd = COMMANDS[name](fixed, f"l-{uuid4().hex[:8]}")
        before = event_count(fixed.app)
        return cmd, lambda: event_count(fixed.app) - before

    check_against_twin(fixed, fault, keyed, attempt, _comparable)


def test_a_rejected_unlink_replays_its_rejection_after_the_identity_is_linked(
    fixed: Tenant,
) -> None:
    cid = _member(fixed, "rejected")
    unlink = UnlinkIdentity(cid, ("jd_pin", "rejected-jd"))
    link = LinkIdentities(cid, [("jd_pin", "rejected-jd")])

    rejection = rejection_replayed(
        fixed, unlink, IdentityNotHeld, then=lambda: execute(fixed.app, link, Caller("t"))
    )

    assert rejection["code"] == "identity_not_held"


@pytest.mark.parametrize("name", ["LinkIdentities", "AddTags", "AddRole", "RecordConsent"])
def test_a_repeated_command_without_a_key_changes_nothing_and_is_not_refused(
    fixed: Tenant, name: str
) -> None:
    cmd = COMMANDS[name](fixed, f"again-{uuid4().hex[:8]}")
    first = execute(fixed.app, cmd, Caller("t"))
    before = event_count(fixed.app)

    again = execute(fixed.app, cmd, Caller("t"))

    assert event_count(fixed.app) == before
    # At the customer's last event (a no-op saves nothing): at or before the first answer's.
    assert 0 < again.position <= first.position
    assert again.body["customer_id"] == first.body["customer_id"]
