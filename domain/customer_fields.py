"""A customer's profile fields: name, phone, email, birthday, owner, channel, store and custom
attributes (``attributes.<code>``), each with when it was last set.

A mixin of :class:`~domain.customer.Customer`, whose events and state it uses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

# Field paths a profile change, a merge and the history speak of; custom attributes are
# ``attributes.<code>``.
PROFILE_FIELDS = ("name", "phone", "email", "birthday", "channel", "store_id")
ATTRIBUTE = "attributes."


def with_changes(attributes: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with the ``attributes.<code>`` paths of ``changes`` (a profile change's,
    a merge's) applied: a value sets the attribute, None removes it."""
    out = dict(attributes)
    for path, value in changes.items():
        if path.startswith(ATTRIBUTE):
            code = path.removeprefix(ATTRIBUTE)
            if value is None:
                out.pop(code, None)
            else:
                out[code] = value
    return out


class CustomerFields:
    """The profile values (``fields``) and ``change_profile``."""

    # What the methods use of Customer (declared for the type checker only).
    if TYPE_CHECKING:
        name: str | None
        phone: str | None
        email: str | None
        birthday: date | None
        attributes: dict[str, Any]
        owner: str | None
        channel: str | None
        store_id: str | None
        changed_at: dict[str, datetime]
        ProfileChanged: type[Any]

        def require_active(self) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def fields(self) -> dict[str, Any]:
        """Profile values by field path, non-empty only (birthday as an ISO date)."""
        values: dict[str, Any] = {
            "name": self.name,
            "phone": self.phone,
            "email": self.email,
            "birthday": self.birthday.isoformat() if self.birthday else None,
            "owner": self.owner,
            "channel": self.channel,
            "store_id": self.store_id,
            **{f"attributes.{k}": v for k, v in self.attributes.items()},
        }
        return {k: v for k, v in values.items() if v is not None}

    def _set_fields(self, changes: Mapping[str, Any], at: datetime) -> None:
        attributes = with_changes(self.attributes, changes)
        for path, value in changes.items():
            if path == "birthday":
                self.birthday = date.fromisoformat(value) if value else None
            elif not path.startswith(ATTRIBUTE):
                setattr(self, path, value)
            self.changed_at = {**self.changed_at, path: at}
        self.attributes = attributes

    def change_profile(
        self, changes: Mapping[str, Any], *, channel: str | None, actor: str, at: datetime
    ) -> dict[str, Any]:
        """Record the fields whose value differs; returns them (empty: nothing recorded)."""
        self.require_active()
        current = self.fields()
        effective = {k: v for k, v in changes.items() if current.get(k) != v}
        if effective:
            self.trigger_event(
                self.ProfileChanged, changes=effective, channel=channel, actor=actor, timestamp=at
            )
        return effective
