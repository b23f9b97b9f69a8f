"""The points account: burn order, holds and their timeouts, expiry, reversal policies and debt,
redemption reversals, adjustments, and replay (popo application and the msgspec mapper) equal to
the live aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application

from domain.errors import (
    ClientIdReused,
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotFound,
    InsufficientPoints,
    InvalidInput,
    RedemptionNotFound,
    ReversalExceedsRedemption,
    ReversalWindowClosed,
)
from domain.points_account import PointsAccount
from infrastructure.eventstore import MsgspecMapper

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def new_account() -> PointsAccount:
    return PointsAccount.open(uuid4(), "points", at=T0)


def earn(
    account: PointsAccount,
    lot_id: str,
    points: int,
    *,
    earned: datetime = T0,
    expires: datetime | None = None,
    active: datetime | None = None,
    at: datetime | None = None,
) -> None:
    account.earn(
        lot_id,
        points,
        earned_at=earned,
        at=at or earned,
        expires_at=expires,
        active_at=active or earned,
        source={"kind": "test"},
        program_version=3,
    )


def lot_identity_holds(account: PointsAccount) -> bool:
    return all(
        lot.earned
        == lot.redeemed
        + lot.expired
        + lot.reversed
        + lot.adjusted
        + lot.transferred
        + lot.remaining
        + lot.held
        for lot in (*account.lots.values(), *account.spent_lots.values())
    )


MINUTE = timedelta(minutes=1)


def test_account_id_is_deterministic_per_customer_and_point_type() -> None:
    # Stored streams are found by these ids: the same customer and type give the same id in
    # every process and release, so the values are pinned.
    known = UUID("6f1c2d3e-0000-4000-8000-000000000001")
    assert PointsAccount.id_for(known, "points") == UUID("bccaaf60-5e3c-50d9-9dbc-04046821989f")
    assert PointsAccount.id_for(known, "growth") == UUID("c153bd67-19a7-57ed-898d-983f3041fdb0")
    customer = uuid4()
    assert PointsAccount.id_for(customer, "points") != PointsAccount.id_for(customer, "growth")
    assert PointsAccount.open(customer, "growth", at=T0).id == PointsAccount.id_for(
        customer, "growth"
    )


def test_redemption_takes_soonest_expiry_first_then_earliest_earned_then_lot_id() -> None:
    account = new_account()
    earn(account, "c-never", 10, earned=T0)
    earn(account, "b-late", 10, earned=T0, expires=T0 + 30 * DAY)
    earn(account, "z-soon-old", 10, earned=T0 - 5 * DAY, expires=T0 + 10 * DAY, at=T0)
    earn(account, "a-soon-new", 10, earned=T0, expires=T0 + 10 * DAY)
    earn(account, "y-soon-new", 10, earned=T0, expires=T0 + 10 * DAY)

    taken = account.redeem("r", 45, at=T0 + DAY)

    assert taken == (
        ("z-soon-old", 10),
        ("a-soon-new", 10),
        ("y-soon-new", 10),
        ("b-late", 10),
        ("c-never", 5),
    )
    assert account.available(T0 + DAY) == 5


def test_oldest_first_burn_order_takes_the_earliest_earned_lot_whatever_its_expiry() -> None:
    account = new_account()
    earn(account, "old", 10, earned=T0 - 9 * DAY, expires=T0 + 90 * DAY, at=T0)
    earn(account, "new", 10, earned=T0, expires=T0 + 2 * DAY)

    assert account.redeem("r", 12, at=T0, burn_order="oldest_first") == (
        ("old", 10),
        ("new", 2),
    )


def test_redeeming_more_than_available_is_refused_and_records_nothing() -> None:
    account = new_account()
    earn(account, "l1", 10)
    account.collect_events()

    with pytest.raises(InsufficientPoints) as e:
        account.redeem("r", 11, at=T0)

    assert (e.value.available, e.value.requested) == (10, 11)
    assert account.collect_events() == []


def test_pending_points_are_not_available_until_their_activation() -> None:
    account = new_account()
    earn(account, "l1", 50, active=T0 + 7 * DAY)

    assert account.available(T0 + DAY) == 0
    assert account.pending(T0 + DAY) == 50
    with pytest.raises(InsufficientPoints):
        account.redeem("r", 1, at=T0 + DAY)
    assert account.available(T0 + 7 * DAY) == 50
    assert account.pending(T0 + 7 * DAY) == 0


def test_fully_consumed_lots_leave_the_state_and_totals_remain() -> None:
    account = new_account()
    earn(account, "l1", 10)
    earn(account, "l2", 10)

    account.redeem("r", 15, at=T0)

    assert set(account.lots) == {"l2"}
    assert account.totals["earned"] == 20
    assert account.totals["redeemed"] == 15


def test_holds_count_against_available_and_the_sixth_hold_of_1000_on_5000_is_refused() -> None:
    account = new_account()
    earn(account, "l1", 5000)
    for n in range(5):
        account.hold(f"h{n}", 1000, at=T0)
    assert account.available(T0) == 0
    assert account.held == 5000

    with pytest.raises(InsufficientPoints):
        account.hold("h5", 1000, at=T0)


def test_capture_spends_the_hold_and_a_second_capture_or_release_is_refused() -> None:
    account = new_account()
    earn(account, "l1", 100)
    account.hold("h", 40, at=T0)

    account.capture("h", at=T0 + DAY)

    assert account.held == 0
    assert account.available(T0 + DAY) == 60
    assert account.totals["redeemed"] == 40
    with pytest.raises(HoldAlreadyResolved):
        account.capture("h", at=T0 + DAY)
    with pytest.raises(HoldAlreadyResolved):
        account.release("h", at=T0 + DAY)


def test_release_returns_points_to_the_same_lots_and_is_refused_the_second_time() -> None:
    account = new_account()
    earn(account, "soon", 30, expires=T0 + 10 * DAY)
    earn(account, "late", 30, expires=T0 + 90 * DAY)
    held = account.hold("h", 40, at=T0)
    assert held == (("soon", 30), ("late", 10))

    account.release("h", at=T0 + DAY)

    assert account.lots["soon"].remaining == 30
    assert account.lots["late"].remaining == 30
    assert account.available(T0 + DAY) == 60
    with pytest.raises(HoldAlreadyResolved):
        account.release("h", at=T0 + DAY)


def test_an_unknown_hold_cannot_be_captured() -> None:
    with pytest.raises(HoldNotFound):
        new_account().capture("nope", at=T0)


def test_held_points_do_not_expire_while_held_and_expire_at_once_when_released_late() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 10 * DAY)
    account.hold("h", 60, at=T0)

    assert account.expire(T0 + 20 * DAY, at=T0 + 20 * DAY) == 40
    assert account.held == 60
    account.release("h", at=T0 + 20 * DAY)

    assert account.totals["expired"] == 100
    assert account.available(T0 + 20 * DAY) == 0
    assert account.lots == {}


def test_expire_is_idempotent_one_expired_event_per_lot() -> None:
    account = new_account()
    earn(account, "l1", 10, expires=T0 + DAY)
    earn(account, "l2", 20, expires=T0 + 2 * DAY)
    account.collect_events()

    assert account.expire(T0 + 3 * DAY, at=T0 + 3 * DAY) == 30
    assert account.expire(T0 + 3 * DAY, at=T0 + 3 * DAY) == 0

    (expired,) = account.collect_events()
    assert isinstance(expired, PointsAccount.Expired)
    assert expired.lots == (("l1", 10), ("l2", 20))


def test_every_command_first_expires_what_is_due_so_no_point_is_redeemed_after_expiry() -> None:
    account = new_account()
    earn(account, "l1", 10, expires=T0 + DAY)
    earn(account, "l2", 10, expires=T0 + 9 * DAY)
    account.collect_events()

    account.redeem("r", 5, at=T0 + DAY)

    expired, redeemed = account.collect_events()
    assert isinstance(expired, PointsAccount.Expired)
    assert expired.lots == (("l1", 10),)
    assert isinstance(redeemed, PointsAccount.Redeemed)
    assert redeemed.lots == (("l2", 5),)


def test_a_back_dated_earn_already_past_expiry_expires_in_the_same_command() -> None:
    account = new_account()
    account.collect_events()
    earn(account, "old", 25, earned=T0 - 400 * DAY, expires=T0 - 35 * DAY, at=T0)

    earned, expired = account.collect_events()
    assert isinstance(earned, PointsAccount.Earned)
    assert earned.earned_at == T0 - 400 * DAY
    assert earned.timestamp == T0
    assert isinstance(expired, PointsAccount.Expired)
    assert account.available(T0) == 0
    assert account.totals["expired"] == 25


def test_reversal_takes_the_lot_first_and_the_rest_from_other_lots() -> None:
    account = new_account()
    earn(account, "order-1", 100, expires=T0 + 9 * DAY)
    earn(account, "order-2", 100, expires=T0 + 99 * DAY)
    account.redeem("r", 70, at=T0)  # takes 70 of order-1

    reversal = account.reverse(
        "order-1", 100, reversal_id="x", policy="negative", burn_order="soonest_expiry", at=T0
    )

    assert (reversal.taken_from_lot, reversal.taken_elsewhere, reversal.debt) == (30, 70, 0)
    assert account.available(T0) == 30
    assert lot_identity_holds(account)


def test_negative_policy_leaves_debt_and_available_goes_below_zero() -> None:
    account = new_account()
    earn(account, "order-1", 100)
    account.redeem("r", 80, at=T0)

    reversal = account.reverse(
        "order-1", 100, reversal_id="x", policy="negative", burn_order="soonest_expiry", at=T0
    )

    assert (reversal.taken_from_lot, reversal.taken_elsewhere) == (20, 0)
    assert (reversal.debt, reversal.shortfall) == (80, 0)
    assert account.debt == 80
    assert account.available(T0) == -80
    with pytest.raises(InsufficientPoints):
        account.redeem("r2", 1, at=T0)


def test_clamp_policy_records_the_shortfall_and_never_goes_below_zero() -> None:
    account = new_account()
    earn(account, "order-1", 100)
    account.redeem("r", 80, at=T0)

    reversal = account.reverse(
        "order-1", 100, reversal_id="x", policy="clamp", burn_order="soonest_expiry", at=T0
    )

    assert (reversal.debt, reversal.shortfall) == (0, 80)
    assert account.available(T0) == 0
    assert account.totals["shortfall"] == 80
    (event,) = [e for e in account.collect_events() if isinstance(e, PointsAccount.Reversed)]
    assert event.shortfall == 80


def test_debt_is_repaid_from_later_earns_first() -> None:
    account = new_account()
    earn(account, "order-1", 100)
    account.redeem("r", 100, at=T0)
    account.reverse(
        "order-1", 100, reversal_id="x", policy="negative", burn_order="soonest_expiry", at=T0
    )
    assert account.debt == 100

    earn(account, "order-2", 60, at=T0 + DAY, earned=T0 + DAY)
    assert account.debt == 40
    assert account.available(T0 + DAY) == -40
    earn(account, "order-3", 70, at=T0 + DAY, earned=T0 + DAY)

    assert account.debt == 0
    assert account.available(T0 + DAY) == 30
    assert account.lots["order-3"].reversed == 40
    assert account.totals["debt_repaid"] == 100
    assert lot_identity_holds(account)


def test_reversal_of_a_pending_lot_takes_its_pending_points() -> None:
    account = new_account()
    earn(account, "order-1", 50, active=T0 + 7 * DAY)

    reversal = account.reverse(
        "order-1", 50, reversal_id="x", policy="clamp", burn_order="soonest_expiry", at=T0
    )

    assert reversal.taken_from_lot == 50
    assert account.pending(T0) == 0


def test_positive_adjustment_adds_a_lot_and_negative_consumes_like_a_redemption() -> None:
    account = new_account()
    earn(account, "l1", 10, expires=T0 + 5 * DAY)

    account.adjust("a1", 20, reason="goodwill", actor="key-1", at=T0, expires_at=T0 + 50 * DAY)
    taken = account.adjust("a2", -15, reason="fraud", actor="key-1", at=T0, expires_at=None)

    assert taken == (("l1", 10), ("adjustment:a1", 5))
    assert account.available(T0) == 15
    assert account.lots["adjustment:a1"].adjusted == 5
    assert (account.totals["adjusted_in"], account.totals["adjusted_out"]) == (20, 15)


def test_an_adjustment_needs_a_reason_an_actor_and_a_non_zero_amount() -> None:
    account = new_account()
    with pytest.raises(InvalidInput) as e:
        account.adjust("a", 0, reason=" ", actor="", at=T0, expires_at=None)
    assert {p.field for p in e.value.problems} == {"amount", "reason", "actor"}


def test_a_negative_adjustment_beyond_available_is_refused() -> None:
    account = new_account()
    earn(account, "l1", 10)
    with pytest.raises(InsufficientPoints):
        account.adjust("a", -11, reason="fix", actor="k", at=T0, expires_at=None)


# -- hold timeouts ----------------------------------------------------------------------------


def test_a_hold_past_its_timeout_counts_as_released_before_anything_settles_it() -> None:
    account = new_account()
    earn(account, "l1", 100)
    account.hold("h", 40, at=T0, expires_at=T0 + 30 * MINUTE)

    assert account.available(T0 + 30 * MINUTE - timedelta(microseconds=1)) == 60
    assert account.held_at(T0 + 29 * MINUTE) == 40
    assert account.available(T0 + 30 * MINUTE) == 100
    assert account.held_at(T0 + 30 * MINUTE) == 0
    assert account.held == 40  # nothing recorded the release yet


@pytest.mark.parametrize("late", [timedelta(0), DAY])
def test_capturing_or_releasing_a_hold_at_or_after_its_timeout_is_refused_and_records_nothing(
    late: timedelta,
) -> None:
    account = new_account()
    earn(account, "l1", 100)
    account.hold("h", 40, at=T0, expires_at=T0 + 30 * MINUTE)
    account.collect_events()

    for resolve in (account.capture, account.release):
        with pytest.raises(HoldExpired) as refused:
            resolve("h", at=T0 + 30 * MINUTE + late)
        assert refused.value.expires_at == T0 + 30 * MINUTE

    assert account.collect_events() == []


def test_a_hold_captured_just_before_its_timeout_is_spent() -> None:
    account = new_account()
    earn(account, "l1", 100)
    account.hold("h", 40, at=T0, expires_at=T0 + 30 * MINUTE)

    account.capture("h", at=T0 + 30 * MINUTE - timedelta(microseconds=1))

    assert account.totals["redeemed"] == 40
    assert account.resolved_holds == {"h": "captured"}


def test_settle_releases_a_timed_out_hold_once_at_its_timeout_and_again_changes_nothing() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 10 * DAY)
    account.hold("h1", 30, at=T0, expires_at=T0 + 2 * MINUTE)
    account.hold("h2", 20, at=T0, expires_at=T0 + MINUTE)
    account.hold("h3", 10, at=T0, expires_at=T0 + DAY)
    account.collect_events()

    settled = account.settle(T0 + 5 * MINUTE, at=T0 + 2 * DAY)
    again = account.settle(T0 + 5 * MINUTE, at=T0 + 2 * DAY)

    events = account.collect_events()
    assert [(type(e), e.hold_id, e.expires_at) for e in events] == [
        (PointsAccount.HoldExpired, "h2", T0 + MINUTE),
        (PointsAccount.HoldExpired, "h1", T0 + 2 * MINUTE),
    ]
    assert (settled.holds, settled.points, again.holds, again.points) == (2, 0, 0, 0)
    assert account.resolved_holds == {"h1": "expired", "h2": "expired"}
    assert account.lots["l1"].remaining == 90
    assert account.held == 10  # h3 times out a day after the hold, after this as_of
    with pytest.raises(HoldExpired):
        account.capture("h1", at=T0 + 3 * MINUTE)


def test_a_hold_timing_out_after_its_lot_expired_gives_back_points_that_expire_at_once() -> None:
    account = new_account()
    earn(account, "soon", 50, expires=T0 + 10 * MINUTE)
    earn(account, "late", 50, expires=T0 + 10 * DAY)
    account.hold("h", 70, at=T0, expires_at=T0 + 30 * MINUTE)
    account.collect_events()

    settled = account.settle(T0 + 30 * MINUTE, at=T0 + 30 * MINUTE)

    released, expired = account.collect_events()
    assert isinstance(released, PointsAccount.HoldExpired)
    assert released.lots == (("soon", 50), ("late", 20))
    assert isinstance(expired, PointsAccount.Expired)
    assert expired.lots == (("soon", 50),)
    assert (settled.holds, settled.lots, settled.points) == (1, 1, 50)
    assert account.available(T0 + 30 * MINUTE) == 50
    assert lot_identity_holds(account)


def test_capture_within_the_timeout_spends_points_of_a_lot_that_expired_while_held() -> None:
    account = new_account()
    earn(account, "soon", 50, expires=T0 + 10 * MINUTE)
    account.hold("h", 50, at=T0, expires_at=T0 + 30 * MINUTE)

    account.capture("h", at=T0 + 20 * MINUTE)

    assert account.totals["redeemed"] == 50
    assert account.totals["expired"] == 0


def test_the_next_command_on_the_account_first_releases_the_timed_out_holds() -> None:
    account = new_account()
    earn(account, "l1", 100)
    account.hold("h", 100, at=T0, expires_at=T0 + MINUTE)
    account.collect_events()

    account.redeem("r", 100, at=T0 + DAY)

    kinds = [type(e) for e in account.collect_events()]
    assert kinds == [PointsAccount.HoldExpired, PointsAccount.Redeemed]


def test_a_hold_timeout_must_be_after_the_hold() -> None:
    account = new_account()
    earn(account, "l1", 100)
    with pytest.raises(InvalidInput):
        account.hold("h", 10, at=T0, expires_at=T0)


# -- redemption reversals -----------------------------------------------------------------------


def test_a_full_reversal_gives_every_lot_back_what_the_redemption_took_with_its_expiry() -> None:
    account = new_account()
    earn(account, "soon", 30, expires=T0 + 10 * DAY)
    earn(account, "late", 50, expires=T0 + 90 * DAY)
    account.redeem("r", 60, at=T0)
    assert "soon" not in account.lots

    restored = account.reverse_redemption("r", None, reversal_id="v", at=T0 + DAY)

    assert restored == (("late", 30), ("soon", 30))
    assert account.lots["soon"].remaining == 30
    assert account.lots["soon"].expires_at == T0 + 10 * DAY
    assert account.lots["late"].remaining == 50
    assert (account.lots["soon"].redeemed, account.lots["late"].redeemed) == (0, 0)
    assert account.spent_lots == {}
    assert account.available(T0 + DAY) == 80
    assert (account.totals["redeemed"], account.totals["restored"]) == (60, 60)


def test_partial_reversals_take_the_last_taken_lots_first_and_never_exceed_the_redemption() -> None:
    account = new_account()
    earn(account, "a", 30, expires=T0 + 10 * DAY)
    earn(account, "b", 30, expires=T0 + 20 * DAY)
    earn(account, "c", 30, expires=T0 + 30 * DAY)
    account.redeem("r", 80, at=T0)  # a 30, b 30, c 20

    first = account.reverse_redemption("r", 25, reversal_id="v1", at=T0)
    second = account.reverse_redemption("r", 25, reversal_id="v2", at=T0)

    assert first == (("c", 20), ("b", 5))
    assert second == (("b", 25),)
    assert account.redemptions["r"].reversed == 50
    with pytest.raises(ReversalExceedsRedemption) as refused:
        account.reverse_redemption("r", 31, reversal_id="v3", at=T0)
    assert (refused.value.requested, refused.value.reversible) == (31, 30)
    assert account.reverse_redemption("r", None, reversal_id="v4", at=T0) == (("a", 30),)
    with pytest.raises(ReversalExceedsRedemption):
        account.reverse_redemption("r", None, reversal_id="v5", at=T0)
    assert account.available(T0) == 90
    assert lot_identity_holds(account)


def test_a_restored_lot_already_past_its_expiry_expires_at_once_in_its_own_entry() -> None:
    account = new_account()
    earn(account, "soon", 30, expires=T0 + DAY)
    earn(account, "late", 30, expires=T0 + 90 * DAY)
    account.redeem("r", 40, at=T0)
    account.collect_events()

    account.reverse_redemption("r", None, reversal_id="v", at=T0 + 2 * DAY)

    reversed_, expired = account.collect_events()
    assert isinstance(reversed_, PointsAccount.RedemptionReversed)
    assert reversed_.lots == (("late", 10), ("soon", 30))
    assert isinstance(expired, PointsAccount.Expired)
    assert expired.lots == (("soon", 30),)
    assert "soon" not in account.lots
    assert account.available(T0 + 2 * DAY) == 30
    assert account.totals["expired"] == 30
    assert lot_identity_holds(account)


def test_reversing_an_unknown_redemption_or_reusing_a_reversal_id_is_refused() -> None:
    account = new_account()
    earn(account, "l1", 30)
    account.redeem("r", 10, at=T0)
    account.reverse_redemption("r", 5, reversal_id="v", at=T0)
    account.collect_events()

    with pytest.raises(RedemptionNotFound):
        account.reverse_redemption("nope", 1, reversal_id="w", at=T0)
    with pytest.raises(ClientIdReused) as reused:
        account.reverse_redemption("r", 1, reversal_id="v", at=T0)
    assert reused.value.field == "reversal_id"
    assert account.collect_events() == []


def test_repeating_a_client_id_with_the_same_request_answers_it_again_and_records_nothing() -> None:
    account = new_account()
    earn(account, "l1", 30)
    earn(account, "l2", 30)
    took = account.redeem("r", 40, at=T0)
    held = account.hold("h", 5, at=T0, expires_at=T0 + DAY)
    given = account.reverse_redemption("r", 10, reversal_id="v", at=T0)
    account.adjust("a", -3, reason="fix", actor="ops", at=T0, expires_at=None)
    account.collect_events()

    assert account.redeem("r", 40, at=T0) == took
    assert account.hold("h", 5, at=T0, expires_at=T0 + DAY) == held
    assert account.reverse_redemption("r", 10, reversal_id="v", at=T0) == given
    assert account.reverse_redemption("r", None, reversal_id="v", at=T0) == given
    assert account.adjust("a", -3, reason="fix", actor="ops", at=T0, expires_at=None) != ()
    assert account.collect_events() == []


@pytest.mark.parametrize(
    "again",
    [
        lambda a: a.redeem("r", 41, at=T0),
        lambda a: a.hold("h", 6, at=T0, expires_at=T0 + DAY),
        lambda a: a.reverse_redemption("r", 9, reversal_id="v", at=T0),
        lambda a: a.adjust("a", -4, reason="fix", actor="ops", at=T0, expires_at=None),
        lambda a: a.adjust("up", 5, reason="fix", actor="ops", at=T0, expires_at=None),
    ],
    ids=["redeem", "hold", "reversal", "adjustment", "adjustment up"],
)
def test_repeating_a_client_id_with_another_request_is_refused_as_reused(again: Any) -> None:
    account = new_account()
    earn(account, "l1", 60)
    account.redeem("r", 40, at=T0)
    account.hold("h", 5, at=T0, expires_at=T0 + DAY)
    account.reverse_redemption("r", 10, reversal_id="v", at=T0)
    account.adjust("a", -3, reason="fix", actor="ops", at=T0, expires_at=None)
    account.adjust("up", 4, reason="fix", actor="ops", at=T0, expires_at=None)
    account.collect_events()

    with pytest.raises(ClientIdReused):
        again(account)
    assert account.collect_events() == []


def test_a_lot_a_merge_undo_brings_back_continues_the_consumed_lot_a_reversal_restores() -> None:
    source, survivor = new_account(), new_account()
    earn(source, "x", 100, expires=T0 + 90 * DAY)
    source.redeem("r", 30, at=T0)
    source.transfer_out("merge:m", survivor, at=T0 + DAY, closes=True)
    assert "x" in source.spent_lots

    survivor.transfer_out("unmerge:m", source, at=T0 + 2 * DAY, lot_ids=["x"], reopens=True)
    source.reverse_redemption("r", None, reversal_id="v", at=T0 + 3 * DAY)

    lot = source.lots["x"]
    assert (lot.earned, lot.redeemed, lot.transferred, lot.remaining) == (100, 0, 0, 100)
    assert source.spent_lots == {}
    assert lot_identity_holds(source)


def test_another_lot_of_the_same_id_as_a_consumed_one_arrives_under_a_new_id() -> None:
    survivor, source = new_account(), new_account()
    earn(survivor, "adjustment:a", 10, expires=T0 + 10 * DAY)
    survivor.redeem("r", 10, at=T0)
    earn(source, "adjustment:a", 20, expires=T0 + 20 * DAY)

    source.transfer_out("merge:m", survivor, at=T0 + DAY, closes=True)

    assert survivor.lots["adjustment:a@merge:m"].remaining == 20
    assert survivor.spent_lots["adjustment:a"].redeemed == 10
    survivor.reverse_redemption("r", None, reversal_id="v", at=T0 + DAY)
    assert survivor.lots["adjustment:a"].remaining == 10
    assert lot_identity_holds(survivor)


def test_a_captured_hold_is_not_a_redemption_that_can_be_reversed() -> None:
    account = new_account()
    earn(account, "l1", 30)
    account.hold("h", 10, at=T0, expires_at=T0 + DAY)
    account.capture("h", at=T0)

    with pytest.raises(RedemptionNotFound):
        account.reverse_redemption("h", None, reversal_id="v", at=T0)


def test_a_closing_transfer_releases_open_holds_so_their_points_move_with_the_lots() -> None:
    source, survivor = new_account(), new_account()
    earn(source, "x", 1000, expires=T0 + 90 * DAY)
    source.hold("h", 300, at=T0, expires_at=T0 + DAY)

    moved = source.transfer_out("merge:m", survivor, at=T0 + DAY / 2, closes=True)

    assert moved == 1000
    assert source.holds == {}
    assert source.resolved_holds["h"] == "released"
    assert survivor.available(T0 + DAY) == 1000
    # Its timeout later finds nothing stranded on the closed account.
    assert source.timed_out_holds(T0 + 2 * DAY) == []
    assert lot_identity_holds(source)
    assert lot_identity_holds(survivor)


def test_a_transfer_that_does_not_close_leaves_holds_where_they_were_made() -> None:
    giving, taking = new_account(), new_account()
    earn(giving, "x", 1000)
    giving.hold("h", 300, at=T0, expires_at=T0 + DAY)

    moved = giving.transfer_out("unmerge:m", taking, at=T0, lot_ids=["x"])

    assert moved == 700
    assert set(giving.holds) == {"h"}


def _refund_after_spending_then_reverse_the_redemption(policy: str) -> PointsAccount:
    account = new_account()
    earn(account, "order:pos:1", 100, expires=T0 + 90 * DAY)
    account.redeem("r", 100, at=T0)
    account.reverse(
        "order:pos:1", 100, reversal_id="refund:1", policy=policy,
        burn_order="soonest_expiry", at=T0 + DAY,
    )  # fmt: skip
    account.reverse_redemption("r", None, reversal_id="v", at=T0 + 2 * DAY)
    return account


def test_a_reversal_of_spent_points_a_clamp_refund_wrote_off_gives_the_customer_nothing() -> None:
    account = _refund_after_spending_then_reverse_the_redemption("clamp")

    assert account.available(T0 + 2 * DAY) == 0
    assert account.written_off == {}
    lot = account.spent_lots.get("order:pos:1") or account.lots.get("order:pos:1")
    assert lot is None or lot.remaining == 0
    assert account.totals["shortfall"] == 0  # written off, then recovered in full
    assert account.totals["reversed"] == 100
    assert lot_identity_holds(account)


def test_a_reversal_of_spent_points_repays_the_debt_a_negative_refund_left() -> None:
    account = _refund_after_spending_then_reverse_the_redemption("negative")

    assert (account.available(T0 + 2 * DAY), account.debt) == (0, 0)
    # Nothing is left to expire into a negative balance later.
    account.settle(T0 + 100 * DAY, at=T0 + 100 * DAY)
    assert (account.available(T0 + 100 * DAY), account.debt) == (0, 0)
    assert account.totals["debt_repaid"] == 100
    assert lot_identity_holds(account)


def test_a_partial_write_off_is_reclaimed_and_the_rest_comes_back_to_the_customer() -> None:
    account = new_account()
    earn(account, "order:pos:1", 100, expires=T0 + 90 * DAY)
    account.redeem("r", 100, at=T0)
    account.reverse(
        "order:pos:1", 40, reversal_id="refund:1", policy="clamp",
        burn_order="soonest_expiry", at=T0 + DAY,
    )  # fmt: skip

    account.reverse_redemption("r", None, reversal_id="v", at=T0 + 2 * DAY)

    assert account.available(T0 + 2 * DAY) == 60
    lot = account.lots["order:pos:1"]
    assert (lot.remaining, lot.reversed, lot.redeemed) == (60, 40, 0)
    assert lot_identity_holds(account)


def test_replay_of_a_reversal_that_reclaims_and_repays_equals_the_live_account() -> None:
    live = _refund_after_spending_then_reverse_the_redemption("negative")
    events = live.collect_events()
    mapper = MsgspecMapper()
    replayed = None
    for event in events:
        decoded = mapper.to_domain_event(mapper.to_stored_event(event))
        replayed = decoded.mutate(replayed)  # type: ignore[attr-defined]

    assert replayed is not None
    assert vars(replayed) | {"_pending_events": []} == vars(live) | {"_pending_events": []}


def test_a_redemption_is_reversible_until_its_window_closes_then_refused() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 365 * DAY)
    account.redeem("r", 60, at=T0, reversible_until=T0 + 30 * DAY)

    account.reverse_redemption("r", 10, reversal_id="v1", at=T0 + 30 * DAY)  # the last instant
    with pytest.raises(ReversalWindowClosed) as closed:
        account.reverse_redemption("r", 10, reversal_id="v2", at=T0 + 30 * DAY + US)

    assert closed.value.until == T0 + 30 * DAY
    assert account.available(T0 + 31 * DAY) == 50


def test_a_closed_window_lets_the_account_forget_the_consumed_lot_it_kept() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 365 * DAY)
    earn(account, "l2", 50, expires=T0 + 365 * DAY)
    account.redeem("r", 100, at=T0, reversible_until=T0 + 30 * DAY)
    assert "l1" in account.spent_lots

    account.redeem("later", 10, at=T0 + 31 * DAY)  # any event after the window closes it

    assert account.spent_lots == {}
    assert "l1" not in account.reversible
    assert account.windows == []
    with pytest.raises(ReversalWindowClosed):
        account.reverse_redemption("r", None, reversal_id="v", at=T0 + 32 * DAY)
    with pytest.raises(ClientIdReused):  # the id stays used
        account.redeem("r", 1, at=T0 + 32 * DAY)


def test_a_command_stamped_before_the_last_event_still_finds_the_window_closed() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 365 * DAY)
    account.redeem("r", 40, at=T0, reversible_until=T0 + DAY)
    account.redeem("later", 10, at=T0 + 2 * DAY)

    with pytest.raises(ReversalWindowClosed):
        account.reverse_redemption("r", None, reversal_id="v", at=T0)


def test_redemptions_recorded_before_windows_stay_reversible() -> None:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 3650 * DAY)
    account.redeem("r", 40, at=T0)  # no reversible_until, as older events

    account.redeem("later", 10, at=T0 + 900 * DAY)
    account.reverse_redemption("r", None, reversal_id="v", at=T0 + 901 * DAY)

    assert account.available(T0 + 901 * DAY) == 90


# -- replay equals live -----------------------------------------------------------------------


def _busy_account() -> PointsAccount:
    account = new_account()
    earn(account, "l1", 100, expires=T0 + 10 * DAY)
    earn(account, "l2", 50, expires=T0 + 40 * DAY, active=T0 + 3 * DAY)
    earn(account, "l3", 70)
    account.redeem("r1", 30, at=T0 + DAY, reason="gift")
    account.hold("h1", 20, at=T0 + DAY)
    account.hold("h2", 10, at=T0 + DAY)
    account.capture("h1", at=T0 + 2 * DAY)
    account.reverse(
        "l3", 80, reversal_id="rf", policy="negative", burn_order="soonest_expiry", at=T0 + 2 * DAY
    )
    account.adjust("a1", 5, reason="sorry", actor="k", at=T0 + 2 * DAY, expires_at=None)
    account.adjust("a2", -5, reason="oops", actor="k", at=T0 + 4 * DAY, expires_at=None)
    account.release("h2", at=T0 + 11 * DAY)
    account.hold("h3", 5, at=T0 + 11 * DAY, expires_at=T0 + 11 * DAY + MINUTE)
    account.reverse_redemption("r1", 10, reversal_id="v1", at=T0 + 12 * DAY, reason="returned")
    account.expire(T0 + 50 * DAY, at=T0 + 50 * DAY)
    return account


def _state(account: PointsAccount) -> dict[str, Any]:
    return {k: v for k, v in vars(account).items() if k != "_pending_events"}


def test_replay_through_a_popo_application_equals_the_live_account() -> None:
    app: Application[Any] = Application()
    account = _busy_account()
    kinds = {type(e) for e in account.pending_events}
    assert kinds == {
        PointsAccount.Opened,
        PointsAccount.Earned,
        PointsAccount.Redeemed,
        PointsAccount.Held,
        PointsAccount.HoldCaptured,
        PointsAccount.HoldReleased,
        PointsAccount.HoldExpired,
        PointsAccount.RedemptionReversed,
        PointsAccount.Reversed,
        PointsAccount.Adjusted,
        PointsAccount.Expired,
    }
    app.save(account)

    replayed: PointsAccount = app.repository.get(account.id)

    assert _state(replayed) == _state(account)


def test_every_points_event_round_trips_through_the_msgspec_mapper() -> None:
    mapper = MsgspecMapper()
    account = _busy_account()
    events = account.collect_events()

    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]

    assert decoded == events
    assert [mapper.to_stored_event(e).topic for e in events] == [type(e).TOPIC for e in events]
    replayed = None
    for event in decoded:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert _state(replayed) == _state(account)


def test_every_points_event_but_the_opening_has_a_plain_public_payload() -> None:
    import msgspec

    from application.public_events import BY_TOPIC

    account = _busy_account()
    for event in account.collect_events():
        if isinstance(event, PointsAccount.Opened):
            assert event.TOPIC not in BY_TOPIC
            continue
        public = BY_TOPIC[type(event).TOPIC]
        data = public.to_data(event)
        assert public.name.startswith("points.")
        assert data["customer_id"] == str(account.customer_id)
        assert data["point_type"] == "points"
        assert msgspec.json.decode(msgspec.json.encode(data)) == data
