"""The customer: one natural person, however many channel identities they have."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.copying import ContainerCopies
from domain.customer_consents import Consent, CustomerConsents
from domain.customer_fields import CustomerFields
from domain.customer_roles import CustomerRoles
from domain.customer_tags import CustomerTags
from domain.errors import (
    CustomerErased,
    CustomerMerged,
    IdentityNotHeld,
    LastIdentity,
)
from domain.values import Identity


@dataclass(frozen=True)
class MergeRecord:
    """What a merge gave the survivor, kept until the merge is undone."""

    source_id: UUID
    identities: tuple[Identity, ...]
    fields: dict[str, Any]
    previous: dict[str, Any]
    roles: tuple[str, ...]
    consents: tuple[Consent, ...] = ()
    previous_consents: tuple[Consent, ...] = ()
    parent_agent_id: UUID | None = None
    referrer_id: UUID | None = None
    # The tags the merge added, and when: the undo takes back those still carrying that time
    # (a tag removed and added again since the merge stays).
    tags: tuple[str, ...] = ()
    at: datetime | None = None


class Customer(
    CustomerFields, CustomerRoles, CustomerTags, CustomerConsents, ContainerCopies, Aggregate
):
    """Identities, personal data, attributes, roles, owner and consents of one person.

    Assets (points, levels, wallet, commissions) live in their own aggregates. Events name their
    personal fields in ``PERSONAL``: the event store encrypts those with the customer's key.
    ``SEALED_WITH`` maps a personal field to the event field naming *another* customer whose key
    seals it instead (a merge's copies of the source's values): erasing that customer shreds the
    copy too (docs/adr/0007-crypto-shredding.md, amendment).
    """

    TOPIC = "membercore.Customer"

    class Created(Aggregate.Created):
        TOPIC = "membercore.Customer.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.Customer.Event"
        PERSONAL: ClassVar[tuple[str, ...]] = ()
        SEALED_WITH: ClassVar[dict[str, str]] = {}

    class Registered(Created):
        """A customer became known, holding ``identities``. Version 1."""

        TOPIC = "membercore.Customer.Registered"
        PERSONAL: ClassVar[tuple[str, ...]] = (
            "identities",
            "name",
            "phone",
            "email",
            "birthday",
            "attributes",
        )
        identities: tuple[Identity, ...]
        name: str | None
        phone: str | None
        email: str | None
        birthday: date | None
        attributes: dict[str, Any]
        roles: tuple[str, ...]
        owner: str | None
        referrer_id: UUID | None
        actor: str
        channel: str | None = None
        store_id: str | None = None

    class IdentitiesLinked(Event):
        """More identities were found to be this customer's. v1."""

        TOPIC = "membercore.Customer.IdentitiesLinked"
        PERSONAL = ("identities",)
        identities: tuple[Identity, ...]
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.identities = (*aggregate.identities, *self.identities)

    class IdentitiesUnlinked(Event):
        """Identities no longer belong to this customer. v1.

        ``source_id``: the identities came from that customer by a merge not undone (sealed with
        its key); None: the customer's own.
        """

        TOPIC = "membercore.Customer.IdentitiesUnlinked"
        PERSONAL = ("identities",)
        SEALED_WITH: ClassVar[dict[str, str]] = {"identities": "source_id"}
        identities: tuple[Identity, ...]
        actor: str
        source_id: UUID | None = None
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            gone = set(self.identities)
            aggregate.identities = tuple(i for i in aggregate.identities if i not in gone)

    class ProfileChanged(Event):
        """Profile fields changed: ``changes`` maps a field path to its new value. v1."""

        TOPIC = "membercore.Customer.ProfileChanged"
        PERSONAL = ("changes",)
        changes: dict[str, Any]
        channel: str | None
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate._set_fields(self.changes, self.timestamp)

    class RoleAdded(Event):
        TOPIC = "membercore.Customer.RoleAdded"
        role: str
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.roles = {**aggregate.roles, self.role: self.timestamp}

    class RoleEnded(Event):
        TOPIC = "membercore.Customer.RoleEnded"
        role: str
        reason: str | None
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.roles = {r: t for r, t in aggregate.roles.items() if r != self.role}

    class ParentAgentSet(Event):
        """The agent directly above this one in the downline tree (None: a top agent). v1."""

        TOPIC = "membercore.Customer.ParentAgentSet"
        parent_id: UUID | None
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate.parent_agent_id = self.parent_id

    class OwnerAssigned(Event):
        TOPIC = "membercore.Customer.OwnerAssigned"
        owner: str
        previous: str | None
        reason: str | None
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.owner = self.owner
            aggregate.changed_at = {**aggregate.changed_at, "owner": self.timestamp}

    class OwnerEnded(Event):
        """The owner relationship ended without a successor; ``by`` is the staff who ended it."""

        TOPIC = "membercore.Customer.OwnerEnded"
        owner: str
        by: str
        reason: str | None
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.owner = None
            aggregate.changed_at = {**aggregate.changed_at, "owner": self.timestamp}

    class ConsentGiven(Event):
        TOPIC = "membercore.Customer.ConsentGiven"
        purpose: str
        channel: str
        policy_version: str | None
        source: str | None
        actor: str
        # The channel the command came through (``channel`` is the one the consent covers).
        via: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate._consent(self.purpose, self.channel, True, self)

    class ConsentWithdrawn(Event):
        TOPIC = "membercore.Customer.ConsentWithdrawn"
        purpose: str
        channel: str
        policy_version: str | None
        source: str | None
        actor: str
        # The channel the command came through (``channel`` is the one the consent covers).
        via: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate._consent(self.purpose, self.channel, False, self)

    class TagsAdded(Event):
        """Static tags were put on the customer (only those it did not carry). v1."""

        TOPIC = "membercore.Customer.TagsAdded"
        tags: tuple[str, ...]
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.tags = {**aggregate.tags, **dict.fromkeys(self.tags, self.timestamp)}

    class TagRemoved(Event):
        """A static tag was taken off the customer. v1."""

        TOPIC = "membercore.Customer.TagRemoved"
        tag: str
        actor: str
        channel: str | None = None

        def apply(self, aggregate: Customer) -> None:
            aggregate.tags = {t: at for t, at in aggregate.tags.items() if t != self.tag}

    class MatchSuggested(Event):
        """Another customer shares a suggesting identity: a merge candidate for review. v1."""

        TOPIC = "membercore.Customer.MatchSuggested"
        other_id: UUID
        identity_type: str
        actor: str

    class Absorbed(Event):
        """This customer survived a merge: it took the source's identities, fields and roles,
        the source's consent decisions newer than its own, the source's tags it lacked, and the
        source's parent agent and referrer when it had none.

        The source's values (``identities``, ``fields``) are sealed with the source's key, the
        survivor's own ``previous`` values with the survivor's.
        """

        TOPIC = "membercore.Customer.Absorbed"
        PERSONAL = ("identities", "fields", "previous")
        SEALED_WITH: ClassVar[dict[str, str]] = {"identities": "source_id", "fields": "source_id"}
        merge_id: UUID
        source_id: UUID
        identities: tuple[Identity, ...]
        fields: dict[str, Any]
        previous: dict[str, Any]
        roles: tuple[str, ...]
        actor: str
        consents: tuple[Consent, ...] = ()
        previous_consents: tuple[Consent, ...] = ()
        parent_agent_id: UUID | None = None
        referrer_id: UUID | None = None
        tags: tuple[str, ...] = ()

        def apply(self, aggregate: Customer) -> None:
            aggregate.identities = (*aggregate.identities, *self.identities)
            aggregate._set_fields(self.fields, self.timestamp)
            aggregate.roles = {**aggregate.roles, **dict.fromkeys(self.roles, self.timestamp)}
            aggregate.tags = {**aggregate.tags, **dict.fromkeys(self.tags, self.timestamp)}
            aggregate.consents = {
                **aggregate.consents,
                **{(c.purpose, c.channel): c for c in self.consents},
            }
            if self.parent_agent_id is not None:
                aggregate.parent_agent_id = self.parent_agent_id
            if self.referrer_id is not None:
                aggregate.referrer_id = self.referrer_id
            aggregate.absorbed = {
                **aggregate.absorbed,
                self.merge_id: MergeRecord(
                    self.source_id,
                    self.identities,
                    dict(self.fields),
                    dict(self.previous),
                    self.roles,
                    self.consents,
                    self.previous_consents,
                    self.parent_agent_id,
                    self.referrer_id,
                    self.tags,
                    self.timestamp,
                ),
            }

    class AbsorptionUndone(Event):
        """A merge this customer survived was undone: what it took is given back.

        ``identities`` (the source's, sealed with the source's key when ``source_id`` is set) go
        back; ``fields`` are the survivor's own values restored; ``consents`` its own decisions
        restored and ``removed_consents`` (purpose, channel) the decisions it drops; the parent
        agent and referrer the merge gave are dropped when the flags say so; ``tags`` the
        merge added are taken off.
        """

        TOPIC = "membercore.Customer.AbsorptionUndone"
        PERSONAL = ("identities", "fields")
        SEALED_WITH: ClassVar[dict[str, str]] = {"identities": "source_id"}
        merge_id: UUID
        identities: tuple[Identity, ...]
        fields: dict[str, Any]
        roles: tuple[str, ...]
        actor: str
        source_id: UUID | None = None
        consents: tuple[Consent, ...] = ()
        removed_consents: tuple[tuple[str, str], ...] = ()
        parent_agent_given_back: bool = False
        referrer_given_back: bool = False
        tags: tuple[str, ...] = ()

        def apply(self, aggregate: Customer) -> None:
            # The identities given back are the merge's still held (see ``plan_undo``): taken
            # from the merge record too, so a state decoded while the source's key existed (an
            # aggregate cached before the source was erased) gives them back all the same.
            record = aggregate.absorbed.get(self.merge_id)
            gone = set(self.identities) | set(record.identities if record else ())
            aggregate.identities = tuple(i for i in aggregate.identities if i not in gone)
            aggregate._set_fields(self.fields, self.timestamp)
            aggregate.roles = {r: t for r, t in aggregate.roles.items() if r not in self.roles}
            aggregate.tags = {t: at for t, at in aggregate.tags.items() if t not in self.tags}
            removed = {(p, c) for p, c in self.removed_consents}
            aggregate.consents = {
                **{k: v for k, v in aggregate.consents.items() if k not in removed},
                **{(c.purpose, c.channel): c for c in self.consents},
            }
            if self.parent_agent_given_back:
                aggregate.parent_agent_id = None
            if self.referrer_given_back:
                aggregate.referrer_id = None
            aggregate.absorbed = {m: r for m, r in aggregate.absorbed.items() if m != self.merge_id}

    class MergedInto(Event):
        """This customer was merged into ``survivor_id``; reads answer with ``merged_into``."""

        TOPIC = "membercore.Customer.MergedInto"
        merge_id: UUID
        survivor_id: UUID
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate.merged_into = self.survivor_id
            aggregate.merge_id = self.merge_id

    class MergeUndone(Event):
        """The merge was undone: this customer is active again, holding ``identities``."""

        TOPIC = "membercore.Customer.MergeUndone"
        PERSONAL = ("identities",)
        merge_id: UUID
        identities: tuple[Identity, ...]
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate.merged_into = None
            aggregate.merge_id = None
            aggregate.identities = self.identities

    class Erased(Event):
        """Personal data erased on request; the key that encrypted it is destroyed. v1."""

        TOPIC = "membercore.Customer.Erased"
        reason: str | None
        actor: str

        def apply(self, aggregate: Customer) -> None:
            aggregate.erased = True
            aggregate.identities = ()
            aggregate.name = aggregate.phone = aggregate.email = None
            aggregate.birthday = None
            aggregate.attributes = {}

    def __init__(
        self,
        identities: tuple[Identity, ...],
        name: str | None,
        phone: str | None,
        email: str | None,
        birthday: date | None,
        attributes: dict[str, Any],
        roles: tuple[str, ...],
        owner: str | None,
        referrer_id: UUID | None,
        actor: str,
        channel: str | None = None,
        store_id: str | None = None,
    ) -> None:
        self.identities = tuple(identities)
        self.name = name
        self.phone = phone
        self.email = email
        self.birthday = birthday
        self.attributes = dict(attributes)
        self.channel = channel
        self.store_id = store_id
        self.roles: dict[str, datetime] = dict.fromkeys(roles, self.created_on)
        self.owner = owner
        self.referrer_id = referrer_id
        self.parent_agent_id: UUID | None = None
        self.consents: dict[tuple[str, str], Consent] = {}
        # Static tag → when it was put on (the undo of a merge compares it).
        self.tags: dict[str, datetime] = {}
        self.merged_into: UUID | None = None
        self.merge_id: UUID | None = None
        self.absorbed: dict[UUID, MergeRecord] = {}
        self.erased = False
        # When each field was last set: the "newest"/"oldest" survivorship rules compare these.
        self.changed_at: dict[str, datetime] = dict.fromkeys(self.fields(), self.created_on)

    # -- commands ------------------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        *,
        customer_id: UUID,
        identities: Iterable[Identity],
        name: str | None,
        phone: str | None,
        email: str | None,
        birthday: date | None,
        attributes: Mapping[str, Any],
        roles: Iterable[str],
        owner: str | None,
        referrer_id: UUID | None,
        actor: str,
        at: datetime,
        channel: str | None = None,
        store_id: str | None = None,
    ) -> Customer:
        return cls._create(
            cls.Registered,
            id=customer_id,
            timestamp=at,
            identities=tuple(identities),
            name=name,
            phone=phone,
            email=email,
            birthday=birthday,
            attributes={k: v for k, v in attributes.items() if v is not None},
            roles=tuple(dict.fromkeys(roles)),
            owner=owner,
            referrer_id=referrer_id,
            actor=actor,
            channel=channel,
            store_id=store_id,
        )

    def require_active(self) -> None:
        """Merged-away and erased customers accept no commands."""
        if self.erased:
            raise CustomerErased(self.id)
        if self.merged_into is not None:
            raise CustomerMerged(self.id, self.merged_into)

    def link_identities(
        self,
        identities: Iterable[Identity],
        *,
        actor: str,
        at: datetime,
        channel: str | None = None,
    ) -> None:
        """Link identities not held yet; linking what is already held records nothing."""
        self.require_active()
        held = set(self.identities)
        new = tuple(i for i in dict.fromkeys(identities) if i not in held)
        if new:
            self.trigger_event(
                self.IdentitiesLinked, identities=new, actor=actor, channel=channel, timestamp=at
            )

    def unlink_identities(
        self,
        identities: Iterable[Identity],
        *,
        actor: str,
        at: datetime,
        channel: str | None = None,
    ) -> None:
        self.require_active()
        gone = tuple(dict.fromkeys(identities))
        for identity in gone:
            if identity not in self.identities:
                raise IdentityNotHeld(identity.type)
        if len(set(self.identities) - set(gone)) == 0:
            raise LastIdentity()
        # Identities a merge (not undone) brought stay sealed with their source's key.
        origin = {i: r.source_id for r in self.absorbed.values() for i in r.identities}
        groups: dict[UUID | None, list[Identity]] = {}
        for identity in gone:
            groups.setdefault(origin.get(identity), []).append(identity)
        for source_id, identities in groups.items():
            self.trigger_event(
                self.IdentitiesUnlinked,
                identities=tuple(identities),
                actor=actor,
                source_id=source_id,
                channel=channel,
                timestamp=at,
            )

    def suggest_match(
        self, other_id: UUID, identity_type: str, *, actor: str, at: datetime
    ) -> None:
        self.trigger_event(
            self.MatchSuggested,
            other_id=other_id,
            identity_type=identity_type,
            actor=actor,
            timestamp=at,
        )

    def erase(self, *, reason: str | None, actor: str, at: datetime) -> None:
        if self.erased:
            raise CustomerErased(self.id)
        self.trigger_event(self.Erased, reason=reason, actor=actor, timestamp=at)
