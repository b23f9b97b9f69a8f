"""CustomerHistoryProjection: one row per change of a customer, with before and after values.

``customer_history`` rows: ``(customer_id, position)`` is the key; ``kind`` names the event
(``registered``, ``profile_changed``, ...), ``actor`` who asked, ``channel`` the channel the
command came through (registrations, profile changes, identity, role, owner, consent and tag
commands that named one; null otherwise: merges, undos, erasure, suggestions, the parent agent,
and events recorded before the field existed), ``changes`` a JSON list of
``{"field", "before", "after"}``.

Field names: the profile paths (``name``, ``phone``, ``email``, ``birthday``, ``owner``,
``channel``, ``store_id``, ``attributes.<code>``), ``referrer_id``, ``parent_agent_id``,
``merged_into``, ``roles`` (one entry per role: after = the role added, before = the role ended),
``tags`` (one entry per static tag: after = the tag put on, before = the tag taken off),
``consents.<purpose>.<channel>`` (granted true/false) and ``identities`` (after = the identities
added, before = the identities removed, as ``{"type", "value"}`` lists).

Events do not carry "before" values, so the projection keeps the current value of each field per
customer in its own table, ``customer_history_state (customer_id, fields)``.

Erasure empties the ``changes`` of every row of the customer (kind, actor, time stay) and drops
its state: no personal value remains, and a rebuild after the erasure (when the personal fields
decode as empty) ends in the same rows.

A merge leaves the source's values in the survivor's rows from its ``absorbed`` row on (the
identities and fields taken, and "before" values of changes made meanwhile), up to its
``absorption_undone`` row if it is undone. The source's state remembers that span (``#absorbed``:
``[survivor, merge id, from, to or null]``; the survivor's ``#merge:<id>`` names the source for
undo events that do not); erasing the source empties the survivor's rows in the span too. Keys
starting with ``#`` are never field paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import msgspec
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from application.public_events import plain
from domain.customer import Customer
from domain.values import Identity
from projections.engine import Positioned, Projection

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

HISTORY = "customer_history"
STATE = "customer_history_state"

KINDS: dict[type[Any], str] = {
    Customer.Registered: "registered",
    Customer.ProfileChanged: "profile_changed",
    Customer.IdentitiesLinked: "identities_linked",
    Customer.IdentitiesUnlinked: "identities_unlinked",
    Customer.RoleAdded: "role_added",
    Customer.RoleEnded: "role_ended",
    Customer.ParentAgentSet: "parent_agent_set",
    Customer.OwnerAssigned: "owner_assigned",
    Customer.OwnerEnded: "owner_ended",
    Customer.ConsentGiven: "consent_given",
    Customer.ConsentWithdrawn: "consent_withdrawn",
    Customer.TagsAdded: "tags_added",
    Customer.TagRemoved: "tag_removed",
    Customer.MergedInto: "merged_into",
    Customer.Absorbed: "absorbed",
    Customer.AbsorptionUndone: "absorption_undone",
    Customer.MergeUndone: "merge_undone",
    Customer.Erased: "erased",
}

Change = dict[str, Any]
State = dict[str, Any]


def _change(field: str, before: Any, after: Any) -> Change:
    return {"field": field, "before": before, "after": after}


def _identities(identities: Sequence[Identity]) -> list[dict[str, str]]:
    return [{"type": i.type, "value": i.value} for i in identities]


def _set(state: State, field: str, value: Any, changes: list[Change]) -> None:
    """Record ``field`` becoming ``value`` (None: cleared) against the state, and update it."""
    value = plain(value)
    before = state.get(field)
    changes.append(_change(field, before, value))
    if value is None:
        state.pop(field, None)
    else:
        state[field] = value


def _set_fields(state: State, fields: Mapping[str, Any], changes: list[Change]) -> None:
    for path, value in fields.items():
        _set(state, path, value, changes)


def _registered(state: State, e: Customer.Registered) -> list[Change]:
    changes: list[Change] = []
    if e.identities:
        changes.append(_change("identities", None, _identities(e.identities)))
    fields: dict[str, Any] = {
        "name": e.name,
        "phone": e.phone,
        "email": e.email,
        "birthday": e.birthday,
        **{f"attributes.{k}": v for k, v in e.attributes.items()},
    }
    _set_fields(state, {k: v for k, v in fields.items() if v is not None}, changes)
    changes += [_change("roles", None, role) for role in e.roles]
    rest = {"owner": e.owner, "channel": e.channel, "store_id": e.store_id}
    _set_fields(state, {k: v for k, v in rest.items() if v is not None}, changes)
    if e.referrer_id is not None:
        changes.append(_change("referrer_id", None, str(e.referrer_id)))
    return changes


def _consent_changes(
    state: State, e: Customer.Absorbed | Customer.AbsorptionUndone, changes: list[Change]
) -> None:
    if isinstance(e, Customer.AbsorptionUndone):
        for purpose, channel in e.removed_consents:
            _set(state, f"consents.{purpose}.{channel}", None, changes)
        if e.parent_agent_given_back:
            _set(state, "parent_agent_id", None, changes)
        if e.referrer_given_back:
            _set(state, "referrer_id", None, changes)
    else:
        if e.parent_agent_id is not None:
            _set(state, "parent_agent_id", e.parent_agent_id, changes)
        if e.referrer_id is not None:
            _set(state, "referrer_id", e.referrer_id, changes)
    for c in e.consents:
        _set(state, f"consents.{c.purpose}.{c.channel}", c.granted, changes)


def _changes(state: State, e: Any) -> list[Change]:
    """What ``e`` changed, before and after; updates ``state``."""
    changes: list[Change] = []
    if isinstance(e, Customer.Registered):
        return _registered(state, e)
    if isinstance(e, Customer.IdentitiesLinked):
        if e.identities:
            changes.append(_change("identities", None, _identities(e.identities)))
    elif isinstance(e, Customer.IdentitiesUnlinked):
        if e.identities:
            changes.append(_change("identities", _identities(e.identities), None))
    elif isinstance(e, Customer.ProfileChanged):
        _set_fields(state, e.changes, changes)
    elif isinstance(e, Customer.RoleAdded):
        changes.append(_change("roles", None, e.role))
    elif isinstance(e, Customer.RoleEnded):
        changes.append(_change("roles", e.role, None))
    elif isinstance(e, Customer.ParentAgentSet):
        _set(state, "parent_agent_id", e.parent_id, changes)
    elif isinstance(e, Customer.OwnerAssigned):
        _set(state, "owner", e.owner, changes)
    elif isinstance(e, Customer.OwnerEnded):
        _set(state, "owner", None, changes)
    elif isinstance(e, Customer.ConsentGiven | Customer.ConsentWithdrawn):
        granted = isinstance(e, Customer.ConsentGiven)
        _set(state, f"consents.{e.purpose}.{e.channel}", granted, changes)
    elif isinstance(e, Customer.TagsAdded):
        changes += [_change("tags", None, tag) for tag in e.tags]
    elif isinstance(e, Customer.TagRemoved):
        changes.append(_change("tags", e.tag, None))
    elif isinstance(e, Customer.Absorbed):
        if e.identities:
            changes.append(_change("identities", None, _identities(e.identities)))
        _set_fields(state, e.fields, changes)
        changes += [_change("roles", None, role) for role in e.roles]
        changes += [_change("tags", None, tag) for tag in e.tags]
        _consent_changes(state, e, changes)
    elif isinstance(e, Customer.AbsorptionUndone):
        if e.identities:
            changes.append(_change("identities", _identities(e.identities), None))
        _set_fields(state, e.fields, changes)
        changes += [_change("roles", role, None) for role in e.roles]
        changes += [_change("tags", tag, None) for tag in e.tags]
        _consent_changes(state, e, changes)
    elif isinstance(e, Customer.MergedInto):
        _set(state, "merged_into", e.survivor_id, changes)
    elif isinstance(e, Customer.MergeUndone):
        _set(state, "merged_into", None, changes)
        if e.identities:
            changes.append(_change("identities", None, _identities(e.identities)))
    return changes


# Events whose ``channel`` field is the channel the command came through; the consent events'
# ``channel`` is the one the consent covers, theirs is ``via``.
_CHANNELLED = (
    Customer.Registered,
    Customer.ProfileChanged,
    Customer.IdentitiesLinked,
    Customer.IdentitiesUnlinked,
    Customer.RoleAdded,
    Customer.RoleEnded,
    Customer.OwnerAssigned,
    Customer.OwnerEnded,
    Customer.TagsAdded,
    Customer.TagRemoved,
)


def _channel_of(e: Any) -> str | None:
    if isinstance(e, _CHANNELLED):
        channel: str | None = e.channel
        return channel
    if isinstance(e, Customer.ConsentGiven | Customer.ConsentWithdrawn):
        return e.via
    return None


class _Row:
    __slots__ = ("actor", "at", "changes", "channel", "customer_id", "kind", "position")

    def __init__(self, p: Positioned, changes: list[Change]) -> None:
        e = p.event
        self.position: int = p.position
        self.customer_id: UUID = e.originator_id
        self.at: datetime = e.timestamp
        self.actor: str = e.actor
        self.channel: str | None = _channel_of(e)
        self.kind = KINDS[type(e)]
        self.changes = changes


class CustomerHistoryProjection(Projection):
    name: ClassVar[str] = "customer_history"
    tables: ClassVar[tuple[str, ...]] = (HISTORY, STATE)
    topics: ClassVar[frozenset[str]] = frozenset(cls.TOPIC for cls in KINDS)

    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        s = Identifier(schema)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " position bigint NOT NULL, customer_id uuid NOT NULL, at timestamptz NOT NULL,"
                " actor text NOT NULL, channel text, kind text NOT NULL, changes json NOT NULL,"
                " PRIMARY KEY (customer_id, position))"
            ).format(s, Identifier(HISTORY + suffix))
        )
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " customer_id uuid PRIMARY KEY, fields json NOT NULL)"
            ).format(s, Identifier(STATE + suffix))
        )

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        history = SQL("{}.{}").format(Identifier(schema), Identifier(HISTORY + suffix))
        state_table = SQL("{}.{}").format(Identifier(schema), Identifier(STATE + suffix))
        states = _load_states(curs, state_table, events)
        touched: set[UUID] = set()
        erased: set[UUID] = set()
        spans: list[tuple[UUID, int, int]] = []  # survivors' rows holding an erased source's data
        rows: list[_Row] = []
        for p in events:
            e, cid = p.event, p.event.originator_id
            if isinstance(e, Customer.Erased):
                for row in rows:
                    if row.customer_id == cid:
                        row.changes = []
                for survivor, _, start, end in states.get(cid, {}).get("#absorbed", []):
                    stop = end if end is not None else 1 << 62
                    spans.append((UUID(survivor), start, stop))
                    for row in rows:
                        if str(row.customer_id) == survivor and start <= row.position <= stop:
                            row.changes = []
                rows.append(_Row(p, []))
                states[cid] = {}
                erased.add(cid)
            else:
                state = states.setdefault(cid, {})
                rows.append(_Row(p, _changes(state, e)))
                if isinstance(e, Customer.Absorbed | Customer.AbsorptionUndone):
                    source = self._track_merge(curs, state_table, states, cid, e, p.position)
                    if source is not None:
                        touched.add(source)
            touched.add(cid)

        if erased:
            # Rows of earlier batches: keep the what, who and when, drop the values.
            curs.execute(
                SQL(
                    "UPDATE {} SET changes = '[]' WHERE customer_id = ANY(%s)"
                    " AND changes::text <> '[]'"
                ).format(history),
                (list(erased),),
            )
        for survivor, start, end in spans:
            curs.execute(
                SQL(
                    "UPDATE {} SET changes = '[]' WHERE customer_id = %s"
                    " AND position BETWEEN %s AND %s AND changes::text <> '[]'"
                ).format(history),
                (survivor, start, end),
            )
        if rows:
            curs.execute(
                SQL(
                    "INSERT INTO {} (position, customer_id, at, actor, channel, kind, changes)"
                    " SELECT * FROM unnest(%b::bigint[], %b::uuid[], %b::timestamptz[],"
                    " %b::text[], %b::text[], %b::text[], %b::json[])"
                ).format(history),
                (
                    [r.position for r in rows],
                    [r.customer_id for r in rows],
                    [r.at for r in rows],
                    [r.actor for r in rows],
                    [r.channel for r in rows],
                    [r.kind for r in rows],
                    [_encode(r.changes).decode() for r in rows],
                ),
            )
        _write_states(curs, state_table, {c: states[c] for c in touched})

    @staticmethod
    def _track_merge(
        curs: Cursor[DictRow],
        table: Composed,
        states: dict[UUID, State],
        survivor: UUID,
        e: Customer.Absorbed | Customer.AbsorptionUndone,
        position: int,
    ) -> UUID | None:
        """Remember where the survivor's rows hold the source's data (see the module doc)."""
        marker = f"#merge:{e.merge_id}"
        if isinstance(e, Customer.Absorbed):
            states[survivor][marker] = str(e.source_id)
            source = e.source_id
        else:
            named = states[survivor].pop(marker, None)
            source = e.source_id or (UUID(named) if named else None)
            if source is None:
                return None
        if source not in states:
            states.update(_load_states_of(curs, table, [source]))
        state = states.setdefault(source, {})
        merge_id = str(e.merge_id)
        spans = [s for s in state.get("#absorbed", []) if s[1] != merge_id]
        if isinstance(e, Customer.Absorbed):
            spans.append([str(survivor), merge_id, position, None])
        else:
            start = next((s[2] for s in state.get("#absorbed", []) if s[1] == merge_id), position)
            spans.append([str(survivor), merge_id, start, position])
        state["#absorbed"] = spans
        return source


def _load_states(
    curs: Cursor[DictRow], table: Composed, events: Sequence[Positioned]
) -> dict[UUID, State]:
    created = {p.event.originator_id for p in events if isinstance(p.event, Customer.Registered)}
    return _load_states_of(curs, table, list({p.event.originator_id for p in events} - created))


def _load_states_of(
    curs: Cursor[DictRow], table: Composed, wanted: list[UUID]
) -> dict[UUID, State]:
    states: dict[UUID, State] = {}
    if wanted:
        curs.execute(
            SQL(
                "SELECT customer_id, fields::text AS fields FROM {} WHERE customer_id = ANY(%s)"
            ).format(table),
            (wanted,),
        )
        states = {r["customer_id"]: _decode(r["fields"]) for r in curs.fetchall()}
    return states


def _write_states(curs: Cursor[DictRow], table: Composed, states: dict[UUID, State]) -> None:
    """Upsert the non-empty states, delete the empty ones (nothing known: no row)."""
    kept = [c for c, s in states.items() if s]
    gone = [c for c, s in states.items() if not s]
    if gone:
        curs.execute(SQL("DELETE FROM {} WHERE customer_id = ANY(%s)").format(table), (gone,))
    if kept:
        curs.execute(
            SQL(
                "INSERT INTO {} (customer_id, fields)"
                " SELECT * FROM unnest(%b::uuid[], %b::json[])"
                " ON CONFLICT (customer_id) DO UPDATE SET fields = EXCLUDED.fields"
            ).format(table),
            (kept, [_encode(states[c]).decode() for c in kept]),
        )
