"""The command kernel on its in-memory ports: one execute path, idempotent by client id, bounded
retries, and one answer after a connection lost around COMMIT."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from application.context import CommandContext
from application.errors import (
    ConcurrencyConflict,
    IdempotencyKeyReused,
    RejectionReplayed,
    ServiceUnavailable,
    UnknownOperation,
)
from application.idempotency import IdempotencyKey, StoredAnswer
from application.kernel import (
    MAX_ATTEMPTS,
    Caller,
    Command,
    Decision,
    Outcome,
    execute,
    handles,
)
from application.loaders import optional
from domain.errors import DomainError
from infrastructure.memory import InMemoryIdempotencyStore, InMemoryMembercore


class Jar(Aggregate):
    """A test aggregate: coins go in, and never more than ``limit`` in all."""

    class Opened(Aggregate.Created):
        limit: int

    class Deposited(Aggregate.Event):
        deposit_id: str
        coins: int

        def apply(self, aggregate: Jar) -> None:
            aggregate.coins += self.coins
            aggregate.deposits = {**aggregate.deposits, self.deposit_id: self.coins}

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.coins = 0
        self.deposits: dict[str, int] = {}

    @classmethod
    def open(cls, limit: int) -> Jar:
        return cls._create(cls.Opened, id=JAR, limit=limit)

    def deposit(self, deposit_id: str, coins: int) -> None:
        if deposit_id in self.deposits:
            return  # a repeat: answered again, nothing new
        if self.coins + coins > self.limit:
            raise JarFull(self.limit - self.coins)
        self.trigger_event(self.Deposited, deposit_id=deposit_id, coins=coins)


class JarFull(DomainError):
    code = "jar_full"

    def __init__(self, room: int) -> None:
        self.room = room
        super().__init__(f"room for {room} coins")

    def problem_fields(self) -> dict[str, Any]:
        return {"room": self.room}


JAR = uuid5(NAMESPACE_URL, "test-jar")


@dataclass(frozen=True)
class Deposit(Command):
    operation = "TestDeposit"
    scope = ("jar",)
    client_id = "deposit_id"
    jar: UUID
    deposit_id: str
    coins: int


# A hook the tests set to write behind the handler's back between its read and its save.
INTERFERE: list[Any] = []


@handles(Deposit)
def deposit(app: InMemoryMembercore, cmd: Deposit, ctx: CommandContext) -> Decision:
    jar = optional(app, cmd.jar, Jar)
    assert jar is not None
    jar.deposit(cmd.deposit_id, cmd.coins)
    if INTERFERE:
        INTERFERE.pop()(app)
    created = Outcome.CREATED if jar.pending_events else Outcome.DONE
    return Decision(created, {"coins": jar.coins}, save=(jar,), position_of=jar.id)


@pytest.fixture
def app() -> Iterator[InMemoryMembercore]:
    mc = InMemoryMembercore()
    mc.save(Jar.open(limit=100))
    yield mc
    INTERFERE.clear()


@pytest.fixture
def caller() -> Caller:
    return Caller("tester", "t1", InMemoryIdempotencyStore())


def deposits(app: InMemoryMembercore) -> int:
    return sum(1 for e in app.events.get(JAR) if isinstance(e, Jar.Deposited))


def test_a_first_command_is_created_and_its_repeat_is_replayed_with_the_same_answer(
    app: InMemoryMembercore, caller: Caller
) -> None:
    first = execute(app, Deposit(JAR, "d1", 30), caller)
    again = execute(app, Deposit(JAR, "d1", 30), caller)

    assert first.outcome is Outcome.CREATED
    assert first.body == {"coins": 30}
    assert again.outcome is Outcome.REPLAYED
    assert (again.body, again.position) == (first.body, first.position)
    assert deposits(app) == 1


def test_the_same_client_id_with_another_request_is_refused(
    app: InMemoryMembercore, caller: Caller
) -> None:
    execute(app, Deposit(JAR, "d1", 30), caller)

    with pytest.raises(IdempotencyKeyReused):
        execute(app, Deposit(JAR, "d1", 31), caller)
    assert deposits(app) == 1


def test_a_rejection_is_the_answer_to_its_client_id_even_after_the_state_changes(
    app: InMemoryMembercore, caller: Caller
) -> None:
    with pytest.raises(JarFull):
        execute(app, Deposit(JAR, "big", 150), caller)
    jar = optional(app, JAR, Jar)
    assert jar is not None
    jar.limit = 1000  # a rule change would now accept it

    with pytest.raises(RejectionReplayed) as replayed:
        execute(app, Deposit(JAR, "big", 150), caller)

    assert replayed.value.rejection == {
        "code": "jar_full",
        "detail": "room for 100 coins",
        "room": 100,
    }
    assert deposits(app) == 0


def test_a_command_that_lost_a_race_is_decided_again_on_fresh_state(
    app: InMemoryMembercore, caller: Caller
) -> None:
    def other_writer(mc: InMemoryMembercore) -> None:
        jar = optional(mc, JAR, Jar)
        assert jar is not None
        jar.deposit("other", 80)
        mc.save(jar)

    INTERFERE.append(other_writer)

    with pytest.raises(JarFull) as full:
        execute(app, Deposit(JAR, "d1", 30), caller)

    assert full.value.room == 20  # decided again after the other writer's 80
    assert deposits(app) == 1


def test_a_command_losing_every_race_answers_a_conflict_and_leaves_its_key_free(
    app: InMemoryMembercore, caller: Caller
) -> None:
    def other_writer(mc: InMemoryMembercore) -> None:
        jar = optional(mc, JAR, Jar)
        assert jar is not None
        jar.deposit(f"other-{len(INTERFERE)}", 1)
        mc.save(jar)

    INTERFERE.extend([other_writer] * MAX_ATTEMPTS)

    with pytest.raises(ConcurrencyConflict):
        execute(app, Deposit(JAR, "d1", 1), caller)
    answer = execute(app, Deposit(JAR, "d1", 1), caller)

    assert answer.outcome is Outcome.CREATED


def _lose_connection(app: InMemoryMembercore, *, after_commit: bool, times: int = 1) -> list[int]:
    recorder = app.recorder
    original = recorder.insert_events
    lost: list[int] = []

    def insert(stored: Any, **kwargs: Any) -> Any:
        if len(lost) >= times:
            return original(stored, **kwargs)
        lost.append(1)
        if after_commit:
            original(stored, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    recorder.insert_events = insert  # type: ignore[method-assign]
    return lost


@pytest.mark.parametrize("keyed", [True, False], ids=["with key", "without key"])
def test_a_save_that_committed_before_its_connection_was_lost_answers_once(
    app: InMemoryMembercore, caller: Caller, keyed: bool
) -> None:
    lost = _lose_connection(app, after_commit=True)
    who = caller if keyed else Caller("tester")

    answer = execute(app, Deposit(JAR, "d1", 30), who)

    assert lost == [1]
    assert answer.outcome is Outcome.CREATED
    assert answer.body == {"coins": 30}
    assert answer.position > 0
    assert deposits(app) == 1


def test_a_save_lost_before_commit_runs_again_and_happens_once(
    app: InMemoryMembercore, caller: Caller
) -> None:
    lost = _lose_connection(app, after_commit=False, times=2)

    answer = execute(app, Deposit(JAR, "d1", 30), caller)

    assert lost == [1, 1]
    assert answer.outcome is Outcome.CREATED
    assert deposits(app) == 1


def test_a_database_that_stays_down_answers_unavailable_and_frees_the_key(
    app: InMemoryMembercore, caller: Caller
) -> None:
    _lose_connection(app, after_commit=False, times=10**6)

    with pytest.raises(ServiceUnavailable):
        execute(app, Deposit(JAR, "d1", 30), caller)

    assert caller.idempotency is not None
    key = IdempotencyKey("TestDeposit:" + str(JAR), "d1", Deposit(JAR, "d1", 30).fingerprint())
    assert caller.idempotency.begin(key) is None  # free: a retry can run it
    assert deposits(app) == 0


def test_a_completed_key_is_never_overwritten(caller: Caller) -> None:
    store = caller.idempotency
    assert store is not None
    key = IdempotencyKey("Op", "k", "f")
    store.begin(key)
    store.complete(key, StoredAnswer("created", {"n": 1}, 7))

    store.complete(key, StoredAnswer("rejected", {"code": "late"}, None))

    assert store.answer(key) == StoredAnswer("created", {"n": 1}, 7)


def test_an_operation_has_one_handler() -> None:
    with pytest.raises(ValueError, match="two handlers"):
        handles(Deposit)(lambda app, cmd, ctx: Decision(Outcome.DONE, {}))


def test_a_command_without_a_handler_is_refused(app: InMemoryMembercore) -> None:
    @dataclass(frozen=True)
    class Unhandled(Command):
        operation = "TestUnhandled"

    with pytest.raises(UnknownOperation):
        execute(app, Unhandled(), Caller("tester"))


def test_ids_derived_from_the_client_id_are_the_same_on_every_attempt(
    app: InMemoryMembercore, caller: Caller
) -> None:
    seen: list[UUID] = []

    @dataclass(frozen=True)
    class Probe(Command):
        operation = "TestProbe"
        client_id = "probe_id"
        probe_id: str

    @handles(Probe)
    def probe(app: InMemoryMembercore, cmd: Probe, ctx: CommandContext) -> Decision:
        seen.append(ctx.new_id())
        if len(seen) == 1:
            raise IntegrityError("lost a race")
        return Decision(Outcome.DONE, {})

    execute(app, Probe("p1"), caller)

    assert len(seen) == 2
    assert seen[0] == seen[1]


SHELF = uuid5(NAMESPACE_URL, "test-shelf")


@dataclass(frozen=True)
class DepositIfShelved(Command):
    """Deposits into a second jar, decided on the first jar's state (read, not changed)."""

    operation = "TestDepositIfShelved"
    deposit_id: str


@handles(DepositIfShelved)
def deposit_if_shelved(
    app: InMemoryMembercore, cmd: DepositIfShelved, ctx: CommandContext
) -> Decision:
    rule = optional(app, JAR, Jar)
    shelf = optional(app, SHELF, Jar)
    assert rule is not None
    assert shelf is not None
    if rule.coins >= rule.limit:
        raise JarFull(0)
    shelf.deposit(cmd.deposit_id, 1)
    if INTERFERE:
        INTERFERE.pop()(app)
    return Decision(Outcome.CREATED, {"rule_coins": rule.coins}, save=(shelf,), unchanged=(rule,))


def test_a_save_decided_on_an_aggregate_that_moved_on_since_it_was_read_is_decided_again(
    app: InMemoryMembercore, caller: Caller
) -> None:
    app.save(Jar._create(Jar.Opened, id=SHELF, limit=10))

    def fill_the_rule_jar(mc: InMemoryMembercore) -> None:
        rule = optional(mc, JAR, Jar)
        assert rule is not None
        rule.deposit("fill", 100)
        mc.save(rule)

    INTERFERE.append(fill_the_rule_jar)

    with pytest.raises(JarFull):
        execute(app, DepositIfShelved("s1"), caller)

    assert not [e for e in app.events.get(SHELF) if isinstance(e, Jar.Deposited)]
