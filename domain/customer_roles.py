"""A customer's roles (consumer, agent, partner, ...), parent agent and owner (the staff member
or store that looks after them).

A mixin of :class:`~domain.customer.Customer`, whose events and state it uses."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.errors import RoleNotHeld


class CustomerRoles:
    """``add_role``, ``end_role``, ``set_parent_agent``, ``assign_owner`` and ``end_owner``."""

    # What the methods use of Customer (declared for the type checker only).
    if TYPE_CHECKING:
        roles: dict[str, datetime]
        owner: str | None
        parent_agent_id: UUID | None
        RoleAdded: type[Any]
        RoleEnded: type[Any]
        ParentAgentSet: type[Any]
        OwnerAssigned: type[Any]
        OwnerEnded: type[Any]

        def require_active(self) -> None: ...
        def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None: ...

    def add_role(self, role: str, *, actor: str, at: datetime, channel: str | None = None) -> bool:
        self.require_active()
        if role in self.roles:
            return False
        self.trigger_event(self.RoleAdded, role=role, actor=actor, channel=channel, timestamp=at)
        return True

    def end_role(
        self,
        role: str,
        *,
        reason: str | None,
        actor: str,
        at: datetime,
        channel: str | None = None,
    ) -> None:
        self.require_active()
        if role not in self.roles:
            raise RoleNotHeld(role)
        self.trigger_event(
            self.RoleEnded, role=role, reason=reason, actor=actor, channel=channel, timestamp=at
        )

    def set_parent_agent(self, parent_id: UUID | None, *, actor: str, at: datetime) -> bool:
        """Cycles are checked by the caller, who can see the ancestors (see ``agent_chain``)."""
        self.require_active()
        if parent_id == self.parent_agent_id:
            return False
        self.trigger_event(self.ParentAgentSet, parent_id=parent_id, actor=actor, timestamp=at)
        return True

    def assign_owner(
        self,
        owner: str,
        *,
        reason: str | None,
        actor: str,
        at: datetime,
        channel: str | None = None,
    ) -> bool:
        self.require_active()
        if owner == self.owner:
            return False
        self.trigger_event(
            self.OwnerAssigned,
            owner=owner,
            previous=self.owner,
            reason=reason,
            actor=actor,
            channel=channel,
            timestamp=at,
        )
        return True

    def end_owner(
        self,
        *,
        by: str,
        reason: str | None,
        actor: str,
        at: datetime,
        channel: str | None = None,
    ) -> str | None:
        """End the owner relationship; returns the owner it ended (None: there was none)."""
        self.require_active()
        owner = self.owner
        if owner is not None:
            self.trigger_event(
                self.OwnerEnded,
                owner=owner,
                by=by,
                reason=reason,
                actor=actor,
                channel=channel,
                timestamp=at,
            )
        return owner
