"""Expiry dates of lots: every mode, time zones, DST, yearly clearing across a year end, and the
same-instant boundary (valid at T - 1 µs, expired at T)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InsufficientPoints
from domain.expiry import active_at, expires_at
from domain.loyalty import Expiry
from domain.points_account import PointsAccount

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
US = timedelta(microseconds=1)


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def test_never_has_no_expiry() -> None:
    assert expires_at(Expiry("never"), datetime(2025, 3, 1, tzinfo=UTC), SHANGHAI) is None


def test_rolling_days_lasts_through_the_end_of_the_days_th_local_day_after_earning() -> None:
    earned = local(SHANGHAI, 2025, 3, 1, 23, 59)
    found = expires_at(Expiry("rolling_days", days=30), earned, SHANGHAI)
    assert found == local(SHANGHAI, 2025, 4, 1, 0, 0)
    assert found is not None
    assert found.tzinfo == UTC


def test_rolling_days_counts_the_local_day_not_the_utc_day() -> None:
    # 2025-03-01 17:00 UTC is already 2 March in Shanghai: the count starts from 2 March.
    earned = datetime(2025, 3, 1, 17, 0, tzinfo=UTC)
    assert expires_at(Expiry("rolling_days", days=1), earned, SHANGHAI) == local(
        SHANGHAI, 2025, 3, 4, 0, 0
    )
    assert expires_at(Expiry("rolling_days", days=1), earned, UTC) == datetime(
        2025, 3, 3, tzinfo=UTC
    )


def test_rolling_days_across_the_spring_dst_change_ends_at_local_midnight() -> None:
    # New York springs forward on 9 March 2025: the day is 23 hours long.
    earned = local(NEW_YORK, 2025, 3, 8, 12, 0)
    found = expires_at(Expiry("rolling_days", days=1), earned, NEW_YORK)
    assert found == local(NEW_YORK, 2025, 3, 10, 0, 0)
    assert found == datetime(2025, 3, 10, 4, 0, tzinfo=UTC)  # EDT, -4h
    before = expires_at(Expiry("rolling_days", days=0), earned, NEW_YORK)
    assert before == datetime(2025, 3, 9, 5, 0, tzinfo=UTC)  # EST, -5h


def test_rolling_days_across_the_autumn_dst_change_ends_at_local_midnight() -> None:
    # New York falls back on 2 November 2025: the day is 25 hours long.
    earned = local(NEW_YORK, 2025, 11, 1, 23, 30)
    found = expires_at(Expiry("rolling_days", days=1), earned, NEW_YORK)
    assert found == datetime(2025, 11, 3, 5, 0, tzinfo=UTC)  # EST again
    assert found is not None
    assert found.astimezone(NEW_YORK).hour == 0


@pytest.mark.parametrize(
    ("period", "periods", "earned", "expected"),
    [
        ("month", 0, (2025, 1, 31, 12), (2025, 2, 1)),
        ("month", 1, (2025, 1, 31, 12), (2025, 3, 1)),
        ("month", 0, (2025, 12, 15, 0), (2026, 1, 1)),
        ("quarter", 0, (2025, 2, 10, 8), (2025, 4, 1)),
        ("quarter", 1, (2025, 11, 10, 8), (2026, 4, 1)),
        ("year", 0, (2025, 6, 30, 8), (2026, 1, 1)),
        ("year", 1, (2025, 6, 30, 8), (2027, 1, 1)),
    ],
)
def test_end_of_period_expires_at_the_start_of_the_period_periods_plus_one_later(
    period: str, periods: int, earned: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    found = expires_at(
        Expiry("end_of_period", period=period, periods=periods), local(SHANGHAI, *earned), SHANGHAI
    )
    assert found == local(SHANGHAI, *expected)


def test_end_of_period_uses_the_local_month_of_earning() -> None:
    # 31 January 20:00 UTC is 1 February in Shanghai: the earning month is February.
    earned = datetime(2025, 1, 31, 20, 0, tzinfo=UTC)
    found = expires_at(Expiry("end_of_period", period="month"), earned, SHANGHAI)
    assert found == local(SHANGHAI, 2025, 3, 1)
    assert expires_at(Expiry("end_of_period", period="month"), earned, NEW_YORK) == local(
        NEW_YORK, 2025, 2, 1
    )


def test_yearly_clearing_clears_on_the_next_date_in_the_same_year() -> None:
    rule = Expiry("yearly_clearing", month=12, day=31)
    assert expires_at(rule, local(SHANGHAI, 2025, 6, 1, 9), SHANGHAI) == local(
        SHANGHAI, 2025, 12, 31
    )


def test_yearly_clearing_across_a_year_end_moves_to_next_years_date() -> None:
    rule = Expiry("yearly_clearing", month=1, day=1)
    # Earned on 31 December, 23:59 local: cleared at the year end, one minute later.
    assert expires_at(rule, local(SHANGHAI, 2025, 12, 31, 23, 59), SHANGHAI) == local(
        SHANGHAI, 2026, 1, 1
    )
    # Earned on 1 January at 00:00 exactly: strictly after, so the next year end.
    assert expires_at(rule, local(SHANGHAI, 2026, 1, 1), SHANGHAI) == local(SHANGHAI, 2027, 1, 1)


def test_yearly_clearing_on_the_clearing_day_itself_moves_to_next_year() -> None:
    rule = Expiry("yearly_clearing", month=12, day=31)
    assert expires_at(rule, local(SHANGHAI, 2025, 12, 31, 10), SHANGHAI) == local(
        SHANGHAI, 2026, 12, 31
    )
    # One microsecond before the clearing instant: cleared at it.
    assert expires_at(rule, local(SHANGHAI, 2025, 12, 31) - US, SHANGHAI) == local(
        SHANGHAI, 2025, 12, 31
    )


def test_yearly_clearing_uses_the_local_year_of_earning_across_time_zones() -> None:
    # 2025-12-31 20:00 UTC: 1 January 2026 in Shanghai, still 2025 in New York.
    earned = datetime(2025, 12, 31, 20, 0, tzinfo=UTC)
    rule = Expiry("yearly_clearing", month=1, day=1)
    assert expires_at(rule, earned, SHANGHAI) == local(SHANGHAI, 2027, 1, 1)
    assert expires_at(rule, earned, NEW_YORK) == local(NEW_YORK, 2026, 1, 1)


def test_a_naive_earning_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        expires_at(Expiry("rolling_days", days=1), datetime(2025, 1, 1), UTC)


def test_active_at_is_exactly_pending_days_later() -> None:
    earned = local(NEW_YORK, 2025, 3, 8, 12, 0)
    assert active_at(0, earned) == earned
    assert active_at(7, earned) - earned == timedelta(days=7)


ZONES = st.sampled_from([SHANGHAI, NEW_YORK, UTC, ZoneInfo("Europe/London")])
RULES = st.one_of(
    st.builds(Expiry, st.just("rolling_days"), days=st.integers(1, 800)),
    st.builds(
        Expiry,
        st.just("end_of_period"),
        period=st.sampled_from(["month", "quarter", "year"]),
        periods=st.integers(0, 5),
    ),
    st.builds(
        Expiry,
        st.just("yearly_clearing"),
        month=st.integers(1, 12),
        day=st.integers(1, 28),
    ),
)


@given(
    rule=RULES,
    tz=ZONES,
    earned=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_expiry_is_a_utc_local_midnight_after_the_earning_instant(
    rule: Expiry, tz: ZoneInfo, earned: datetime
) -> None:
    found = expires_at(rule, earned, tz)
    assert found is not None
    assert found.tzinfo == UTC
    assert found > earned
    local_time = found.astimezone(tz)
    # The local start of a day (00:00, or the transition instant where midnight is skipped).
    assert local_time.hour == 0 or local_time.minute == 0


# -- the same-instant boundary, through the ledger ------------------------------------------


def _account_with_lot_expiring_at(t: datetime) -> PointsAccount:
    earned = t - timedelta(days=10)
    account = PointsAccount.open(uuid4(), "points", at=earned)
    account.earn(
        "lot-1",
        100,
        earned_at=earned,
        at=earned,
        expires_at=t,
        active_at=earned,
        source={"kind": "test"},
        program_version=1,
    )
    return account


def test_a_redemption_one_microsecond_before_expiry_takes_the_lot() -> None:
    t = expires_at(Expiry("yearly_clearing", month=1, day=1), local(SHANGHAI, 2025, 6, 1), SHANGHAI)
    assert t is not None
    account = _account_with_lot_expiring_at(t)

    taken = account.redeem("r-1", 100, at=t - US)

    assert taken == (("lot-1", 100),)
    assert account.totals["expired"] == 0


def test_at_the_expiry_instant_the_lot_is_expired_and_cannot_be_redeemed() -> None:
    t = expires_at(Expiry("yearly_clearing", month=1, day=1), local(SHANGHAI, 2025, 6, 1), SHANGHAI)
    assert t is not None
    account = _account_with_lot_expiring_at(t)
    assert account.available(t - US) == 100
    assert account.available(t) == 0

    with pytest.raises(InsufficientPoints):
        account.redeem("r-1", 1, at=t)
    assert account.expire(t - US, at=t) == 0
    assert account.expire(t, at=t) == 100
    assert account.totals["expired"] == 100
    assert account.totals["redeemed"] == 0
