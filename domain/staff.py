"""Staff activity: the seed warns of staff deleting customers in bulk before they leave."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

# Fixed forever: staff activity stream ids are derived from it.
STAFF_NAMESPACE = UUID("a4c3f0d2-9b1e-5f47-8d2a-6e0c1b7f3a90")
# The longest alert window the program may set (program validation caps it).
MAX_WINDOW = timedelta(days=7)


def staff_activity_id(staff_id: str) -> UUID:
    return uuid5(STAFF_NAMESPACE, staff_id)


class StaffActivity(Aggregate):
    """Ownership removals by one staff member in a sliding window; a burst raises an alert."""

    TOPIC = "membercore.StaffActivity"

    class Created(Aggregate.Created):
        TOPIC = "membercore.StaffActivity.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.StaffActivity.Event"

    class Started(Created):
        TOPIC = "membercore.StaffActivity.Started"
        staff_id: str

    class OwnershipsEnded(Event):
        TOPIC = "membercore.StaffActivity.OwnershipsEnded"
        count: int

        def apply(self, aggregate: StaffActivity) -> None:
            # Forget what no window can reach, so the stream's state stays small.
            horizon = self.timestamp - MAX_WINDOW
            kept = tuple((t, n) for t, n in aggregate.removals if t > horizon)
            aggregate.removals = (*kept, (self.timestamp, self.count))

    class AlertRaised(Event):
        """``count`` removals within ``window_minutes``: someone should look.

        v2 names the staff member (``staff_id``); v1 events read it as None (the stream's
        ``Started`` event has it).
        """

        TOPIC = "membercore.StaffActivity.AlertRaised"
        class_version: ClassVar[int] = 2
        kind: str
        count: int
        window_minutes: int
        staff_id: str | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("staff_id", None)

        def apply(self, aggregate: StaffActivity) -> None:
            aggregate.alerted_at = self.timestamp

    def __init__(self, staff_id: str) -> None:
        self.staff_id = staff_id
        self.removals: tuple[tuple[datetime, int], ...] = ()
        self.alerted_at: datetime | None = None

    @classmethod
    def start(cls, staff_id: str, *, at: datetime) -> StaffActivity:
        return cls._create(
            cls.Started, id=staff_activity_id(staff_id), timestamp=at, staff_id=staff_id
        )

    def record_removals(
        self, count: int, *, threshold: int, window_minutes: int, at: datetime
    ) -> bool:
        """Record ``count`` ended ownerships; True when this crossed the alert threshold.

        One alert per window: a burst that keeps going does not raise one per removal.
        """
        since = at - timedelta(minutes=window_minutes)
        recent = sum(n for t, n in self.removals if t > since) + count
        self.trigger_event(self.OwnershipsEnded, count=count, timestamp=at)
        if recent >= threshold and (self.alerted_at is None or self.alerted_at <= since):
            self.trigger_event(
                self.AlertRaised,
                kind="owner_removals_burst",
                count=recent,
                window_minutes=window_minutes,
                staff_id=self.staff_id,
                timestamp=at,
            )
            return True
        return False
