"""Property: over random grants, revocations, level changes, redemptions and clock moves, the
BenefitAccount agrees with a small reference model, used never exceeds the quota in any local
period, and replaying the stored events gives the live state."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domain.benefit_quotas import period_key
from domain.benefits import BenefitAccount, GrantNotFound
from domain.errors import BenefitDisabled, BenefitNotHeld, BenefitQuotaExhausted, DomainError
from domain.loyalty import BenefitRules
from infrastructure.eventstore import MsgspecMapper

TZ = ZoneInfo("Asia/Shanghai")
CUSTOMER = UUID("5d6b2f0e-8a51-4f0c-9a3e-1b2c3d4e5f60")
# Just before a local week, month, quarter and year end: clock moves cross them often.
START = datetime(2026, 12, 27, 12, 0, tzinfo=UTC)
BENEFITS = {
    b.code: b
    for b in (
        BenefitRules("free_shipping", "包邮", quota_count=2, quota_period="week"),
        BenefitRules("birthday_coupon", "生日券", quota_count=1, quota_period="year"),
        BenefitRules("coffee", "咖啡", quota_count=1, quota_period="day"),
        BenefitRules("gift", "礼品", quota_count=3, quota_period="quarter"),
        BenefitRules("parking", "停车"),
        BenefitRules("lounge", "贵宾室", enabled=False, quota_count=5, quota_period="month"),
    )
}
CODES = st.sampled_from(sorted(BENEFITS))


class BenefitMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.account = BenefitAccount.open(CUSTOMER, at=self.now)
        self.events: list[Any] = list(self.account.collect_events())
        # The reference model.
        self.grants: dict[str, tuple[str, datetime, datetime | None]] = {}
        self.revoked: dict[str, datetime] = {}
        # Level sources held at the start, so quotas are reached often; toggled by a rule.
        self.levels: set[str] = {"free_shipping", "birthday_coupon", "coffee", "gift"}
        self.redeemed: dict[str, tuple[str, datetime]] = {}
        self.n = 0

    def _held(self, code: str, at: datetime) -> bool:
        if code in self.levels:
            return True
        for gid, (c, start, until) in self.grants.items():
            ends = [t for t in (until, self.revoked.get(gid)) if t is not None]
            if c == code and start <= at and (not ends or at < min(ends)):
                return True
        return False

    def _used(self, code: str, at: datetime) -> int:
        period = BENEFITS[code].quota_period
        key = period_key(at, period, TZ)
        return sum(
            1 for c, t in self.redeemed.values() if c == code and period_key(t, period, TZ) == key
        )

    def _record(self) -> None:
        self.events.extend(self.account.collect_events())

    @rule(minutes=st.sampled_from([0, 1, 60 * 7, 60 * 20]) | st.integers(0, 60 * 24 * 40))
    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(code=CODES, days=st.none() | st.integers(1, 60))
    def grant(self, code: str, days: int | None) -> None:
        self.n += 1
        gid = f"g{self.n}"
        until = None if days is None else self.now + timedelta(days=days)
        self.account.grant(
            gid, code, valid_from=self.now, until=until, reason="r", actor="k", at=self.now
        )
        self.grants[gid] = (code, self.now, until)
        self._record()

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(sorted(self.grants) or ["g0"]))
        if gid not in self.grants:
            with pytest.raises(GrantNotFound):
                self.account.revoke(gid, reason="r", actor="k", at=self.now)
            return
        recorded = self.account.revoke(gid, reason="r", actor="k", at=self.now)
        assert recorded == (gid not in self.revoked)
        self.revoked.setdefault(gid, self.now)
        self._record()

    @rule(code=CODES)
    def toggle_level(self, code: str) -> None:
        self.levels ^= {code}

    @rule(code=CODES, reuse=st.booleans(), data=st.data())
    def redeem(self, code: str, reuse: bool, data: st.DataObject) -> None:
        if reuse and self.redeemed:
            rid = data.draw(st.sampled_from(sorted(self.redeemed)))
            code = self.redeemed[rid][0]
        else:
            self.n += 1
            rid = f"r{self.n}"
        benefit = BENEFITS[code]
        if rid in self.redeemed:
            expected: type[Exception] | None = None
        elif not benefit.enabled:
            expected = BenefitDisabled
        elif not self._held(code, self.now):
            expected = BenefitNotHeld
        elif benefit.quota_count is not None and self._used(code, self.now) >= benefit.quota_count:
            expected = BenefitQuotaExhausted
        else:
            expected = None
        sources = ["level:consumer:gold"] if code in self.levels else []
        refused: DomainError | None = None
        try:
            redemption, recorded = self.account.redeem(
                rid,
                benefit,
                level_sources=sources,
                tz=TZ,
                program_version=1,
                note=None,
                actor="k",
                at=self.now,
            )
        except DomainError as e:
            refused = e
        event(type(refused).__name__ if refused else "redeemed")
        if refused is not None:
            assert type(refused) is expected
            assert not self.account.pending_events
            return
        assert expected is None
        assert recorded == (rid not in self.redeemed)
        if recorded:
            self.redeemed[rid] = (code, self.now)
        assert (redemption.code, redemption.at) == self.redeemed[rid]
        self._record()

    @invariant()
    def used_never_exceeds_the_quota_in_any_period(self) -> None:
        for code, benefit in BENEFITS.items():
            if benefit.quota_count is None:
                continue
            per_period = Counter(
                period_key(r.at, benefit.quota_period, TZ)
                for r in self.account.redemptions_of(code)
            )
            assert all(n <= benefit.quota_count for n in per_period.values()), per_period

    @invariant()
    def the_account_holds_what_the_model_holds(self) -> None:
        assert {r.redemption_id for r in self.account.redemptions.values()} == set(self.redeemed)
        for code in BENEFITS:
            levels = ["level:consumer:gold"] if code in self.levels else []
            held = self.account.holding(code, self.now, levels) is not None
            assert held == self._held(code, self.now)

    @invariant()
    def replaying_the_stored_events_gives_the_live_state(self) -> None:
        mapper = MsgspecMapper()
        replayed: Any = None
        for e in self.events:
            replayed = mapper.to_domain_event(mapper.to_stored_event(e)).mutate(replayed)
        assert replayed.version == self.account.version
        assert replayed.grants == self.account.grants
        assert replayed.redemptions == self.account.redemptions


TestBenefitAccount = BenefitMachine.TestCase
