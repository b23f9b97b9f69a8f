"""A customer's consent decisions: per purpose and channel, granted or withdrawn, under a policy
version.

A mixin of :class:`~domain.customer.Customer`, whose events and state it uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any


@dataclass(frozen=True)
class Consent:
    purpose: str
    channel: str
    granted: bool
    policy_version: str | None
    source: str | None
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        """What the profile and the privacy export show of it."""
        return {
            "purpose": self.purpose,
            "channel": self.channel,
            "granted": self.granted,
            "policy_version": self.policy_version,
            "source": self.source,
            "at": self.at.isoformat(),
        }


class CustomerConsents:
    """``record_consent``."""

    # What the methods use of Customer (declared for the type checker only).
    if TYPE_CHECKING:
        consents: dict[tuple[str, str], Consent]
        ConsentGiven: type[Any]
        ConsentWithdrawn: type[Any]

        def require_active(self) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def _consent(self, purpose: str, channel: str, granted: bool, e: Any) -> None:
        self.consents = {
            **self.consents,
            (purpose, channel): Consent(
                purpose, channel, granted, e.policy_version, e.source, e.timestamp
            ),
        }

    def record_consent(
        self,
        *,
        purpose: str,
        channel: str,
        granted: bool,
        policy_version: str | None,
        source: str | None,
        actor: str,
        at: datetime,
        via: str | None = None,
    ) -> bool:
        """Record a grant or a withdrawal; repeating the current state records nothing.
        ``via``: the channel the command came through (``channel``: the one consented to)."""
        self.require_active()
        current = self.consents.get((purpose, channel))
        if (
            current is not None
            and current.granted == granted
            and current.policy_version == policy_version
        ):
            return False
        cls = self.ConsentGiven if granted else self.ConsentWithdrawn
        self.trigger_event(
            cls,
            purpose=purpose,
            channel=channel,
            policy_version=policy_version,
            source=source,
            actor=actor,
            via=via,
            timestamp=at,
        )
        return True
