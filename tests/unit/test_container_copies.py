"""The cheap copy the cache hands out is independent of the cached aggregate."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from domain.customer import Customer
from domain.level_membership import LevelMembership
from domain.loyalty import Assessment, LevelGroupRules, LevelRules, Window
from domain.points_account import PointsAccount
from domain.values import Identity

AT = datetime(2026, 3, 1, tzinfo=UTC)
GROUP = LevelGroupRules(
    "consumer",
    "consumer",
    "consumer",
    "spend",
    Window("lifetime"),
    Assessment("calendar"),
    (LevelRules("normal", "normal", 0), LevelRules("gold", "gold", 100)),
)


def earned(account: PointsAccount, lot_id: str, points: int) -> None:
    account.earn(
        lot_id,
        points,
        earned_at=AT,
        at=AT,
        expires_at=AT + timedelta(days=30),
        active_at=AT,
        source={"kind": "order", "channel": "c", "order_id": lot_id},
        program_version=1,
    )


def test_a_copied_points_account_changes_without_changing_the_original() -> None:
    original = PointsAccount.open(uuid4(), "points", at=AT)
    earned(original, "a", 10)
    original.collect_events()
    copied = copy.deepcopy(original)
    earned(copied, "b", 5)
    copied.redeem("r1", 12, at=AT + timedelta(hours=1))
    assert original.available(AT + timedelta(hours=1)) == 10
    assert set(original.lots) == {"a"}
    assert original.version == 2
    assert copied.available(AT + timedelta(hours=1)) == 3
    assert original.pending_events == []


def test_a_copied_membership_changes_without_changing_the_original() -> None:
    original = LevelMembership.open(uuid4(), GROUP, at=AT, program_version=1)
    original.collect_events()
    copied = copy.deepcopy(original)
    copied.qualify(GROUP, UTC, entry_id="e1", value=150, effective_at=AT, at=AT, program_version=1)
    assert copied.level == "gold"
    assert original.level == "normal"
    assert original.entries == []
    assert original.entry_ids == set()
    assert len(original.timeline) == 1


def test_a_copied_customer_changes_without_changing_the_original() -> None:
    original = Customer.register(
        customer_id=uuid4(),
        identities=(Identity("wechat_unionid", "u1"),),
        name="Ann",
        phone=None,
        email=None,
        birthday=None,
        attributes={"city": "Shanghai"},
        roles=("consumer",),
        owner=None,
        referrer_id=None,
        actor="t",
        at=AT,
    )
    original.collect_events()
    copied = copy.deepcopy(original)
    copied.change_profile(
        {"name": "Bo", "attributes.city": "Beijing"}, channel=None, actor="t", at=AT
    )
    copied.add_role("agent", actor="t", at=AT)
    assert (original.name, original.attributes) == ("Ann", {"city": "Shanghai"})
    assert set(original.roles) == {"consumer"}
    assert (copied.name, copied.attributes) == ("Bo", {"city": "Beijing"})
