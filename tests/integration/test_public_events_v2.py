"""``Merge.Undone`` and ``StaffActivity.AlertRaised`` are at class version 2 (survivor and source;
staff id). Version 1 events stored before still load, upcast with the new fields as None, and the
public payloads carry the new keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
from eventsourcing.persistence import StoredEvent

from application.public_events import BY_TOPIC
from domain.merge import AssetMove, Merge
from domain.staff import StaffActivity, staff_activity_id
from infrastructure.tenancy import Tenant
from tests.integration.merge_support import merged, undo
from tests.integration.support import register

AT = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def as_v1(tenant: Tenant, event: Any, *dropped: str) -> StoredEvent:
    """``event`` stored as version 1 was: without ``class_version`` and the v2 fields."""
    stored = tenant.app.mapper.to_stored_event(event)
    state = msgspec.json.decode(stored.state)
    assert state.pop("class_version") == 2
    for name in dropped:
        del state[name]
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=msgspec.json.encode(state),
    )


def feed_payload(tenant: Tenant, stream_id: UUID, version: int) -> dict[str, Any]:
    (stored,) = [
        e for e in tenant.app.recorder.select_events(stream_id) if e.originator_version == version
    ]
    event = tenant.app.mapper.to_domain_event(stored)
    return BY_TOPIC[stored.topic].to_data(event)


def test_a_version_1_merge_undone_event_stored_before_still_loads_with_no_survivor_or_source(
    tenant: Tenant,
) -> None:
    merge = Merge.record(
        merge_id=uuid4(),
        survivor_id=uuid4(),
        source_id=uuid4(),
        reason="manual",
        moves=[AssetMove("identity_claim", uuid4())],
        actor="old",
        at=AT,
    )
    merge.undo(actor="old", at=AT + timedelta(seconds=1))
    created, undone = merge.collect_events()
    tenant.app.recorder.insert_events(
        [
            tenant.app.mapper.to_stored_event(created),
            as_v1(tenant, undone, "survivor_id", "source_id"),
        ]
    )

    loaded = tenant.app.repository.get(merge.id)

    assert isinstance(loaded, Merge)
    assert (loaded.undone, loaded.version) == (True, 2)
    assert feed_payload(tenant, merge.id, 2) == {
        "merge_id": str(merge.id),
        "survivor_id": None,
        "source_id": None,
    }


def test_an_undo_records_version_2_naming_the_survivor_and_the_source(tenant: Tenant) -> None:
    survivor = register(tenant, ("pos_member_no", "V")).customer_id
    source = register(tenant, ("pos_member_no", "S")).customer_id
    merge_id = merged(tenant.app, survivor, source)

    undo(tenant.app, merge_id)

    stored = tenant.app.recorder.select_events(merge_id)[-1]
    assert msgspec.json.decode(stored.state)["class_version"] == 2
    assert feed_payload(tenant, merge_id, 2) == {
        "merge_id": str(merge_id),
        "survivor_id": str(survivor),
        "source_id": str(source),
    }


def test_a_version_1_staff_alert_stored_before_still_loads_with_no_staff_id(
    tenant: Tenant,
) -> None:
    activity = StaffActivity.start("guide-old", at=AT)
    activity.record_removals(2, threshold=2, window_minutes=60, at=AT + timedelta(seconds=1))
    started, ended, alert = activity.collect_events()
    assert isinstance(alert, StaffActivity.AlertRaised)
    tenant.app.recorder.insert_events(
        [
            tenant.app.mapper.to_stored_event(started),
            tenant.app.mapper.to_stored_event(ended),
            as_v1(tenant, alert, "staff_id"),
        ]
    )

    loaded = tenant.app.repository.get(staff_activity_id("guide-old"))

    assert loaded.alerted_at == AT + timedelta(seconds=1)
    assert feed_payload(tenant, activity.id, 3) == {
        "staff_activity_id": str(activity.id),
        "staff_id": None,
        "kind": "owner_removals_burst",
        "count": 2,
        "window_minutes": 60,
    }


def test_a_staff_alert_raised_now_names_the_staff_member(tenant: Tenant) -> None:
    activity = StaffActivity.start("guide-new", at=AT)
    activity.record_removals(3, threshold=2, window_minutes=60, at=AT + timedelta(seconds=1))
    tenant.app.save(activity)

    assert feed_payload(tenant, activity.id, 3)["staff_id"] == "guide-new"
