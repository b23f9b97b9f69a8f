"""Benefits (权益): rights a customer holds through a level or a direct grant, and their use (核销).

One ``BenefitAccount`` per customer (id ``uuid5`` of the customer id) records direct grants, their
revocations and every redemption. Every redemption of a customer is decided on this one stream,
so the event store's optimistic concurrency keeps a quota exact under concurrent redemptions.

What levels grant is not recorded here: the caller passes the level sources in force at the
moment asked about (``level:<group>:<level>``), and the program's ``BenefitRules``. Quotas count
redemptions per local calendar period of the tenant's time zone (weeks start on Monday), across
all sources: one quota per customer per benefit. Times and the time zone are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.benefit_quotas import (
    Grant,
    Holding,
    QuotaUse,
    Redemption,
    default_until,
    holding,
    period_key,
    quota_use,
)
from domain.copying import ContainerCopies
from domain.errors import (
    BenefitDisabled,
    BenefitNotFound,
    BenefitNotHeld,
    BenefitQuotaExhausted,
    ClientIdReused,
    FieldProblem,
    GrantNotFound,
    InvalidInput,
)
from domain.loyalty import BenefitRules

# Fixed forever: benefit account stream ids are derived from it.
BENEFIT_NAMESPACE = UUID("3b8e2f61-7c4d-5a90-b1e6-2d9f0c4a7e15")


def benefit_account_id(customer_id: UUID) -> UUID:
    return uuid5(BENEFIT_NAMESPACE, str(customer_id))


# -- the aggregate ------------------------------------------------------------------------------


class BenefitAccount(ContainerCopies, Aggregate):
    """Direct grants, their revocations and the redemptions of one customer."""

    TOPIC: ClassVar[str] = "membercore.BenefitAccount"

    class Created(Aggregate.Created):
        TOPIC = "membercore.BenefitAccount.Created"

    class Event(Aggregate.Event):
        TOPIC = "membercore.BenefitAccount.Event"

    class Opened(Created):
        """The customer's benefit account was opened (with its first grant or redemption). v1."""

        TOPIC = "membercore.BenefitAccount.Opened"
        customer_id: UUID

    class Granted(Event):
        """A benefit was granted directly, valid from ``valid_from`` until ``until`` (exclusive;
        None: no end). v1."""

        TOPIC = "membercore.BenefitAccount.Granted"
        customer_id: UUID
        grant_id: str
        code: str
        valid_from: datetime
        until: datetime | None
        reason: str
        actor: str

        def apply(self, aggregate: BenefitAccount) -> None:
            aggregate.grants[self.grant_id] = Grant(
                self.grant_id,
                self.code,
                self.valid_from,
                self.until,
                self.reason,
                self.actor,
                self.timestamp,
            )

    class GrantRevoked(Event):
        """A direct grant ends now (before its ``until``). v1."""

        TOPIC = "membercore.BenefitAccount.GrantRevoked"
        customer_id: UUID
        grant_id: str
        reason: str
        actor: str

        def apply(self, aggregate: BenefitAccount) -> None:
            grant = aggregate.grants[self.grant_id]
            aggregate.grants[self.grant_id] = Grant(
                grant.grant_id,
                grant.code,
                grant.valid_from,
                grant.until,
                grant.reason,
                grant.actor,
                grant.granted_at,
                self.timestamp,
                self.reason,
            )

    class Redeemed(Event):
        """A benefit was used (核销) through ``source`` (``level:<group>:<level>`` or
        ``grant:<grant_id>``), counted in the local period ``period_key``, under program
        ``program_version``. v1."""

        TOPIC = "membercore.BenefitAccount.Redeemed"
        customer_id: UUID
        redemption_id: str
        code: str
        source: str
        period_key: str
        at: datetime
        program_version: int
        note: str | None
        actor: str

        def apply(self, aggregate: BenefitAccount) -> None:
            aggregate.redemptions[self.redemption_id] = Redemption(
                len(aggregate.redemptions) + 1,
                self.redemption_id,
                self.code,
                self.source,
                self.period_key,
                self.at,
                self.program_version,
                self.note,
                self.actor,
            )

    def __init__(self, customer_id: UUID) -> None:
        self.customer_id = customer_id
        self.grants: dict[str, Grant] = {}
        # In redemption order (``seq``); keyed by the client's redemption id.
        self.redemptions: dict[str, Redemption] = {}

    @staticmethod
    def id_for(customer_id: UUID) -> UUID:
        return benefit_account_id(customer_id)

    @classmethod
    def open(cls, customer_id: UUID, *, at: datetime) -> BenefitAccount:
        return cls._create(
            cls.Opened, id=benefit_account_id(customer_id), timestamp=at, customer_id=customer_id
        )

    # -- queries -----------------------------------------------------------------------------

    def holding(self, code: str, at: datetime, level_sources: Sequence[str] = ()) -> Holding | None:
        """The customer's holding of ``code`` at ``at`` given the level sources granting it then
        (None: not held)."""
        return holding(self.grants.values(), code, at, level_sources)

    def redemptions_of(self, code: str | None = None) -> list[Redemption]:
        return [r for r in self.redemptions.values() if code is None or r.code == code]

    def quota(self, benefit: BenefitRules, tz: tzinfo, at: datetime) -> QuotaUse | None:
        return quota_use(benefit, self.redemptions.values(), tz, at)

    # -- commands ----------------------------------------------------------------------------

    def grant_benefit(
        self,
        grant_id: str,
        code: str,
        benefit: BenefitRules | None,
        *,
        until: datetime | None,
        reason: str,
        actor: str,
        at: datetime,
    ) -> tuple[Grant, bool]:
        """The command: grant ``code`` (the program's ``benefit``, None when it has none) from
        ``at`` until ``until`` (default: ``at`` + the benefit's ``validity_days``; none without
        them); ``(grant, True)`` when recorded now. A known ``grant_id`` with the same request
        (code, reason, and ``until`` when given) records nothing and answers
        ``(the first grant, False)``, whatever the program says now; with another request it
        is ``ClientIdReused``."""
        existing = self.grants.get(grant_id)
        if existing is not None:
            same = existing.code == code and existing.reason == reason
            if not same or (until is not None and existing.until != until):
                raise ClientIdReused("grant_id", grant_id)
            return existing, False
        if benefit is None:
            raise BenefitNotFound(code)
        end = until if until is not None else default_until(at, benefit.validity_days)
        grant = self.grant(
            grant_id, code, valid_from=at, until=end, reason=reason, actor=actor, at=at
        )
        return grant, True

    def grant(
        self,
        grant_id: str,
        code: str,
        *,
        valid_from: datetime,
        until: datetime | None,
        reason: str,
        actor: str,
        at: datetime,
    ) -> Grant:
        """Record a direct grant of ``code`` (a merge moving grants, or ``grant_benefit``). The
        same ``grant_id`` again records nothing and answers the first grant."""
        existing = self.grants.get(grant_id)
        if existing is not None:
            return existing
        if until is not None and until <= valid_from:
            raise InvalidInput([FieldProblem("until", "must be after the grant starts")])
        self.trigger_event(
            self.Granted,
            customer_id=self.customer_id,
            grant_id=grant_id,
            code=code,
            valid_from=valid_from,
            until=until,
            reason=reason,
            actor=actor,
            timestamp=at,
        )
        return self.grants[grant_id]

    def revoke(self, grant_id: str, *, reason: str, actor: str, at: datetime) -> bool:
        """End a direct grant now; False when it was revoked before (nothing recorded)."""
        grant = self.grants.get(grant_id)
        if grant is None:
            raise GrantNotFound(grant_id)
        if grant.revoked_at is not None:
            return False
        self.trigger_event(
            self.GrantRevoked,
            customer_id=self.customer_id,
            grant_id=grant_id,
            reason=reason,
            actor=actor,
            timestamp=at,
        )
        return True

    def redeem(
        self,
        redemption_id: str,
        benefit: BenefitRules | None,
        *,
        level_sources: Sequence[str],
        tz: tzinfo,
        program_version: int,
        note: str | None,
        actor: str,
        at: datetime,
        code: str | None = None,
    ) -> tuple[Redemption, bool]:
        """Use the benefit ``code`` (default ``benefit.code``; ``benefit``: the program's rules
        for it, None when the program has none) once; ``(redemption, True)`` when recorded now.

        A known ``redemption_id`` with the same request (code and note) records nothing and
        answers ``(the first redemption, False)`` whatever the rules say now; with another
        request it is ``ClientIdReused``. Otherwise, in this order: an unknown benefit is
        refused, then a switched-off one, then one not held at ``at``, then one whose quota for
        the local period of ``at`` is used up. The source used is the first of the holding's.
        """
        if code is None:
            if benefit is None:
                raise TypeError("redeem needs the benefit's rules or its code")
            code = benefit.code
        existing = self.redemptions.get(redemption_id)
        if existing is not None:
            if existing.code != code or existing.note != note:
                raise ClientIdReused("redemption_id", redemption_id)
            return existing, False
        if benefit is None:
            raise BenefitNotFound(code)
        if not benefit.enabled:
            raise BenefitDisabled(benefit.code)
        holding = self.holding(benefit.code, at, level_sources)
        if holding is None:
            raise BenefitNotHeld(benefit.code)
        quota = self.quota(benefit, tz, at)
        if quota is not None and quota.used >= quota.count:
            raise BenefitQuotaExhausted(benefit.code, quota.count, quota.period)
        self.trigger_event(
            self.Redeemed,
            customer_id=self.customer_id,
            redemption_id=redemption_id,
            code=benefit.code,
            source=holding.sources[0],
            period_key=period_key(at, benefit.quota_period, tz),
            at=at,
            program_version=program_version,
            note=note,
            actor=actor,
            timestamp=at,
        )
        return self.redemptions[redemption_id], True
