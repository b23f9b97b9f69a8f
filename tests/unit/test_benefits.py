"""Benefits: local calendar periods, quota counting, grant validity, BenefitAccount decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from domain.benefit_quotas import (
    Grant,
    Redemption,
    default_until,
    holding,
    period_bounds,
    period_key,
    used_in_period,
)
from domain.benefits import BenefitAccount, GrantNotFound, benefit_account_id
from domain.errors import BenefitDisabled, BenefitNotHeld, BenefitQuotaExhausted, InvalidInput
from domain.loyalty import BenefitRules
from infrastructure.eventstore import MsgspecMapper

SHANGHAI = ZoneInfo("Asia/Shanghai")
CUSTOMER = UUID("982b55cd-79ed-4383-8da3-bc5c9afc6b84")
AT = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
FREE_SHIPPING = BenefitRules("free_shipping", "包邮", quota_count=2, quota_period="month")
BIRTHDAY = BenefitRules("birthday_coupon", "生日券", quota_count=1, quota_period="year")
LOUNGE = BenefitRules("lounge", "贵宾室", enabled=False)
GOLD = "level:consumer:gold"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def replay(events: list[Any]) -> Any:
    aggregate = None
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate


def account() -> BenefitAccount:
    return BenefitAccount.open(CUSTOMER, at=AT)


def redeem(a: BenefitAccount, rid: str, benefit: BenefitRules, at: datetime, **kw: Any) -> Any:
    kw.setdefault("level_sources", [GOLD])
    return a.redeem(rid, benefit, tz=SHANGHAI, program_version=3, note=None, actor="k", at=at, **kw)


# -- periods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "period", "key"),
    [
        # 00:00 in Shanghai is 16:00 UTC the day before.
        (utc(2025, 12, 31, 15, 59, 59), "day", "2025-12-31"),
        (utc(2025, 12, 31, 16, 0, 0), "day", "2026-01-01"),
        # Monday 30 December 2024 starts ISO week 1 of 2025.
        (utc(2024, 12, 29, 15, 59, 59), "week", "2024-W52"),
        (utc(2024, 12, 29, 16, 0, 0), "week", "2025-W01"),
        # Sunday 2026-03-08 23:59 local is still week 10; Monday 00:00 local starts week 11.
        (utc(2026, 3, 8, 15, 59, 59), "week", "2026-W10"),
        (utc(2026, 3, 8, 16, 0, 0), "week", "2026-W11"),
        (utc(2026, 2, 28, 15, 59, 59), "month", "2026-02"),
        (utc(2026, 2, 28, 16, 0, 0), "month", "2026-03"),
        (utc(2026, 3, 31, 15, 59, 59), "quarter", "2026-Q1"),
        (utc(2026, 3, 31, 16, 0, 0), "quarter", "2026-Q2"),
        (utc(2026, 12, 31, 15, 59, 59), "quarter", "2026-Q4"),
        (utc(2026, 12, 31, 16, 0, 0), "year", "2027"),
        (utc(2026, 12, 31, 15, 59, 59), "year", "2026"),
        (utc(1990, 1, 1), "lifetime", "lifetime"),
    ],
)
def test_period_key_is_the_local_calendar_period_in_the_tenant_zone(
    at: datetime, period: str, key: str
) -> None:
    assert period_key(at, period, SHANGHAI) == key


def test_period_key_of_an_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        period_key(AT, "fortnight", SHANGHAI)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", datetime(2026, 3, 11), datetime(2026, 3, 12)),
        ("week", datetime(2026, 3, 9), datetime(2026, 3, 16)),  # Monday to Monday
        ("month", datetime(2026, 3, 1), datetime(2026, 4, 1)),
        ("quarter", datetime(2026, 1, 1), datetime(2026, 4, 1)),
        ("year", datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ],
)
def test_period_bounds_are_local_midnights_with_the_end_exclusive(
    period: str, start: datetime, end: datetime
) -> None:
    at = utc(2026, 3, 10, 16, 30)  # Wednesday 11 March 00:30 in Shanghai

    first, after = period_bounds(at, period, SHANGHAI)

    assert first == start.replace(tzinfo=SHANGHAI)
    assert after == end.replace(tzinfo=SHANGHAI)
    assert first is not None
    assert after is not None
    assert first <= at < after
    assert period_key(after - timedelta(microseconds=1), period, SHANGHAI) == period_key(
        at, period, SHANGHAI
    )
    assert period_key(after, period, SHANGHAI) != period_key(at, period, SHANGHAI)


def test_a_december_quarter_ends_at_the_next_local_new_year() -> None:
    _, end = period_bounds(utc(2026, 11, 20), "quarter", SHANGHAI)

    assert end == datetime(2027, 1, 1, tzinfo=SHANGHAI)


def test_a_lifetime_period_has_no_bounds() -> None:
    assert period_bounds(AT, "lifetime", SHANGHAI) == (None, None)


# -- quota counting -----------------------------------------------------------------------------


def _r(seq: int, code: str, at: datetime, source: str = GOLD) -> Redemption:
    return Redemption(seq, f"r{seq}", code, source, "", at, 1, None, "k")


def test_used_counts_redemptions_of_the_benefit_in_the_local_period_across_sources() -> None:
    redemptions = [
        _r(1, "free_shipping", utc(2026, 2, 28, 15, 0)),  # 23:00 local, February
        _r(2, "free_shipping", utc(2026, 2, 28, 16, 0), "grant:g1"),  # 00:00 local, March
        _r(3, "free_shipping", utc(2026, 3, 20), GOLD),
        _r(4, "birthday_coupon", utc(2026, 3, 20)),
    ]

    march = used_in_period(redemptions, "free_shipping", "month", SHANGHAI, utc(2026, 3, 31))
    february = used_in_period(redemptions, "free_shipping", "month", SHANGHAI, utc(2026, 2, 1))

    assert (march, february) == (2, 1)


def test_used_re_keys_redemptions_under_the_period_in_force() -> None:
    redemptions = [_r(1, "free_shipping", utc(2026, 1, 5)), _r(2, "free_shipping", utc(2026, 3, 5))]

    assert used_in_period(redemptions, "free_shipping", "quarter", SHANGHAI, AT) == 2
    assert used_in_period(redemptions, "free_shipping", "month", SHANGHAI, AT) == 1


def test_the_quota_allows_count_redemptions_per_period_then_refuses_until_the_next() -> None:
    a = account()
    redeem(a, "r1", FREE_SHIPPING, utc(2026, 3, 1))
    redeem(a, "r2", FREE_SHIPPING, utc(2026, 3, 31, 15, 59))  # 23:59 local, 31 March

    with pytest.raises(BenefitQuotaExhausted) as refused:
        redeem(a, "r3", FREE_SHIPPING, utc(2026, 3, 31, 15, 59, 59))
    r4, recorded = redeem(a, "r4", FREE_SHIPPING, utc(2026, 3, 31, 16, 0))  # April, local

    assert (refused.value.quota, refused.value.period) == (2, "month")
    assert recorded
    assert r4.period_key == "2026-04"
    assert a.quota(FREE_SHIPPING, SHANGHAI, utc(2026, 4, 2)).used == 1  # type: ignore[union-attr]


def test_an_unlimited_benefit_has_no_quota_and_never_runs_out() -> None:
    a = account()
    unlimited = BenefitRules("parking", "停车")

    for n in range(5):
        redeem(a, f"r{n}", unlimited, AT)

    assert a.quota(unlimited, SHANGHAI, AT) is None
    assert len(a.redemptions_of("parking")) == 5


# -- grant validity -----------------------------------------------------------------------------


def test_a_grant_is_held_from_valid_from_inclusive_until_until_exclusive() -> None:
    start, end = utc(2026, 3, 1), utc(2026, 4, 1)
    g = Grant("g1", "free_shipping", start, end, "r", "k", start)

    assert not g.valid_at(start - timedelta(microseconds=1))
    assert g.valid_at(start)
    assert g.valid_at(end - timedelta(microseconds=1))
    assert not g.valid_at(end)


def test_a_grant_without_until_never_ends() -> None:
    g = Grant("g1", "free_shipping", AT, None, "r", "k", AT)

    assert g.valid_at(AT + timedelta(days=365 * 50))


def test_a_revoked_grant_ends_at_its_revocation_and_was_held_before_it() -> None:
    a = account()
    a.grant("g1", "free_shipping", valid_from=AT, until=None, reason="r", actor="k", at=AT)
    revoked_at = AT + timedelta(days=3)

    assert a.revoke("g1", reason="mistake", actor="k", at=revoked_at)

    assert a.holding("free_shipping", revoked_at - timedelta(microseconds=1)) is not None
    assert a.holding("free_shipping", revoked_at) is None
    assert a.grants["g1"].ends == revoked_at


def test_revoking_an_already_revoked_grant_records_nothing() -> None:
    a = account()
    a.grant("g1", "free_shipping", valid_from=AT, until=None, reason="r", actor="k", at=AT)
    a.revoke("g1", reason="once", actor="k", at=AT)
    a.collect_events()

    assert not a.revoke("g1", reason="twice", actor="k", at=AT + timedelta(1))
    assert a.collect_events() == []


def test_revoking_an_unknown_grant_is_refused() -> None:
    with pytest.raises(GrantNotFound):
        account().revoke("nope", reason="r", actor="k", at=AT)


def test_a_grant_ending_at_or_before_its_start_is_refused() -> None:
    with pytest.raises(InvalidInput, match="until"):
        account().grant("g1", "x", valid_from=AT, until=AT, reason="r", actor="k", at=AT)


def test_default_until_is_the_start_plus_validity_days_or_no_end() -> None:
    assert default_until(AT, 30) == AT + timedelta(days=30)
    assert default_until(AT, None) is None


def test_the_same_grant_id_again_records_nothing_and_answers_the_first_grant() -> None:
    a = account()
    first = a.grant("g1", "free_shipping", valid_from=AT, until=None, reason="r", actor="k", at=AT)
    a.collect_events()

    again = a.grant("g1", "other", valid_from=AT, until=None, reason="x", actor="k", at=AT)

    assert again == first
    assert a.collect_events() == []


def test_holding_lists_level_sources_first_then_grants_ending_soonest_first() -> None:
    grants = [
        Grant("late", "free_shipping", AT, AT + timedelta(days=9), "r", "k", AT),
        Grant("open", "free_shipping", AT, None, "r", "k", AT),
        Grant("soon", "free_shipping", AT, AT + timedelta(days=2), "r", "k", AT),
        Grant("other", "birthday_coupon", AT, None, "r", "k", AT),
    ]

    h = holding(grants, "free_shipping", AT, ["level:b:x", "level:a:y"])

    assert h is not None
    assert h.sources == ("level:a:y", "level:b:x", "grant:soon", "grant:late", "grant:open")
    assert h.valid_until is None


def test_a_holding_by_grants_with_ends_is_valid_until_the_last_end() -> None:
    grants = [
        Grant("a", "free_shipping", AT, AT + timedelta(days=9), "r", "k", AT),
        Grant("b", "free_shipping", AT, AT + timedelta(days=2), "r", "k", AT),
    ]

    h = holding(grants, "free_shipping", AT)

    assert h is not None
    assert h.valid_until == AT + timedelta(days=9)


# -- redemption decisions -----------------------------------------------------------------------


def test_a_redemption_records_the_source_used_period_and_program_version() -> None:
    a = account()
    a.collect_events()

    r, recorded = redeem(a, "r1", FREE_SHIPPING, AT)

    (event,) = a.collect_events()
    assert recorded
    assert isinstance(event, BenefitAccount.Redeemed)
    assert (event.source, event.period_key, event.program_version) == (GOLD, "2026-03", 3)
    assert (event.customer_id, event.at, event.code) == (CUSTOMER, AT, "free_shipping")
    assert r.seq == 1


def test_a_switched_off_benefit_is_refused_even_when_held() -> None:
    with pytest.raises(BenefitDisabled):
        redeem(account(), "r1", LOUNGE, AT)


def test_a_benefit_not_held_now_is_refused() -> None:
    a = account()
    a.grant(
        "g1", "free_shipping", valid_from=AT, until=AT + timedelta(1), reason="r", actor="k", at=AT
    )

    with pytest.raises(BenefitNotHeld):
        redeem(a, "r1", FREE_SHIPPING, AT + timedelta(days=1), level_sources=[])


def test_a_direct_grant_alone_lets_the_customer_redeem_through_it() -> None:
    a = account()
    a.grant("g1", "free_shipping", valid_from=AT, until=None, reason="r", actor="k", at=AT)

    r, _ = redeem(a, "r1", FREE_SHIPPING, AT, level_sources=[])

    assert r.source == "grant:g1"


def test_the_same_redemption_id_again_records_nothing_and_answers_the_first() -> None:
    a = account()
    first, _ = redeem(a, "r1", BIRTHDAY, AT)
    a.collect_events()

    again, recorded = redeem(a, "r1", BIRTHDAY, AT + timedelta(days=1))

    assert (again, recorded) == (first, False)
    assert a.collect_events() == []


def test_the_account_id_is_a_fixed_uuid5_of_the_customer_id() -> None:
    assert benefit_account_id(CUSTOMER) == BenefitAccount.id_for(CUSTOMER)
    assert benefit_account_id(CUSTOMER).version == 5
    assert benefit_account_id(CUSTOMER) != benefit_account_id(UUID(int=CUSTOMER.int + 1))
    assert account().id == benefit_account_id(CUSTOMER)


def test_replaying_the_events_gives_the_live_state() -> None:
    a = account()
    a.grant("g1", "free_shipping", valid_from=AT, until=None, reason="r", actor="k", at=AT)
    redeem(a, "r1", FREE_SHIPPING, AT + timedelta(hours=1), level_sources=[])
    a.revoke("g1", reason="x", actor="k", at=AT + timedelta(hours=2))

    copy = replay(a.collect_events())

    assert (copy.grants, copy.redemptions, copy.version) == (a.grants, a.redemptions, a.version)


def test_every_benefit_event_round_trips_through_the_mapper_under_its_explicit_topic() -> None:
    a = account()
    a.grant(
        "g1", "free_shipping", valid_from=AT, until=AT + timedelta(9), reason="r", actor="k", at=AT
    )
    redeem(a, "r1", FREE_SHIPPING, AT, level_sources=[])
    a.revoke("g1", reason="x", actor="k", at=AT + timedelta(hours=2))
    events = a.collect_events()
    mapper = MsgspecMapper()

    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]

    assert [type(e) for e in decoded] == [type(e) for e in events]
    assert [mapper.to_stored_event(e).topic for e in events] == [
        "membercore.BenefitAccount.Opened",
        "membercore.BenefitAccount.Granted",
        "membercore.BenefitAccount.Redeemed",
        "membercore.BenefitAccount.GrantRevoked",
    ]
    assert decoded == events
