"""The shared loaders: every handler and query reads aggregates through these.

A loader answers the aggregate (a copy the caller may change), None for an optional one that does
not exist yet, or the typed not-found error for one the request names.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.app import Membercore
from domain.benefits import BenefitAccount, benefit_account_id
from domain.customer import Customer
from domain.errors import CustomerNotFound, MergeNotFound
from domain.level_membership import LevelMembership
from domain.merge import Merge
from domain.points_account import PointsAccount

A = TypeVar("A")


def optional(
    app: Membercore, aggregate_id: UUID, kind: type[A], *, version: int | None = None
) -> A | None:
    """The aggregate ``aggregate_id`` (as of ``version`` when given) if it exists and is a
    ``kind``, else None."""
    try:
        aggregate: Any = app.repository.get(aggregate_id, version=version)
    except AggregateNotFoundError:
        return None
    return aggregate if isinstance(aggregate, kind) else None


def load_customer(app: Membercore, customer_id: UUID) -> Customer:
    customer = optional(app, customer_id, Customer)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer


def active_customer(app: Membercore, customer_id: UUID) -> Customer:
    """A customer that takes commands: 404 for none, 409 merged or erased."""
    customer = load_customer(app, customer_id)
    customer.require_active()
    return customer


def merged_into(app: Membercore, customer_id: UUID) -> str | None:
    """The customer ``customer_id`` was merged into, for reads of a merged-away id (404
    ``customer_not_found`` for no customer)."""
    into = load_customer(app, customer_id).merged_into
    return str(into) if into is not None else None


def load_merge(app: Membercore, merge_id: UUID) -> Merge:
    merge = optional(app, merge_id, Merge)
    if merge is None:
        raise MergeNotFound(merge_id)
    return merge


def points_account(app: Membercore, customer_id: UUID, point_type: str) -> PointsAccount | None:
    return optional(app, PointsAccount.id_for(customer_id, point_type), PointsAccount)


def points_account_or_new(
    app: Membercore, customer_id: UUID, point_type: str, at: datetime
) -> PointsAccount:
    """The customer's account of ``point_type``, opened (unsaved) when it has none yet."""
    account = points_account(app, customer_id, point_type)
    return account or PointsAccount.open(customer_id, point_type, at=at)


def membership(app: Membercore, customer_id: UUID, group: str) -> LevelMembership | None:
    return optional(app, LevelMembership.id_for(customer_id, group), LevelMembership)


def benefit_account(app: Membercore, customer_id: UUID) -> BenefitAccount | None:
    return optional(app, benefit_account_id(customer_id), BenefitAccount)


def many(app: Membercore, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
    """Several aggregates in one read (missing ones left out), each the caller's own copy."""
    return app.get_many(aggregate_ids)
