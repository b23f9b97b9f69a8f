"""Every stored event class round-trips through the msgspec mapper; old versions are upcast."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import msgspec
import pytest
from cryptography.exceptions import InvalidTag
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

import domain
from domain.agent_network import AgentNetwork
from domain.benefits import BenefitAccount
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.level_membership import LevelMembership
from domain.loyalty import Assessment, BenefitRules, LevelGroupRules, LevelRules, Window
from domain.merge import (
    AssetMove,
    Merge,
    absorb,
    give_back,
    merge_away,
    plan_merge,
    plan_undo,
    restore,
)
from domain.order import Order
from domain.points_account import PointsAccount
from domain.program import DEFAULT_RULES, Program
from domain.staff import StaffActivity
from domain.values import Identity
from infrastructure.crypto import SealingMapper
from infrastructure.eventstore import MsgspecMapper

AT = datetime(2026, 11, 23, 10, 10, 40, 888065, tzinfo=UTC)


def _registered(**overrides: Any) -> Customer.Registered:
    fields: dict[str, Any] = {
        "customer_id": uuid4(),
        "identities": [Identity("wechat_unionid", "o6_bmjrPTlm6"), Identity("phone", "138")],
        "name": "李雷",
        "phone": "13800138000",
        "email": "li.lei@example.com",
        "birthday": date(1990, 5, 1),
        "attributes": {"city": "上海", "vip": True, "score": 1.5, "tags": ["a", "b"], "n": None},
        "roles": ["consumer", "agent"],
        "owner": "guide-7",
        "referrer_id": uuid4(),
        "actor": "cd4ccfeeafcc0e88",
        "at": AT,
    }
    fields.update(overrides)
    (event,) = Customer.register(**fields).collect_events()
    assert isinstance(event, Customer.Registered)
    return event


def _identities_linked() -> Customer.IdentitiesLinked:
    customer = Customer.register(
        customer_id=uuid4(),
        identities=[Identity("phone", "1")],
        name=None,
        phone=None,
        email=None,
        birthday=None,
        attributes={},
        roles=[],
        owner=None,
        referrer_id=None,
        actor="a",
        at=AT,
    )
    customer.link_identities(
        [Identity("email", "a@example.com"), Identity("jd_pin", "jd_1")],
        actor="b",
        at=AT + timedelta(seconds=1),
    )
    _, event = customer.collect_events()
    assert isinstance(event, Customer.IdentitiesLinked)
    return event


def _claimed() -> IdentityClaim.Claimed:
    identity = Identity("phone", "+8613800138000")
    claim = IdentityClaim.claim(identity, uuid4(), claim_id=uuid4(), at=AT)
    (event,) = claim.collect_events()
    assert isinstance(event, IdentityClaim.Claimed)
    return event


def _history() -> list[Any]:
    """Every other stored event class, made by the aggregates' own commands."""
    t = iter(AT + timedelta(seconds=n) for n in range(1, 100))
    survivor = Customer.register(
        customer_id=uuid4(),
        identities=[Identity("pos_member_no", "M-1"), Identity("jd_pin", "jd")],
        name="韩梅梅", phone=None, email=None, birthday=None, attributes={"city": "北京"},
        roles=["consumer", "agent"], owner="guide-1", referrer_id=None, actor="a", at=AT,
    )  # fmt: skip
    source = _customer(Identity("tmall_ouid", "AAH3kx9"), name="Han", birthday=date(1991, 2, 3))
    survivor.unlink_identities([Identity("jd_pin", "jd")], actor="a", at=next(t))
    survivor.change_profile(
        {"name": "Han Meimei", "attributes.vip": True, "attributes.city": None},
        channel="pos",
        actor="a",
        at=next(t),
    )
    survivor.add_role("guide", actor="a", at=next(t))
    survivor.end_role("guide", reason="left", actor="a", at=next(t))
    survivor.set_parent_agent(uuid4(), actor="a", at=next(t))
    survivor.assign_owner("guide-2", reason="promotion", actor="a", at=next(t))
    survivor.end_owner(by="guide-2", reason=None, actor="a", at=next(t))
    consent = {"purpose": "marketing", "channel": "sms", "source": "pos", "actor": "a"}
    survivor.record_consent(granted=True, policy_version="v3", at=next(t), **consent)
    survivor.record_consent(granted=False, policy_version=None, at=next(t), **consent)
    survivor.suggest_match(source.id, "phone", actor="a", at=next(t))
    survivor.add_tags(["vip", "wholesale"], actor="a", at=next(t), channel="pos")
    survivor.remove_tag("wholesale", actor="a", at=next(t))
    source.add_tags(["vip", "new:2026"], actor="a", at=next(t))
    merge_id = uuid4()
    plan = plan_merge(survivor, source, DEFAULT_RULES)
    absorb(survivor, source.id, merge_id, plan, actor="a", at=next(t))
    merge_away(source, survivor.id, merge_id, actor="a", at=next(t))
    undo = plan_undo(survivor, merge_id)
    give_back(survivor, merge_id, undo, actor="a", at=next(t))
    restore(source, merge_id, undo.identities, actor="a", at=next(t))
    survivor.erase(reason="request", actor="a", at=next(t))

    claim = IdentityClaim.claim(Identity("jd_pin", "x"), survivor.id, claim_id=uuid4(), at=AT)
    claim.add_holder(source.id, limit=2, at=next(t))
    claim.transfer(source.id, uuid4(), merge_id=merge_id, at=next(t))
    claim.remove_holder(survivor.id, at=next(t))
    merge = Merge.record(
        merge_id=merge_id,
        survivor_id=survivor.id,
        source_id=source.id,
        reason="identity:tmall_ouid",
        moves=[AssetMove("identity_claim", claim.id)],
        actor="a",
        at=next(t),
    )
    merge.undo(actor="a", at=next(t))
    program = Program.define({"currency": "CNY", "timezone": "UTC"}, actor="a", at=AT)
    program.replace({"currency": "USD", "timezone": "UTC"}, actor="a", at=next(t))
    staff = StaffActivity.start("guide-2", at=AT)
    staff.record_removals(1, threshold=1, window_minutes=60, at=next(t))
    return [
        e
        for aggregate in (survivor, source, claim, merge, program, staff)
        for e in aggregate.collect_events()
    ]


def _customer(identity: Identity, **fields: Any) -> Customer:
    values: dict[str, Any] = {
        "name": None, "phone": None, "email": None, "birthday": None, "attributes": {},
        "roles": ["consumer"], "owner": None, "referrer_id": None, **fields,
    }  # fmt: skip
    return Customer.register(customer_id=uuid4(), identities=[identity], actor="a", at=AT, **values)


def _sample_of(cls: type[Any]) -> Callable[[], Any]:
    def make() -> Any:
        return next(e for e in _history() if type(e) is cls)

    return make


SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP = LevelGroupRules(
    "consumer", "会员", "consumer", "spend", Window("calendar", period="year"),
    Assessment("calendar", "year", warning_days=30),
    (LevelRules("normal", "普通", 0), LevelRules("gold", "黄金", 100_000, ("lounge",)),
     LevelRules("platinum", "白金", 300_000)),
)  # fmt: skip


def _loyalty_history() -> list[Any]:
    """Every stored event of the loyalty aggregates (orders, points, levels, benefits)."""
    customer_id = uuid4()
    placed_at = datetime(2025, 11, 20, 14, 5, tzinfo=SHANGHAI)
    at = placed_at.astimezone(UTC) + timedelta(seconds=2)  # recorded by the server clock
    t = iter(at + timedelta(days=n) for n in range(1, 100))
    order = Order.place(
        channel="pos", order_id="A1001", customer_id=customer_id, placed_at=placed_at,
        placed_on=date(2025, 11, 20), amount=128_00,
        portions=[
            {"key": "L1", "amount": 99_00, "sku": "SKU-1", "category": "tea",
             "earned": {"points": 99}},
            {"key": "_rest", "amount": 29_00, "earned": {"points": 29}},
        ],
        store_id="sh-001", staff_id="guide-7", agent_id=None, program_version=3,
        fingerprint="5e1f0c2a", at=at,
        outcome={"order_id": "A1001", "customer_id": str(customer_id),
                 "points": [{"point_type": "points", "earned": 128}], "levels": [],
                 "commissions": []},
    )  # fmt: skip
    plan = order.plan_refund("R1", amount=None, lines={"L1": 50_00})
    order.refund(
        plan,
        fingerprint="9a0b",
        outcome={"refund_id": "R1", "amount": 50_00},
        program_version=3,
        at=at,
    )
    order.reassign(uuid4(), reason=f"undo:{uuid4()}", at=at)

    points = PointsAccount.open(customer_id, "points", at=at)
    expiring = datetime(2025, 12, 31, 16, tzinfo=UTC)
    points.earn(
        "order:pos:A1001", 128, earned_at=placed_at, at=at, expires_at=expiring,
        active_at=placed_at, source={"kind": "order", "channel": "pos", "order_id": "A1001"},
        program_version=3,
    )  # fmt: skip
    points.earn(
        "order:jd:77", 500, earned_at=placed_at, at=at, expires_at=None, active_at=placed_at,
        source={"kind": "order", "channel": "jd", "order_id": "77"}, program_version=3,
    )  # fmt: skip
    points.redeem("coupon-9", 20, at=next(t), reason="coupon", actor="guide-7")
    points.hold("hold-1", 30, at=next(t), actor="mall")
    points.capture("hold-1", at=next(t), actor="mall")
    points.hold("hold-2", 10, at=next(t), actor="mall")
    points.release("hold-2", at=next(t), actor="mall")
    held_at = next(t)
    points.hold("hold-3", 5, at=held_at, actor="mall", expires_at=held_at + timedelta(minutes=30))
    # A day later: hold-3 timed out (HoldExpired) before the reversal is recorded.
    points.reverse_redemption(
        "coupon-9", 5, reversal_id="rr-1", at=next(t), reason="returned", actor="guide-7"
    )
    points.reverse(
        "order:pos:A1001", 50, reversal_id="refund:R1", policy="negative",
        burn_order="soonest_expiry", at=next(t),
    )  # fmt: skip
    points.adjust("adj-1", 40, reason="goodwill", actor="ops", at=next(t), expires_at=None)
    points.adjust("adj-2", -15, reason="correction", actor="ops", at=next(t), expires_at=None)
    merged_away = PointsAccount.open(uuid4(), "points", at=at)  # a merge moves its lots here
    merged_away.earn(
        "order:tmall:T-88", 60, earned_at=placed_at, at=at, expires_at=expiring,
        active_at=placed_at, source={"kind": "order", "channel": "tmall", "order_id": "T-88"},
        program_version=3,
    )  # fmt: skip
    merged_away.transfer_out("merge:4f1c", points, at=next(t))
    points.expire(expiring, at=expiring + timedelta(hours=1))

    level = LevelMembership.open(customer_id, GROUP, at=at, program_version=3)
    level.qualify(
        GROUP, SHANGHAI, entry_id="order:jd:77", value=128_000, effective_at=placed_at,
        at=at, program_version=3,
    )  # fmt: skip
    level.set_override(
        GROUP, override_id="vip-1", level="platinum", until=at + timedelta(days=20),
        reason="store opening", actor="ops", at=next(t), program_version=3,
    )  # fmt: skip
    level.end_override(override_id="vip-1", actor="ops", at=next(t))
    new_year = datetime(2026, 1, 1, tzinfo=SHANGHAI)
    level.assess(GROUP, SHANGHAI, as_of=new_year, at=new_year, program_version=3)  # Assessed
    level.assess(  # DowngradeWarned, then Downgraded at the next new year
        GROUP, SHANGHAI, as_of=datetime(2026, 12, 15, tzinfo=SHANGHAI),
        at=datetime(2026, 12, 15, tzinfo=SHANGHAI), program_version=3,
    )  # fmt: skip
    level.assess(GROUP, SHANGHAI, as_of=new_year.replace(year=2027),
                 at=new_year.replace(year=2027), program_version=3)  # fmt: skip

    benefits = BenefitAccount.open(customer_id, at=at)
    benefits.grant(
        "g-1", "parking", valid_from=at, until=at + timedelta(days=30), reason="apology",
        actor="ops", at=at,
    )  # fmt: skip
    benefits.redeem(
        "r-1", BenefitRules("lounge", "贵宾室", quota_count=2, quota_period="month"),
        level_sources=["level:consumer:gold"], tz=SHANGHAI, program_version=3,
        note="T2", actor="guide-7", at=next(t),
    )  # fmt: skip
    benefits.revoke("g-1", reason="issued by mistake", actor="ops", at=next(t))
    return [
        e
        for aggregate in (order, points, merged_away, level, benefits)
        for e in aggregate.collect_events()
    ]


def _loyalty_sample_of(cls: type[Any]) -> Callable[[], Any]:
    def make() -> Any:
        return next(e for e in _loyalty_history() if type(e) is cls)

    return make


# One example per stored event class. A new event class fails the coverage test until added here.
SAMPLES: dict[type[Any], Callable[[], Any]] = {
    Customer.Registered: _registered,
    Customer.IdentitiesLinked: _identities_linked,
    IdentityClaim.Claimed: _claimed,
    **{
        cls: _sample_of(cls)
        for cls in (
            Customer.IdentitiesUnlinked,
            Customer.ProfileChanged,
            Customer.RoleAdded,
            Customer.RoleEnded,
            Customer.ParentAgentSet,
            Customer.OwnerAssigned,
            Customer.OwnerEnded,
            Customer.ConsentGiven,
            Customer.ConsentWithdrawn,
            Customer.MatchSuggested,
            Customer.TagsAdded,
            Customer.TagRemoved,
            Customer.Absorbed,
            Customer.AbsorptionUndone,
            Customer.MergedInto,
            Customer.MergeUndone,
            Customer.Erased,
            IdentityClaim.HolderAdded,
            IdentityClaim.HolderRemoved,
            IdentityClaim.Transferred,
            Merge.Merged,
            Merge.Undone,
            Program.Defined,
            Program.Replaced,
            StaffActivity.Started,
            StaffActivity.OwnershipsEnded,
            StaffActivity.AlertRaised,
        )
    },
    **{
        cls: _loyalty_sample_of(cls)
        for cls in (
            Order.Placed,
            Order.Refunded,
            Order.Reassigned,
            PointsAccount.Opened,
            PointsAccount.Earned,
            PointsAccount.Redeemed,
            PointsAccount.Held,
            PointsAccount.HoldCaptured,
            PointsAccount.HoldReleased,
            PointsAccount.HoldExpired,
            PointsAccount.RedemptionReversed,
            PointsAccount.Expired,
            PointsAccount.Reversed,
            PointsAccount.Adjusted,
            PointsAccount.TransferredOut,
            PointsAccount.TransferredIn,
            LevelMembership.Opened,
            LevelMembership.Qualified,
            LevelMembership.Upgraded,
            LevelMembership.Downgraded,
            LevelMembership.Assessed,
            LevelMembership.OverrideSet,
            LevelMembership.OverrideEnded,
            LevelMembership.DowngradeWarned,
            BenefitAccount.Opened,
            BenefitAccount.Granted,
            BenefitAccount.GrantRevoked,
            BenefitAccount.Redeemed,
        )
    },
    **{
        cls: (lambda c=cls: _agent_network_event(c))
        for cls in (AgentNetwork.Started, AgentNetwork.Reparented)
    },
}


def _agent_network_event(cls: type[Any]) -> Any:
    network = AgentNetwork.start(at=AT)
    network.reparent(uuid4(), uuid4(), at=AT + timedelta(seconds=1))
    return next(e for e in network.collect_events() if type(e) is cls)


def _domain_event_classes() -> set[type[Any]]:
    """Every event class nested in an aggregate of a domain module."""
    found: set[type[Any]] = set()
    for info in pkgutil.iter_modules(domain.__path__, "domain."):
        module = importlib.import_module(info.name)
        for _, aggregate in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(aggregate, Aggregate) and aggregate.__module__ == module.__name__):
                continue
            for value in vars(aggregate).values():
                if inspect.isclass(value) and issubclass(value, CanMutateAggregate):
                    found.add(value)
    return found


def _stored_event_classes() -> set[type[Any]]:
    """Leaf event classes: the ones that are recorded (bases like ``Created`` never are)."""
    classes = _domain_event_classes()
    return {c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)}


def test_every_stored_event_class_has_a_round_trip_sample() -> None:
    assert _stored_event_classes() == set(SAMPLES)


def test_every_domain_event_class_has_its_own_explicit_topic() -> None:
    classes = _domain_event_classes()
    topics = [getattr(c, "TOPIC", None) for c in classes]

    assert all(isinstance(t, str) and t.startswith("membercore.") for t in topics)
    assert len(set(topics)) == len(topics)
    for cls in classes:
        assert get_topic(cls) == cls.TOPIC


def test_a_fresh_process_importing_the_projections_resolves_every_stored_topic() -> None:
    # Topics must be registered at import time: a process that only imports the projections
    # (and so the domain) must resolve what another process stored, without calling get_topic.
    topics = sorted(cls.TOPIC for cls in SAMPLES)
    script = (
        "import sys\n"
        "import projections.registry\n"
        "from eventsourcing.utils import resolve_topic\n"
        "for topic in sys.argv[1:]:\n"
        "    cls = resolve_topic(topic)\n"
        "    assert cls.TOPIC == topic, (topic, cls)\n"
        "print('ok', len(sys.argv) - 1)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script, *topics],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", str(len(topics))]


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.TOPIC)
def test_event_round_trips_through_the_mapper_under_its_explicit_topic(cls: type[Any]) -> None:
    mapper = MsgspecMapper()
    event = SAMPLES[cls]()

    stored = mapper.to_stored_event(event)
    decoded = mapper.to_domain_event(stored)

    assert stored.topic == cls.TOPIC
    assert stored.originator_id == event.originator_id
    assert stored.originator_version == event.originator_version
    assert type(decoded) is cls
    assert decoded == event


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.TOPIC)
def test_a_fresh_mapper_decodes_what_another_mapper_stored(cls: type[Any]) -> None:
    event = SAMPLES[cls]()
    stored = MsgspecMapper().to_stored_event(event)
    # What a projector process would read: the row's columns, with no in-memory state shared.
    row = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, bytes(stored.state)
    )

    assert MsgspecMapper().to_domain_event(row) == event


def test_stored_state_of_a_version_1_event_has_no_class_version() -> None:
    state = msgspec.json.decode(MsgspecMapper().to_stored_event(_registered()).state)

    assert "class_version" not in state
    assert state["originator_topic"] == "membercore.Customer"
    assert state["timestamp"] == "2026-11-23T10:10:40.888065Z"
    assert state["identities"][0] == {"type": "wechat_unionid", "value": "o6_bmjrPTlm6"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
optional_text = st.none() | st.text(max_size=20)


@given(
    name=optional_text,
    email=optional_text,
    birthday=st.none() | st.dates(),
    attributes=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    value=st.text(min_size=1, max_size=30),
)
def test_registered_round_trips_for_any_field_values(
    name: str | None,
    email: str | None,
    birthday: date | None,
    attributes: dict[str, Any],
    at: datetime,
    value: str,
) -> None:
    mapper = MsgspecMapper()
    event = _registered(
        name=name,
        email=email,
        birthday=birthday,
        attributes=attributes,
        at=at,
        identities=[Identity("phone", value)],
        referrer_id=None,
    )

    assert mapper.to_domain_event(mapper.to_stored_event(event)) == event


def test_undecodable_state_raises_a_mapper_deserialisation_error() -> None:
    event = _claimed()
    stored = MsgspecMapper().to_stored_event(event)
    broken = StoredEvent(stored.originator_id, 1, stored.topic, b'{"originator_id": 5}')

    with pytest.raises(MapperDeserialisationError):
        MsgspecMapper().to_domain_event(broken)


# -- upcasting: a test-only aggregate whose event is at version 2 -----------------------------


class Gadget(Aggregate):
    TOPIC = "tests.unit.test_mapper.Gadget"

    class Created(Aggregate.Created):
        TOPIC = "tests.unit.test_mapper.Gadget.Created"

    class Event(Aggregate.Event):
        TOPIC = "tests.unit.test_mapper.Gadget.Event"

    class Renamed(Event):
        """v1: ``name``. v2 adds ``reason`` (default ``"unknown"``) and stores names trimmed."""

        TOPIC = "tests.unit.test_mapper.Gadget.Renamed"
        class_version = 2
        name: str
        reason: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = "unknown"
            state["name"] = state["name"].strip()

        def apply(self, aggregate: Gadget) -> None:
            aggregate.name = self.name

    def __init__(self) -> None:
        self.name = ""

    def rename(self, name: str, reason: str) -> None:
        self.trigger_event(self.Renamed, name=name, reason=reason)


def _renamed(name: str = "blue", reason: str = "rebrand") -> Gadget.Renamed:
    gadget = Gadget()
    gadget.rename(name, reason)
    _, event = gadget.collect_events()
    assert isinstance(event, Gadget.Renamed)
    return event


def test_a_version_2_event_is_stored_with_its_class_version_and_round_trips() -> None:
    mapper = MsgspecMapper()
    event = _renamed()

    stored = mapper.to_stored_event(event)

    assert stored.topic == "tests.unit.test_mapper.Gadget.Renamed"
    assert msgspec.json.decode(stored.state)["class_version"] == 2
    assert mapper.to_domain_event(stored) == event


def test_a_stored_version_1_event_is_upcast_to_the_current_class() -> None:
    event = _renamed()
    v1_state = msgspec.json.encode(
        {
            "originator_id": str(event.originator_id),
            "originator_version": 2,
            "timestamp": "2020-02-03T04:05:06.000007Z",
            "name": "  old name ",
        }
    )
    stored = StoredEvent(event.originator_id, 2, "tests.unit.test_mapper.Gadget.Renamed", v1_state)

    decoded = MsgspecMapper().to_domain_event(stored)

    assert type(decoded) is Gadget.Renamed
    assert decoded.originator_id == event.originator_id
    assert decoded.originator_version == 2
    assert decoded.timestamp == datetime(2020, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert decoded.name == "old name"
    assert decoded.reason == "unknown"


def test_an_upcast_event_replays_into_the_aggregate() -> None:
    gadget = Gadget()
    created, renamed = (*gadget.collect_events(), _renamed())
    mapper = MsgspecMapper()
    v1 = msgspec.json.encode(
        {
            "originator_id": str(created.originator_id),
            "originator_version": 2,
            "timestamp": "2020-02-03T04:05:06Z",
            "name": " red ",
        }
    )
    stored = [
        mapper.to_stored_event(created),
        StoredEvent(created.originator_id, 2, renamed.TOPIC, v1),
    ]

    aggregate = None
    for s in stored:
        aggregate = mapper.to_domain_event(s).mutate(aggregate)

    assert isinstance(aggregate, Gadget)
    assert aggregate.name == "red"
    assert aggregate.version == 2


# -- sealing: personal fields encrypted under the stream's key (crypto-shredding) -------------


class MemoryKeys:
    """The part of KeyRing the sealing mapper uses, held in memory (``None``: destroyed)."""

    def __init__(self) -> None:
        self.keys: dict[Any, bytes | None] = {}

    def key(self, customer_id: Any, *, create: bool = False) -> bytes | None:
        if create and customer_id not in self.keys:
            self.keys[customer_id] = os.urandom(32)
        return self.keys.get(customer_id)

    def load(self, customer_ids: Any) -> dict[Any, bytes | None]:
        return {c: self.keys[c] for c in customer_ids if c in self.keys}

    def forget(self, customer_id: Any) -> None:
        self.keys[customer_id] = None


def _sealing() -> tuple[SealingMapper, MemoryKeys]:
    keys = MemoryKeys()
    return SealingMapper(keys), keys  # type: ignore[arg-type]


PERSONAL_SAMPLES = [c for c in SAMPLES if getattr(c, "PERSONAL", ())]


def test_every_personal_field_named_is_a_field_of_its_event() -> None:
    for cls in PERSONAL_SAMPLES:
        assert set(cls.PERSONAL) <= set(msgspec.to_builtins(SAMPLES[cls]())), cls


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.TOPIC)
def test_event_round_trips_through_the_sealing_mapper(cls: type[Any]) -> None:
    mapper, _ = _sealing()
    event = SAMPLES[cls]()

    stored = mapper.to_stored_event(event)

    assert stored.topic == cls.TOPIC
    assert mapper.to_domain_event(stored) == event


@pytest.mark.parametrize("cls", PERSONAL_SAMPLES, ids=lambda c: c.TOPIC)
def test_sealed_state_holds_no_personal_field_in_the_clear(cls: type[Any]) -> None:
    mapper, _ = _sealing()
    event = SAMPLES[cls]()

    state = msgspec.json.decode(mapper.to_stored_event(event).state)

    assert not set(cls.PERSONAL) & set(state)
    assert "sealed" in state


@pytest.mark.parametrize("cls", PERSONAL_SAMPLES, ids=lambda c: c.TOPIC)
def test_once_the_key_is_destroyed_personal_fields_read_empty_and_the_rest_is_kept(
    cls: type[Any],
) -> None:
    mapper, keys = _sealing()
    event = SAMPLES[cls]()
    stored = mapper.to_stored_event(event)

    keys.forget(event.originator_id)
    for owner_field in getattr(cls, "SEALED_WITH", {}).values():  # a merge's source copies
        if getattr(event, owner_field) is not None:
            keys.forget(getattr(event, owner_field))
    decoded = mapper.to_domain_event(stored)

    plain, after = msgspec.to_builtins(event), msgspec.to_builtins(decoded)
    for name in plain:
        if name in cls.PERSONAL:
            assert not after[name], name
        else:
            assert after[name] == plain[name], name


def test_a_sealed_field_cannot_be_replayed_into_another_event() -> None:
    mapper, _ = _sealing()
    first, second = _registered(), _registered()
    keys_of_first = mapper.keys.key(first.originator_id, create=True)
    mapper.keys.keys[second.originator_id] = keys_of_first  # type: ignore[attr-defined]
    a = msgspec.json.decode(mapper.to_stored_event(first).state)
    b_stored = mapper.to_stored_event(second)
    b = msgspec.json.decode(b_stored.state)
    b["sealed"] = a["sealed"]  # the same key, but bound to another stream

    with pytest.raises(InvalidTag):  # AES-GCM binds the ciphertext to (stream, version)
        mapper.to_domain_event(
            StoredEvent(b_stored.originator_id, 1, b_stored.topic, msgspec.json.encode(b))
        )
