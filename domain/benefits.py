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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

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
from domain.loyalty import QUOTA_PERIODS, BenefitRules

# Fixed forever: benefit account stream ids are derived from it.
BENEFIT_NAMESPACE = UUID("3b8e2f61-7c4d-5a90-b1e6-2d9f0c4a7e15")


def benefit_account_id(customer_id: UUID) -> UUID:
    return uuid5(BENEFIT_NAMESPACE, str(customer_id))


# -- periods and quotas (pure) ------------------------------------------------------------------


def _local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def period_key(at: datetime, period: str, tz: tzinfo) -> str:
    """The local calendar period ``at`` falls in: ``2026-03-05`` (day), ``2026-W10`` (ISO week,
    Monday first), ``2026-03`` (month), ``2026-Q1`` (quarter), ``2026`` (year), ``lifetime``."""
    d = _local_date(at, tz)
    if period == "day":
        return d.isoformat()
    if period == "week":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{d.year:04d}-{d.month:02d}"
    if period == "quarter":
        return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    if period == "year":
        return f"{d.year:04d}"
    if period == "lifetime":
        return "lifetime"
    raise ValueError(f"unknown quota period {period!r} (one of {', '.join(QUOTA_PERIODS)})")


def _first_day(d: date, period: str) -> date:
    if period == "day":
        return d
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    if period == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    if period == "year":
        return date(d.year, 1, 1)
    raise ValueError(f"unknown quota period {period!r}")


def _next_first_day(first: date, period: str) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    n = first.month - 1 + months
    return date(first.year + n // 12, n % 12 + 1, 1)


def period_bounds(at: datetime, period: str, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The local start (inclusive) and end (exclusive) of the period ``at`` falls in, as aware
    datetimes in ``tz``; ``(None, None)`` for ``lifetime``."""
    if period == "lifetime":
        return None, None
    first = _first_day(_local_date(at, tz), period)
    end = _next_first_day(first, period)
    return datetime.combine(first, time.min, tzinfo=tz), datetime.combine(end, time.min, tzinfo=tz)


@dataclass(frozen=True)
class Grant:
    """A direct grant: held from ``valid_from`` (inclusive) until ``until`` (exclusive, None: no
    end), or until it was revoked (``revoked_at``, exclusive)."""

    grant_id: str
    code: str
    valid_from: datetime
    until: datetime | None
    reason: str
    actor: str
    granted_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    @property
    def source(self) -> str:
        return f"grant:{self.grant_id}"

    @property
    def ends(self) -> datetime | None:
        """When holding ends: the earlier of ``until`` and the revocation."""
        if self.revoked_at is None:
            return self.until
        if self.until is None:
            return self.revoked_at
        return min(self.until, self.revoked_at)

    def valid_at(self, at: datetime) -> bool:
        ends = self.ends
        return self.valid_from <= at and (ends is None or at < ends)


@dataclass(frozen=True)
class Redemption:
    """One use of a benefit; ``seq`` counts the account's redemptions from 1."""

    seq: int
    redemption_id: str
    code: str
    source: str
    period_key: str
    at: datetime
    program_version: int
    note: str | None
    actor: str


def used_in_period(
    redemptions: Iterable[Redemption], code: str, period: str, tz: tzinfo, at: datetime
) -> int:
    """How many redemptions of ``code`` fall in the local period ``at`` falls in.

    Re-keys each redemption by its time under the current period and time zone (not its stored
    key), so a program that changes the period or the zone counts by the rule now in force.
    """
    key = period_key(at, period, tz)
    return sum(1 for r in redemptions if r.code == code and period_key(r.at, period, tz) == key)


@dataclass(frozen=True)
class QuotaUse:
    count: int
    period: str
    used: int
    period_key: str
    resets_at: datetime | None

    @property
    def remaining(self) -> int:
        return max(self.count - self.used, 0)


def quota_use(
    benefit: BenefitRules, redemptions: Iterable[Redemption], tz: tzinfo, at: datetime
) -> QuotaUse | None:
    """The quota of ``benefit`` at ``at`` and how much of it is used (None: unlimited)."""
    if benefit.quota_count is None:
        return None
    period = benefit.quota_period
    used = used_in_period(redemptions, benefit.code, period, tz, at)
    _, end = period_bounds(at, period, tz)
    return QuotaUse(benefit.quota_count, period, used, period_key(at, period, tz), end)


def default_until(valid_from: datetime, validity_days: int | None) -> datetime | None:
    """A direct grant without an explicit end lasts ``validity_days`` (None: no end)."""
    return None if validity_days is None else valid_from + timedelta(days=validity_days)


@dataclass(frozen=True)
class Holding:
    """Why a customer holds a benefit at a moment: its sources, level ones first, then grants
    ending soonest first; ``valid_until``: when the last source ends (None: no known end)."""

    code: str
    sources: tuple[str, ...]
    valid_until: datetime | None


def holding(
    grants: Iterable[Grant], code: str, at: datetime, level_sources: Sequence[str] = ()
) -> Holding | None:
    """Whether and through what ``code`` is held at ``at``: the given level sources, and the
    direct grants of ``code`` valid then (None: not held)."""
    valid = sorted(
        (g for g in grants if g.code == code and g.valid_at(at)),
        key=lambda g: (g.ends is None, g.ends or g.valid_from, g.grant_id),
    )
    sources = (*sorted(level_sources), *(g.source for g in valid))
    if not sources:
        return None
    if level_sources or any(g.ends is None for g in valid):
        return Holding(code, sources, None)
    return Holding(code, sources, max(g.ends for g in valid if g.ends is not None))


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
