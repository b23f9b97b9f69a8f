"""Personal data at rest: per-customer keys (crypto-shredding) and keyed identity hashes.

* Each customer has a random 256-bit key in ``customer_keys``. Events name their personal fields
  (``PERSONAL``); the mapper seals those with AES-256-GCM under the key of the event's stream,
  bound to (stream id, version) so a ciphertext cannot be replayed into another event.
* A field named in the event class's ``SEALED_WITH`` (field -> event field holding a customer id)
  is sealed under *that* customer's key instead, in ``sealed_for`` (customer id -> blob), bound to
  (stream id, version, that customer id): a merge's copy of the source's values in the survivor's
  stream is shredded when the source is erased.
* Erasure destroys the key in the erasure event's own transaction. From then on every replay,
  projection rebuild, feed read and export sees the personal fields as erased (empty), while
  every other field, and so every balance, replays exactly as before.
* Identity claims are found by ``HMAC-SHA256(tenant secret, type, value)``, so matching works
  without the plain value being stored anywhere but sealed in the customer's own events.

Keys are cached per process for ``KEY_TTL_SECONDS``: another process sees an erasure within
that bound (the erasing process evicts at once). See docs/adr/0007-crypto-shredding.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.values import Identity
from infrastructure.eventstore import MsgspecMapper, SharedPoolDatastore

KEY_TTL_SECONDS = 30.0
KEYS_TABLE = "customer_keys"
SECRETS_TABLE = "secrets"
IDENTITY_SECRET = "identity_hmac"  # noqa: S105 - the name of a row, not a secret
SEALED = "sealed"
SEALED_FOR = "sealed_for"

_json = msgspec.json.Encoder()


def crypto_ddl(curs: Cursor[DictRow], schema: str) -> None:
    s = Identifier(schema)
    curs.execute(
        SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (customer_id uuid PRIMARY KEY, key bytea,"
            " created_at timestamptz NOT NULL DEFAULT now(), erased_at timestamptz,"
            " CHECK ((key IS NULL) = (erased_at IS NOT NULL)))"
        ).format(s, Identifier(KEYS_TABLE))
    )
    curs.execute(
        SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (name text PRIMARY KEY, value bytea NOT NULL)"
        ).format(s, Identifier(SECRETS_TABLE))
    )
    curs.execute(
        SQL("INSERT INTO {}.{} (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
            s, Identifier(SECRETS_TABLE)
        ),
        (IDENTITY_SECRET, os.urandom(32)),
    )


def identity_secret(datastore: SharedPoolDatastore) -> bytes:
    """The tenant's key of its identity hashes (made with the schema by ``crypto_ddl``)."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL("SELECT value FROM {}.{} WHERE name = %s").format(
                Identifier(datastore.schema), Identifier(SECRETS_TABLE)
            ),
            (IDENTITY_SECRET,),
        )
        row = curs.fetchone()
    assert row is not None, f"tenant schema {datastore.schema} has no identity secret"
    return bytes(row["value"])


def claim_id(secret: bytes, identity: Identity) -> UUID:
    """The claim of a normalised identity: a keyed hash, so ids reveal nothing of the value."""
    digest = hmac.new(secret, f"{identity.type}\x1f{identity.value}".encode(), hashlib.sha256)
    return UUID(bytes=digest.digest()[:16])


class KeyRing:
    """The customers' data keys of one tenant, cached; ``None`` means erased."""

    def __init__(self, datastore: SharedPoolDatastore) -> None:
        self.datastore = datastore
        self._cache: dict[UUID, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()
        table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(KEYS_TABLE))
        self._select = SQL("SELECT customer_id, key FROM {} WHERE customer_id = ANY(%s)").format(
            table
        )
        self._insert = SQL(
            "INSERT INTO {} (customer_id, key) SELECT * FROM unnest(%s::uuid[], %s::bytea[])"
            " ON CONFLICT DO NOTHING"
        ).format(table)
        self._destroy = SQL(
            "UPDATE {} SET key = NULL, erased_at = now() WHERE customer_id = %s"
        ).format(table)

    def _cached(self, customer_id: UUID) -> tuple[bool, bytes | None]:
        entry = self._cache.get(customer_id)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def _remember(self, keys: dict[UUID, bytes | None]) -> None:
        expires = time.monotonic() + KEY_TTL_SECONDS
        with self._lock:
            if len(self._cache) > 200_000:
                self._cache.clear()
            for customer_id, key in keys.items():
                self._cache[customer_id] = (expires, key)

    def load(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys of existing customers (absent: no key was ever made), one round trip."""
        wanted = [c for c in dict.fromkeys(customer_ids) if not self._cached(c)[0]]
        found: dict[UUID, bytes | None] = {}
        if wanted:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(self._select, (wanted,))
                found = {r["customer_id"]: r["key"] for r in curs.fetchall()}
            self._remember(found)
        return found

    def ensure(self, customer_ids: Iterable[UUID]) -> None:
        """Make keys for customers that have none (batched: one insert, one select)."""
        ids = list(dict.fromkeys(customer_ids))
        self.load(ids)
        missing = [c for c in ids if not self._cached(c)[0]]
        if missing:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(self._insert, (missing, [os.urandom(32) for _ in missing]))
            with self._lock:
                for c in missing:
                    self._cache.pop(c, None)
            self.load(missing)

    def key(self, customer_id: UUID, *, create: bool = False) -> bytes | None:
        hit, key = self._cached(customer_id)
        if hit:
            return key
        if create:
            self.ensure([customer_id])
        else:
            self.load([customer_id])
        return self._cached(customer_id)[1]

    def destroy_in(self, curs: Cursor[DictRow], customer_id: UUID) -> None:
        """Destroy the key inside the caller's (the erasure event's) transaction."""
        curs.execute(self._destroy, (customer_id,))

    def forget(self, customer_id: UUID) -> None:
        """Remember the customer as erased (their key is gone)."""
        self._remember({customer_id: None})

    def evict(self, customer_ids: Iterable[UUID]) -> None:
        """Drop cached keys (the next use reads them again)."""
        with self._lock:
            for customer_id in customer_ids:
                self._cache.pop(customer_id, None)


def _aad(originator_id: UUID, version: int, owner: UUID | None = None) -> bytes:
    bound = originator_id.bytes + version.to_bytes(8, "big")
    return bound if owner is None else bound + owner.bytes


def _seal(key: bytes, plain: dict[str, Any], aad: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, _json.encode(plain), aad)).decode()


def erased_value(field: str) -> Any:
    """What a personal field reads as once its key is gone."""
    if field == "identities":
        return []
    if field in ("attributes", "changes", "fields", "previous"):
        return {}
    return None


class SealingMapper(MsgspecMapper):
    """The msgspec mapper, sealing each event's ``PERSONAL`` fields with its stream's key."""

    def __init__(self, keys: KeyRing) -> None:
        super().__init__()
        self.keys = keys

    def prepare(self, stored_events: Iterable[StoredEvent]) -> None:
        """Load, in one round trip, the keys that decoding ``stored_events`` will need."""
        ids: set[UUID] = set()
        for e in stored_events:
            cls = self._decoder(e.topic)[0]
            if getattr(cls, "PERSONAL", ()):
                ids.add(_uuid(e.originator_id))
            if getattr(cls, "SEALED_WITH", None):
                try:
                    owners = msgspec.json.decode(e.state).get(SEALED_FOR) or {}
                except msgspec.MsgspecError:
                    continue
                ids.update(_uuid(o) for o in owners)
        if ids:
            self.keys.load(ids)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        personal: tuple[str, ...] = getattr(type(domain_event), "PERSONAL", ())
        if not personal:
            return super().to_stored_event(domain_event)
        cls = type(domain_event)
        data: dict[str, Any] = msgspec.to_builtins(domain_event)
        version = getattr(cls, "class_version", 1)
        if version > 1:
            data["class_version"] = version
        stream_id = domain_event.originator_id
        version = domain_event.originator_version
        sealed_with: dict[str, str] = getattr(cls, "SEALED_WITH", {})
        plain: dict[str, Any] = {}
        others: dict[UUID, dict[str, Any]] = {}
        for f in personal:
            value = data.pop(f)
            owner = getattr(domain_event, sealed_with[f], None) if f in sealed_with else None
            if owner is None or owner == stream_id:
                plain[f] = value
            else:
                others.setdefault(owner, {})[f] = value
        key = self.keys.key(stream_id, create=True)
        if key is not None and plain:  # an erased customer's new events carry no personal data
            data[SEALED] = _seal(key, plain, _aad(stream_id, version))
        sealed_for: dict[str, str] = {}
        for owner, values in others.items():
            owner_key = self.keys.key(owner, create=True)
            if owner_key is not None:  # erased: the copy is not kept at all
                sealed_for[str(owner)] = _seal(owner_key, values, _aad(stream_id, version, owner))
        if sealed_for:
            data[SEALED_FOR] = sealed_for
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(cls),
            state=_json.encode(data),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls, _ = self._decoder(stored_event.topic)
        personal: tuple[str, ...] = getattr(cls, "PERSONAL", ())
        if not personal:
            return super().to_domain_event(stored_event)
        try:
            data: dict[str, Any] = msgspec.json.decode(stored_event.state)
            sealed = data.pop(SEALED, None)
            sealed_for: dict[str, str] = data.pop(SEALED_FOR, None) or {}
            originator_id = _uuid(stored_event.originator_id)
            if sealed is not None or sealed_for or not any(f in data for f in personal):
                version = stored_event.originator_version
                opened = self._open(originator_id, version, sealed)
                for owner, blob in sealed_for.items():
                    opened.update(self._open(originator_id, version, blob, _uuid(owner)))
                data.update({f: opened[f] if f in opened else erased_value(f) for f in personal})
            from_version = data.pop("class_version", 1)
            while from_version < getattr(cls, "class_version", 1):
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(data)
                from_version += 1
            event: DomainEventProtocol[UUID] = msgspec.convert(data, cls, strict=False)
            return event
        except msgspec.MsgspecError as e:
            raise MapperDeserialisationError(
                f"cannot decode {stored_event.topic} {stored_event.originator_id}"
                f"@{stored_event.originator_version}: {e}"
            ) from e

    def _open(
        self, originator_id: UUID, version: int, sealed: str | None, owner: UUID | None = None
    ) -> dict[str, Any]:
        """The fields in ``sealed`` (under the stream's key, or ``owner``'s); none if erased."""
        if sealed is None:
            return {}
        key = self.keys.key(originator_id if owner is None else owner)
        if key is None:
            return {}
        raw = base64.b64decode(sealed)
        plain: dict[str, Any] = msgspec.json.decode(
            AESGCM(key).decrypt(raw[:12], raw[12:], _aad(originator_id, version, owner))
        )
        return plain


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
