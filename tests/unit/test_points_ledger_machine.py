"""A stateful property test of the points ledger against a small reference model.

Rules: earn (back-dated, pending, already expired), redeem, reverse a redemption (in parts or
whole), hold (with or without a timeout), capture, release, reverse (a refund, under either
policy), expire, settle (the expiry job: timed-out holds, then due lots), adjust, and advancing
the clock (including exactly to an expiry or hold timeout instant and one microsecond before
it). After every step:

* per lot: earned = redeemed + expired + reversed + adjusted + remaining + held (``redeemed`` net
  of redemption reversals), in the model, in the live aggregate (open lots, and consumed lots a
  reversal may still restore) and in a ledger recomputed from the recorded events (every lot,
  consumed ones included), all three equal;
* available, pending, held and debt equal the model's; available is below zero only by the
  debt a ``negative`` refund left, and never without such debt;
* replaying the recorded events rebuilds a state equal to the live aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from domain.errors import (
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotFound,
    InsufficientPoints,
    RedemptionNotFound,
    ReversalExceedsRedemption,
    ReversalWindowClosed,
)
from domain.points_account import PointsAccount

T0 = datetime(2025, 6, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
COUNTERS = ("redeemed", "expired", "reversed", "adjusted", "remaining", "held")


@dataclass
class MLot:
    lot_id: str
    earned: int
    earned_at: datetime
    active_at: datetime
    expires_at: datetime | None
    remaining: int
    held: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0
    refundable: int = 0
    written_off: int = 0  # what a clamp refund of this lot could not take (points spent)

    def counters(self) -> dict[str, int]:
        return {"earned": self.earned, **{c: getattr(self, c) for c in COUNTERS}}


@dataclass
class Model:
    """The ledger rules written as plainly as possible."""

    lots: dict[str, MLot] = field(default_factory=dict)
    holds: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    hold_timeouts: dict[str, datetime | None] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)
    # Per redemption: what it took from each lot (in order) and what reversals gave back.
    redemptions: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    restored: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per redemption: the end of its reversal window (None: for ever).
    windows: dict[str, datetime | None] = field(default_factory=dict)
    # The time of the last recorded event: it closes the windows that ended before it.
    ledger_time: datetime = T0
    debt: int = 0

    def window_open(self, redemption_id: str, t: datetime) -> bool:
        until = self.windows[redemption_id]
        return until is None or max(t, self.ledger_time) <= until

    def live(self, lot: MLot, t: datetime) -> bool:
        return lot.expires_at is None or lot.expires_at > t

    def timed_out(self, hold_id: str, t: datetime) -> bool:
        timeout = self.hold_timeouts[hold_id]
        return timeout is not None and timeout <= t

    def expire_due(self, t: datetime) -> None:
        for lot in self.lots.values():
            if not self.live(lot, t) and lot.remaining:
                lot.expired += lot.remaining
                lot.remaining = 0

    def settle(self, t: datetime) -> int:
        """Release the holds timed out by ``t`` (back to their lots), then expire what is due."""
        due = sorted(
            (h for h in self.holds if self.timed_out(h, t)),
            key=lambda h: (self.hold_timeouts[h], h),
        )
        for hold_id in due:
            for lot_id, n in self.holds.pop(hold_id):
                self.lots[lot_id].held -= n
                self.lots[lot_id].remaining += n
            self.resolved[hold_id] = "expired"
        self.expire_due(t)
        return len(due)

    def returned(self, t: datetime) -> dict[str, int]:
        """What holds timed out by ``t`` give back to each lot (counted before any settle)."""
        back: dict[str, int] = {}
        for hold_id, takes in self.holds.items():
            if self.timed_out(hold_id, t):
                for lot_id, n in takes:
                    back[lot_id] = back.get(lot_id, 0) + n
        return back

    def available(self, t: datetime) -> int:
        back = self.returned(t)
        free = sum(
            lot.remaining + back.get(lot.lot_id, 0)
            for lot in self.lots.values()
            if lot.active_at <= t and self.live(lot, t)
        )
        return free - self.debt

    def pending(self, t: datetime) -> int:
        return sum(
            lot.remaining for lot in self.lots.values() if lot.active_at > t and self.live(lot, t)
        )

    def held(self, t: datetime | None = None) -> int:
        return sum(
            n
            for hold_id, takes in self.holds.items()
            if t is None or not self.timed_out(hold_id, t)
            for _, n in takes
        )

    def reversible(self, lot_id: str) -> int:
        return sum(
            n - self.restored[r].get(lot_id, 0)
            for r, takes in self.redemptions.items()
            if self.window_open(r, self.ledger_time)
            for other, n in takes
            if other == lot_id
        )

    def take(self, n: int, t: datetime, exclude: str | None = None) -> list[tuple[str, int]]:
        def key(lot: MLot) -> tuple[Any, ...]:
            return (lot.expires_at is None, lot.expires_at or T0, lot.earned_at, lot.lot_id)

        taken = []
        for lot in sorted(self.lots.values(), key=key):
            if n == 0:
                break
            if lot.lot_id == exclude or lot.active_at > t or not self.live(lot, t):
                continue
            k = min(n, lot.remaining)
            if k:
                taken.append((lot.lot_id, k))
                n -= k
        return taken

    def add(self, lot: MLot, t: datetime) -> None:
        self.settle(t)
        expired_now = lot.expires_at is not None and lot.expires_at <= t
        repaid = 0 if expired_now else min(self.debt, lot.earned)
        self.debt -= repaid
        lot.remaining -= repaid
        lot.reversed += repaid
        self.lots[lot.lot_id] = lot
        self.expire_due(t)


def ledger_from_events(events: list[Any]) -> dict[str, dict[str, int]]:
    """Per-lot counters recomputed from the recorded events alone."""
    lots: dict[str, dict[str, int]] = {}

    def new(lot_id: str, points: int, repaid: int) -> None:
        lots[lot_id] = {"earned": points, **dict.fromkeys(COUNTERS, 0)}
        lots[lot_id]["remaining"] = points - repaid
        lots[lot_id]["reversed"] = repaid

    def move(takes: Any, to: str, source: str = "remaining") -> None:
        for lot_id, n in takes:
            lots[lot_id][source] -= n
            lots[lot_id][to] += n

    for e in events:
        if isinstance(e, PointsAccount.Earned):
            new(e.lot_id, e.points, e.repaid)
        elif isinstance(e, PointsAccount.Adjusted):
            if e.amount > 0:
                new(e.lot_id, e.amount, e.repaid)
            else:
                move(e.lots, "adjusted")
        elif isinstance(e, PointsAccount.Redeemed):
            move(e.lots, "redeemed")
        elif isinstance(e, PointsAccount.Expired):
            move(e.lots, "expired")
        elif isinstance(e, PointsAccount.Held):
            move(e.lots, "held")
        elif isinstance(e, PointsAccount.HoldCaptured):
            move(e.lots, "redeemed", source="held")
        elif isinstance(e, PointsAccount.HoldReleased | PointsAccount.HoldExpired):
            move(e.lots, "remaining", source="held")
        elif isinstance(e, PointsAccount.RedemptionReversed):
            move(e.lots, "remaining", source="redeemed")
            move((*e.reclaimed, *e.repaid), "reversed")
        elif isinstance(e, PointsAccount.Reversed):
            move([(e.lot_id, e.taken_from_lot), *e.lots], "reversed")
    return lots


def _state(account: PointsAccount) -> dict[str, Any]:
    return {k: v for k, v in vars(account).items() if k != "_pending_events"}


class PointsLedgerMachine(RuleBasedStateMachine):
    lot_ids = Bundle("lot_ids")
    hold_ids = Bundle("hold_ids")
    redemption_ids = Bundle("redemption_ids")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.account = PointsAccount.open(uuid4(), "points", at=T0)
        self.events: list[Any] = list(self.account.collect_events())
        self.model = Model()
        self.counter = 0

    def _next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _record(self) -> None:
        self.events.extend(self.account.collect_events())
        self.model.ledger_time = max(self.model.ledger_time, self.events[-1].timestamp)

    # -- clock --------------------------------------------------------------------------------

    @rule(seconds=st.integers(0, 40 * 86400))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(just_before=st.booleans())
    def advance_to_the_next_expiry(self, just_before: bool) -> None:
        instants = [lot.expires_at for lot in self.model.lots.values()]
        instants += [self.model.hold_timeouts[h] for h in self.model.holds]
        upcoming = sorted(t for t in instants if t is not None and t > self.now)
        if upcoming:
            self.now = max(self.now, upcoming[0] - US if just_before else upcoming[0])

    # -- commands -----------------------------------------------------------------------------

    @rule(
        target=lot_ids,
        points=st.integers(1, 200),
        back_days=st.integers(0, 60),
        expires_in_days=st.one_of(st.none(), st.integers(-10, 60)),
        pending_days=st.sampled_from([0, 0, 0, 3, 10]),
    )
    def earn(
        self, points: int, back_days: int, expires_in_days: int | None, pending_days: int
    ) -> str:
        lot_id = self._next_id("order-")
        earned_at = self.now - timedelta(days=back_days)
        # Expiries on a day grid, so lots often expire at the same instant (ties in burn order).
        today = T0 + timedelta(days=(self.now - T0).days)
        expires = None if expires_in_days is None else today + timedelta(days=expires_in_days)
        if expires is not None and expires <= earned_at:
            expires = earned_at + timedelta(days=1)
        active = earned_at + timedelta(days=pending_days)
        self.account.earn(
            lot_id,
            points,
            earned_at=earned_at,
            at=self.now,
            expires_at=expires,
            active_at=active,
            source={"kind": "order"},
            program_version=1,
        )
        self._record()
        lot = MLot(lot_id, points, earned_at, active, expires, points, refundable=points)
        self.model.add(lot, self.now)
        return lot_id

    @rule(
        target=redemption_ids,
        points=st.integers(1, 300),
        window_days=st.one_of(st.none(), st.integers(0, 40)),
    )
    def redeem(self, points: int, window_days: int | None) -> str:
        redemption_id = self._next_id("r-")
        expected_ok = points <= self.model.available(self.now)
        until = None if window_days is None else self.now + timedelta(days=window_days)
        try:
            taken = self.account.redeem(redemption_id, points, at=self.now, reversible_until=until)
        except InsufficientPoints:
            assert not expected_ok
            assert self.account.collect_events() == []
            return redemption_id
        assert expected_ok
        self._record()
        self.model.settle(self.now)
        expected = self.model.take(points, self.now)
        assert list(taken) == expected
        for lot_id, n in expected:
            self.model.lots[lot_id].remaining -= n
            self.model.lots[lot_id].redeemed += n
        self.model.redemptions[redemption_id] = expected
        self.model.restored[redemption_id] = {}
        self.model.windows[redemption_id] = until
        return redemption_id

    @rule(redemption_id=redemption_ids, share=st.one_of(st.none(), st.integers(1, 120)))
    def reverse_redemption(self, redemption_id: str, share: int | None) -> None:
        takes = self.model.redemptions.get(redemption_id)
        restored = self.model.restored.get(redemption_id, {})
        left = sum(n for _, n in takes or []) - sum(restored.values())
        # share > 100 asks for more than the redemption took: refused.
        points = None if share is None else max(1, sum(n for _, n in takes or []) * share // 100)
        try:
            given = self.account.reverse_redemption(
                redemption_id, points, reversal_id=self._next_id("v-"), at=self.now
            )
        except RedemptionNotFound:
            assert takes is None
            assert self.account.collect_events() == []
            return
        except ReversalWindowClosed:
            assert takes is not None
            assert not self.model.window_open(redemption_id, self.now)
            assert self.account.collect_events() == []
            return
        except ReversalExceedsRedemption:
            assert takes is not None
            assert (points or left) > left or left == 0
            assert self.account.collect_events() == []
            return
        assert takes is not None
        assert self.model.window_open(redemption_id, self.now)
        assert left > 0
        assert points is None or points <= left
        self._record()
        self.model.settle(self.now)
        wanted = left if points is None else points
        expected = []
        for lot_id, n in reversed(takes):
            k = min(n - restored.get(lot_id, 0), wanted)
            if k > 0:
                expected.append((lot_id, k))
                wanted -= k
        assert list(given) == expected
        for lot_id, k in expected:
            lot = self.model.lots[lot_id]
            # What a clamp refund of the lot wrote off is taken back first, then debt is repaid
            # (not from a lot past its expiry): the customer never regains refunded points.
            reclaim = min(k, lot.written_off)
            repay = 0 if not self.model.live(lot, self.now) else min(k - reclaim, self.model.debt)
            lot.written_off -= reclaim
            self.model.debt -= repay
            lot.remaining += k - reclaim - repay
            lot.reversed += reclaim + repay
            lot.redeemed -= k
            restored[lot_id] = restored.get(lot_id, 0) + k
        self.model.expire_due(self.now)  # a restored lot past its expiry expires at once

    @rule(
        target=hold_ids,
        points=st.integers(1, 200),
        timeout_minutes=st.one_of(st.none(), st.integers(1, 20 * 24 * 60)),
    )
    def hold(self, points: int, timeout_minutes: int | None) -> str:
        hold_id = self._next_id("h-")
        timeout = None if timeout_minutes is None else self.now + timedelta(minutes=timeout_minutes)
        expected_ok = points <= self.model.available(self.now)
        try:
            taken = self.account.hold(hold_id, points, at=self.now, expires_at=timeout)
        except InsufficientPoints:
            assert not expected_ok
            self.model.resolved[hold_id] = "never"
            return hold_id
        assert expected_ok
        self._record()
        self.model.settle(self.now)
        expected = self.model.take(points, self.now)
        assert list(taken) == expected
        for lot_id, n in expected:
            self.model.lots[lot_id].remaining -= n
            self.model.lots[lot_id].held += n
        self.model.holds[hold_id] = expected
        self.model.hold_timeouts[hold_id] = timeout
        return hold_id

    def _resolve(self, hold_id: str, capture: bool) -> None:
        resolution = self.model.resolved.get(hold_id)
        timed_out = hold_id in self.model.holds and self.model.timed_out(hold_id, self.now)
        try:
            if capture:
                self.account.capture(hold_id, at=self.now)
            else:
                self.account.release(hold_id, at=self.now)
        except HoldAlreadyResolved:
            assert resolution in ("captured", "released")
            return
        except HoldExpired:
            assert resolution == "expired" or timed_out
            assert self.account.collect_events() == []
            return
        except HoldNotFound:
            assert resolution == "never"
            return
        assert resolution is None
        assert not timed_out
        self._record()
        self.model.settle(self.now)
        for lot_id, n in self.model.holds.pop(hold_id):
            lot = self.model.lots[lot_id]
            lot.held -= n
            if capture:
                lot.redeemed += n
            else:
                lot.remaining += n
        self.model.resolved[hold_id] = "captured" if capture else "released"
        self.model.expire_due(self.now)

    @rule(hold_id=hold_ids)
    def capture(self, hold_id: str) -> None:
        self._resolve(hold_id, capture=True)

    @rule(hold_id=hold_ids)
    def release(self, hold_id: str) -> None:
        self._resolve(hold_id, capture=False)

    @rule(lot_id=lot_ids, share=st.integers(1, 100), policy=st.sampled_from(["negative", "clamp"]))
    def refund(self, lot_id: str, share: int, policy: str) -> None:
        lot = self.model.lots[lot_id]
        points = max(1, lot.refundable * share // 100)
        if lot.refundable < points:
            return  # the order engineer never reverses more than the lot earned
        reversal = self.account.reverse(
            lot_id,
            points,
            reversal_id=self._next_id("rf-"),
            policy=policy,
            burn_order="soonest_expiry",
            at=self.now,
        )
        self._record()
        lot.refundable -= points
        self.model.settle(self.now)
        from_lot = min(points, lot.remaining)
        lot.remaining -= from_lot
        lot.reversed += from_lot
        elsewhere = self.model.take(points - from_lot, self.now, exclude=lot_id)
        for other, n in elsewhere:
            self.model.lots[other].remaining -= n
            self.model.lots[other].reversed += n
        missing = points - from_lot - sum(n for _, n in elsewhere)
        if policy == "negative":
            self.model.debt += missing
        else:
            lot.written_off += missing
        assert reversal.taken_from_lot == from_lot
        assert reversal.taken_elsewhere == sum(n for _, n in elsewhere)
        assert (reversal.debt, reversal.shortfall) == (
            (missing, 0) if policy == "negative" else (0, missing)
        )

    @rule()
    def expire(self) -> None:
        self.account.expire(self.now, at=self.now)
        self._record()
        self.model.expire_due(self.now)

    @rule(runs=st.integers(1, 2))
    def settle(self, runs: int) -> None:
        """The expiry job at ledger time ``now``, once or twice (the second changes nothing)."""
        expected = self.model.settle(self.now)
        for run in range(runs):
            settled = self.account.settle(self.now, at=self.now)
            assert settled.holds == (expected if run == 0 else 0)
            if run:
                assert self.account.collect_events() == []
            self._record()

    @rule(amount=st.integers(-150, 150).filter(bool), expires_in_days=st.integers(1, 90))
    def adjust(self, amount: int, expires_in_days: int) -> None:
        adjustment_id = self._next_id("a-")
        expires = self.now + timedelta(days=expires_in_days)
        expected_ok = amount > 0 or -amount <= self.model.available(self.now)
        try:
            taken = self.account.adjust(
                adjustment_id, amount, reason="test", actor="k", at=self.now, expires_at=expires
            )
        except InsufficientPoints:
            assert not expected_ok
            return
        assert expected_ok
        self._record()
        if amount > 0:
            lot = MLot(f"adjustment:{adjustment_id}", amount, self.now, self.now, expires, amount)
            self.model.add(lot, self.now)
            return
        self.model.settle(self.now)
        expected = self.model.take(-amount, self.now)
        assert list(taken) == expected
        for lot_id, n in expected:
            self.model.lots[lot_id].remaining -= n
            self.model.lots[lot_id].adjusted += n

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_lot_adds_up_in_model_aggregate_and_events(self) -> None:
        recomputed = ledger_from_events(self.events)
        assert set(recomputed) == set(self.model.lots)
        for lot_id, lot in self.model.lots.items():
            counters = lot.counters()
            assert counters["earned"] == sum(counters[c] for c in COUNTERS), lot
            assert recomputed[lot_id] == counters, lot_id
            live = self.account.lots.get(lot_id)
            spent = self.account.spent_lots.get(lot_id)
            if lot.remaining or lot.held:
                assert live is not None
                assert spent is None
            else:
                assert live is None  # consumed lots leave the state...
                # ...but stay where a redemption reversal can find them while it may.
                assert (spent is not None) == (self.model.reversible(lot_id) > 0)
                live = spent
            if live is not None:
                assert {"earned": live.earned, **{c: getattr(live, c) for c in COUNTERS}} == (
                    counters
                )

    @invariant()
    def balances_match_and_available_is_negative_only_by_debt(self) -> None:
        available = self.account.available(self.now)
        assert available == self.model.available(self.now)
        assert self.account.pending(self.now) == self.model.pending(self.now)
        assert self.account.held == self.model.held()
        assert self.account.held_at(self.now) == self.model.held(self.now)
        assert self.account.debt == self.model.debt >= 0
        assert available >= -self.account.debt
        if self.account.debt == 0:
            assert available >= 0

    @invariant()
    def replay_of_the_recorded_events_equals_live(self) -> None:
        replayed = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert _state(replayed) == _state(self.account)


PointsLedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPointsLedgerAgainstTheReferenceModel = PointsLedgerMachine.TestCase


@pytest.mark.slow
def test_points_ledger_against_the_reference_model_long_profile() -> None:
    run_state_machine_as_test(
        PointsLedgerMachine,
        settings=settings(
            max_examples=1500,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
