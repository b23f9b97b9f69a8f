"""Merging two records of one person, and undoing it: the plan (pure) and the Merge record.

A merge moves everything the source holds to the survivor by events on both sides, so every
balance stays exact and auditable. Asset types plug in through the application's merge
participants; each move they make is listed on the ``Merge`` so its undo can reverse it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.agent_network import AgentNetwork
from domain.customer import Customer, MergeRecord
from domain.customer_consents import Consent
from domain.errors import CannotMerge, ClientIdReused, MergeNotUndoable
from domain.program import ProgramRules
from domain.values import Identity

# A merge may give the survivor a parent agent, recorded on the tenant's agent network too;
# importing it here also registers its topics wherever merges are known (projections, feed).
NETWORK = AgentNetwork


@dataclass(frozen=True)
class AssetMove:
    """One aggregate a participant changed in a merge: its kind and id, enough to reverse it."""

    kind: str
    aggregate_id: UUID


@dataclass(frozen=True)
class MergePlan:
    """What the survivor takes. ``consents``: the source's decisions newer than the survivor's
    for the same purpose and channel (``previous_consents``: the survivor's they replace);
    ``parent_agent_id``/``referrer_id``: the source's, when the survivor has none; ``tags``: the
    source's static tags the survivor lacks (tags merge as a union, like roles)."""

    identities: tuple[Identity, ...]
    fields: dict[str, Any]
    previous: dict[str, Any]
    roles: tuple[str, ...]
    consents: tuple[Consent, ...] = ()
    previous_consents: tuple[Consent, ...] = ()
    parent_agent_id: UUID | None = None
    referrer_id: UUID | None = None
    tags: tuple[str, ...] = ()


def check_mergeable(survivor: Customer, source: Customer) -> None:
    if survivor.id == source.id:
        raise CannotMerge("a customer cannot be merged into itself")
    for who, c in (("survivor", survivor), ("source", source)):
        if c.erased:
            raise CannotMerge(f"the {who} {c.id} was erased")
        if c.merged_into is not None:
            raise CannotMerge(f"the {who} {c.id} was already merged into {c.merged_into}")


def _pick(rule: str, path: str, survivor: Customer, source: Customer) -> Any:
    mine, theirs = survivor.fields().get(path), source.fields().get(path)
    if theirs is None or rule == "survivor_wins":
        return mine
    if mine is None:
        return theirs
    if rule == "newest":
        return theirs if source.changed_at[path] > survivor.changed_at[path] else mine
    if rule == "oldest":
        return theirs if source.changed_at[path] < survivor.changed_at[path] else mine
    return mine  # non_empty: the survivor's value is not empty


def plan_merge(survivor: Customer, source: Customer, rules: ProgramRules) -> MergePlan:
    """Per field, the program's survivorship rule picks the value the survivor keeps."""
    check_mergeable(survivor, source)
    paths = sorted(set(survivor.fields()) | set(source.fields()))
    fields: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    mine = survivor.fields()
    for path in paths:
        value = _pick(rules.survivorship_of(path), path, survivor, source)
        if value != mine.get(path):
            fields[path] = value
            previous[path] = mine.get(path)
    held = set(survivor.identities)
    identities = tuple(i for i in source.identities if i not in held)
    roles = tuple(r for r in source.roles if r not in survivor.roles)
    # Sorted: the union does not depend on the order the source's tags were put on.
    tags = tuple(sorted(t for t in source.tags if t not in survivor.tags))
    consents: list[Consent] = []
    previous_consents: list[Consent] = []
    for key, theirs in sorted(source.consents.items()):
        own = survivor.consents.get(key)
        if own is None or theirs.at > own.at:  # the newest decision per purpose and channel
            consents.append(theirs)
            if own is not None:
                previous_consents.append(own)
    parent = source.parent_agent_id
    if survivor.parent_agent_id is not None or parent == survivor.id:
        parent = None
    referrer = source.referrer_id
    if survivor.referrer_id is not None or referrer == survivor.id:
        referrer = None
    return MergePlan(
        identities,
        fields,
        previous,
        roles,
        tuple(consents),
        tuple(previous_consents),
        parent,
        referrer,
        tags,
    )


def without_parent_agent(plan: MergePlan) -> MergePlan:
    """The plan without the parent-agent link (the caller found that it would close a cycle)."""
    return replace(plan, parent_agent_id=None)


def absorb(
    survivor: Customer,
    source_id: UUID,
    merge_id: UUID,
    plan: MergePlan,
    *,
    actor: str,
    at: datetime,
) -> None:
    survivor.trigger_event(
        Customer.Absorbed,
        merge_id=merge_id,
        source_id=source_id,
        identities=plan.identities,
        fields=plan.fields,
        previous=plan.previous,
        roles=plan.roles,
        actor=actor,
        consents=plan.consents,
        previous_consents=plan.previous_consents,
        parent_agent_id=plan.parent_agent_id,
        referrer_id=plan.referrer_id,
        tags=plan.tags,
        timestamp=at,
    )


def merge_away(
    source: Customer, survivor_id: UUID, merge_id: UUID, *, actor: str, at: datetime
) -> None:
    source.trigger_event(
        Customer.MergedInto, merge_id=merge_id, survivor_id=survivor_id, actor=actor, timestamp=at
    )


@dataclass(frozen=True)
class UndoPlan:
    """What the survivor gives back. Fields changed again after the merge keep their newer value;
    identities it unlinked since are not given back. Consent decisions, the parent agent and the
    referrer the merge gave go back only if unchanged since: ``consents`` are the survivor's own
    decisions restored, ``removed_consents`` the keys it had none for. ``tags``: the tags the
    merge added that the survivor still carries from the merge (one removed since is gone
    already; one removed and put on again since the merge was decided again and stays)."""

    identities: tuple[Identity, ...]
    fields: dict[str, Any]
    roles: tuple[str, ...]
    source_id: UUID | None = None
    consents: tuple[Consent, ...] = ()
    removed_consents: tuple[tuple[str, str], ...] = ()
    parent_agent_given_back: bool = False
    referrer_given_back: bool = False
    tags: tuple[str, ...] = ()


def plan_undo(survivor: Customer, merge_id: UUID) -> UndoPlan:
    record: MergeRecord | None = survivor.absorbed.get(merge_id)
    if record is None:
        raise MergeNotUndoable(f"customer {survivor.id} holds no merge {merge_id}")
    if survivor.erased or survivor.merged_into is not None:
        raise MergeNotUndoable(
            f"the survivor {survivor.id} was merged on or erased: undo that first"
        )
    held = set(survivor.identities)
    current = survivor.fields()
    restored = {
        path: record.previous.get(path)
        for path, value in record.fields.items()
        if current.get(path) == value
    }
    roles = tuple(r for r in record.roles if r in survivor.roles)
    tags = tuple(
        t for t in record.tags if record.at is not None and survivor.tags.get(t) == record.at
    )
    before = {(c.purpose, c.channel): c for c in record.previous_consents}
    consents: list[Consent] = []
    removed: list[tuple[str, str]] = []
    for given in record.consents:
        key = (given.purpose, given.channel)
        if survivor.consents.get(key) != given:
            continue  # decided again since the merge: the newer decision stays
        if key in before:
            consents.append(before[key])
        else:
            removed.append(key)
    return UndoPlan(
        tuple(i for i in record.identities if i in held),
        restored,
        roles,
        record.source_id,
        tuple(consents),
        tuple(removed),
        record.parent_agent_id is not None and survivor.parent_agent_id == record.parent_agent_id,
        record.referrer_id is not None and survivor.referrer_id == record.referrer_id,
        tags,
    )


def give_back(
    survivor: Customer, merge_id: UUID, plan: UndoPlan, *, actor: str, at: datetime
) -> None:
    survivor.trigger_event(
        Customer.AbsorptionUndone,
        merge_id=merge_id,
        identities=plan.identities,
        fields=plan.fields,
        roles=plan.roles,
        actor=actor,
        source_id=plan.source_id,
        consents=plan.consents,
        removed_consents=plan.removed_consents,
        parent_agent_given_back=plan.parent_agent_given_back,
        referrer_given_back=plan.referrer_given_back,
        tags=plan.tags,
        timestamp=at,
    )


def restore(
    source: Customer, merge_id: UUID, identities: Iterable[Identity], *, actor: str, at: datetime
) -> None:
    if source.merge_id != merge_id:
        raise MergeNotUndoable(f"customer {source.id} is not merged away by {merge_id}")
    source.trigger_event(
        Customer.MergeUndone,
        merge_id=merge_id,
        identities=tuple(identities),
        actor=actor,
        timestamp=at,
    )


class Merge(Aggregate):
    """The record of one merge, by ``merge_id``: who into whom, why, and what moved."""

    TOPIC = "membercore.Merge"

    class Created(Aggregate.Created):
        TOPIC = "membercore.Merge.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.Merge.Event"

    class Merged(Created):
        """``reason``: ``manual``, or ``identity:<type>`` for an auto-merge by identity rule."""

        TOPIC = "membercore.Merge.Merged"
        survivor_id: UUID
        source_id: UUID
        reason: str
        moves: tuple[AssetMove, ...]
        actor: str

    class Undone(Event):
        """v2: names the survivor and the source (v1 events read them as None)."""

        TOPIC = "membercore.Merge.Undone"
        class_version: ClassVar[int] = 2
        actor: str
        survivor_id: UUID | None = None
        source_id: UUID | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # A v1 event did not name them; the merge's ``Merged`` event of the stream does.
            state.setdefault("survivor_id", None)
            state.setdefault("source_id", None)

        def apply(self, aggregate: Merge) -> None:
            aggregate.undone = True

    def __init__(
        self,
        survivor_id: UUID,
        source_id: UUID,
        reason: str,
        moves: tuple[AssetMove, ...],
        actor: str,
    ) -> None:
        self.survivor_id = survivor_id
        self.source_id = source_id
        self.reason = reason
        self.moves = tuple(moves)
        self.undone = False

    @classmethod
    def record(
        cls,
        *,
        merge_id: UUID,
        survivor_id: UUID,
        source_id: UUID,
        reason: str,
        moves: Iterable[AssetMove],
        actor: str,
        at: datetime,
    ) -> Merge:
        return cls._create(
            cls.Merged,
            id=merge_id,
            timestamp=at,
            survivor_id=survivor_id,
            source_id=source_id,
            reason=reason,
            moves=tuple(moves),
            actor=actor,
        )

    def require_undoable(self) -> None:
        if self.undone:
            raise MergeNotUndoable(f"merge {self.id} was already undone")

    def repeated(self, survivor_id: UUID, source_id: UUID) -> None:
        """This merge's id was derived from a client's id that asks again: the same pair is the
        same request (answered again, nothing written), another pair is refused."""
        if (self.survivor_id, self.source_id) != (survivor_id, source_id):
            raise ClientIdReused("merge_id", str(self.id))

    def undo(self, *, actor: str, at: datetime) -> None:
        self.require_undoable()
        self.trigger_event(
            self.Undone,
            actor=actor,
            survivor_id=self.survivor_id,
            source_id=self.source_id,
            timestamp=at,
        )
