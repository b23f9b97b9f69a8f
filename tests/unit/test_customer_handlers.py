"""The customer commands' handlers on the kernel's in-memory ports (no PostgreSQL): what each
decides, saves and answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.customers import AddTags, ChangeProfile, LinkIdentities, UnlinkIdentity
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.privacy import EraseCustomer
from application.registration import RegisterCustomer
from application.relationships import HandOverCustomers, SetParentAgent
from domain.customer import Customer
from domain.errors import AgentCycle, IdentityHeldByOther, InvalidInput
from domain.identity_claim import IdentityClaim
from domain.values import Identity
from infrastructure.memory import InMemoryIdempotencyStore, InMemoryMembercore

AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
CALLER = Caller("t")


@pytest.fixture
def app() -> InMemoryMembercore:
    return InMemoryMembercore(now=AT)


def run(app: InMemoryMembercore, command: Command, caller: Caller = CALLER) -> Answer:
    return execute(app, command, caller)


def register(app: InMemoryMembercore, *identities: tuple[str, str], **fields: Any) -> UUID:
    answer = run(app, RegisterCustomer(identities=list(identities), **fields))
    return UUID(answer.body["customer_id"])


def head(app: InMemoryMembercore) -> int:
    return int(app.recorder.max_notification_id() or 0)


def claim(app: InMemoryMembercore, identity: Identity) -> IdentityClaim | None:
    found = app.get_many([app.claim_id(identity)])
    return found.get(app.claim_id(identity))


def test_registering_new_identities_creates_the_customer_and_a_claim_for_each(
    app: InMemoryMembercore,
) -> None:
    answer = run(app, RegisterCustomer([("member_no", "m1"), ("jd_pin", "j1")], name="Li"))

    assert answer.outcome is Outcome.CREATED
    assert answer.body["matched"] is False
    customer_id = UUID(answer.body["customer_id"])
    assert answer.position == head(app) == 3
    for identity in (Identity("member_no", "m1"), Identity("jd_pin", "j1")):
        found = claim(app, identity)
        assert found is not None
        assert found.holders == (customer_id,)


def test_registering_held_identities_again_matches_and_writes_nothing(
    app: InMemoryMembercore,
) -> None:
    first = register(app, ("member_no", "m1"))
    before = head(app)

    again = run(app, RegisterCustomer([("member_no", "m1")]))

    assert (again.outcome, again.body) == (
        Outcome.DONE,
        {"customer_id": str(first), "matched": True},
    )
    assert head(app) == before


def test_a_keyed_registration_is_replayed_with_its_first_answer(app: InMemoryMembercore) -> None:
    caller = Caller("t", "tenant", InMemoryIdempotencyStore())
    command = RegisterCustomer([("member_no", "m1")])
    first = execute(app, command, caller, client_id="reg-1")

    again = execute(app, command, caller, client_id="reg-1")

    assert first.outcome is Outcome.CREATED
    assert (again.outcome, again.body, again.position) == (
        Outcome.REPLAYED,
        first.body,
        first.position,
    )


def test_registration_problems_are_all_reported_before_anything_is_read(
    app: InMemoryMembercore,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        run(app, RegisterCustomer([("phone", "not a phone")], roles=["no such role"]))

    assert [p.field for p in refused.value.problems] == ["identities[0].value", "roles[0]"]
    assert head(app) == 0


def test_linking_an_identity_another_customer_holds_is_refused_and_writes_nothing(
    app: InMemoryMembercore,
) -> None:
    holder = register(app, ("member_no", "m1"), ("jd_pin", "shared"))
    other = register(app, ("member_no", "m2"))
    before = head(app)

    with pytest.raises(IdentityHeldByOther) as refused:
        run(app, LinkIdentities(other, [("jd_pin", "shared")]))

    assert refused.value.customer_ids == (holder,)
    assert head(app) == before


def test_a_repeated_link_and_tag_add_answer_without_recording_anything(
    app: InMemoryMembercore,
) -> None:
    cid = register(app, ("member_no", "m1"))
    run(app, LinkIdentities(cid, [("jd_pin", "j1")]))
    run(app, AddTags(cid, ["vip"]))
    before = head(app)

    linked = run(app, LinkIdentities(cid, [("jd_pin", "j1")]))
    tagged = run(app, AddTags(cid, ["VIP"]))

    assert (linked.outcome, linked.body["linked"]) == (Outcome.DONE, [])
    assert (tagged.body["added"], tagged.body["tags"]) == ([], ["vip"])
    assert head(app) == before


def test_changing_the_email_moves_its_identity_claim(app: InMemoryMembercore) -> None:
    cid = register(app, ("member_no", "m1"), email="old@example.com")

    answer = run(app, ChangeProfile(cid, {"email": "New@Example.com"}))

    assert answer.body["changed"] == ["email"]
    customer = app.repository.get(cid)
    assert Identity("email", "new@example.com") in customer.identities
    assert Identity("email", "old@example.com") not in customer.identities
    old, new = (
        claim(app, Identity("email", "old@example.com")),
        claim(app, Identity("email", "new@example.com")),
    )
    assert old is not None
    assert old.holders == ()
    assert new is not None
    assert new.holders == (cid,)


def test_an_unlink_releases_the_claim_so_another_customer_may_take_it(
    app: InMemoryMembercore,
) -> None:
    first = register(app, ("member_no", "m1"), ("jd_pin", "j1"))
    run(app, UnlinkIdentity(first, ("jd_pin", "j1")))

    second = register(app, ("jd_pin", "j1"))

    assert second != first


def test_erasure_releases_identities_and_tells_the_app_after_the_save(
    app: InMemoryMembercore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = register(app, ("member_no", "m1"), name="Gone")
    told: list[tuple[UUID, int]] = []
    monkeypatch.setattr(app, "erased", lambda customer_id: told.append((customer_id, head(app))))

    answer = run(app, EraseCustomer(cid, "request"))

    assert answer.body == {"customer_id": str(cid), "erased": True}
    assert told == [(cid, answer.position)]
    customer = app.repository.get(cid)
    assert isinstance(customer, Customer)
    assert (customer.erased, customer.name, customer.identities) == (True, None, ())
    assert register(app, ("member_no", "m1")) != cid


def test_an_agent_cannot_be_placed_under_its_own_downline(app: InMemoryMembercore) -> None:
    top = register(app, ("member_no", "top"), roles=["agent"])
    below = register(app, ("member_no", "below"), roles=["agent"])
    run(app, SetParentAgent(below, top))

    with pytest.raises(AgentCycle):
        run(app, SetParentAgent(top, below))


class Owners:
    def __init__(self, owned: list[UUID]) -> None:
        self.owned = owned

    def owned_by(self, staff_id: str) -> list[UUID]:
        return self.owned


def test_a_handover_moves_the_customers_still_owned_and_reports_the_rest(
    app: InMemoryMembercore,
) -> None:
    kept = register(app, ("member_no", "a"), owner="leaver")
    moved_away = register(app, ("member_no", "b"), owner="someone else")
    missing = uuid4()
    app.owners = Owners([kept, moved_away, missing])

    answer = run(app, HandOverCustomers("leaver", "heir"))

    assert answer.body == {
        "from_staff_id": "leaver",
        "to_staff_id": "heir",
        "moved": 1,
        "customer_ids": [str(kept)],
        "skipped": [str(moved_away), str(missing)],
    }
    assert app.repository.get(kept).owner == "heir"


def test_a_handover_to_the_same_staff_member_is_refused_before_anything_runs() -> None:
    with pytest.raises(InvalidInput):
        HandOverCustomers("leaver", " leaver ")
