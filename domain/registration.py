"""Who is this? The pure decision behind registering a customer from a set of identities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from domain.errors import IdentityConflict
from domain.values import Identity


@dataclass(frozen=True)
class NewCustomer:
    """Nobody holds any of the identities: register a new customer holding all of them."""

    identities: tuple[Identity, ...]


@dataclass(frozen=True)
class Matched:
    """The identities known so far all belong to ``customer_id``; link the rest to it."""

    customer_id: UUID
    new_identities: tuple[Identity, ...]


Decision = NewCustomer | Matched


def decide_registration(requested: Sequence[Identity], owners: Mapping[Identity, UUID]) -> Decision:
    """Decide from the current owner of each requested identity (absent = unclaimed).

    Identities owned by two different customers cannot be decided here: that is a merge, which is
    an explicit command, so it is refused with :class:`IdentityConflict`.
    """
    unique = tuple(dict.fromkeys(requested))
    holders = {owners[i] for i in unique if i in owners}
    if len(holders) > 1:
        raise IdentityConflict(sorted(holders))
    if not holders:
        return NewCustomer(unique)
    (holder,) = holders
    return Matched(holder, tuple(i for i in unique if i not in owners))
