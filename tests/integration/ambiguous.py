"""Fault injection at COMMIT for the ambiguous-commit tests (reliability case C7).

``lost_after_commit(app)`` lets the next save commit for real and then fails it as a connection
lost after COMMIT was sent would: the caller sees ``OperationalError`` although everything is
stored. ``lost_before_commit(app)`` fails the next save without committing. Both wrap the
tenant recorder's group commit, so every write path (events, idempotency completion, side
effects) goes through the real database. The rest is the shape every ambiguous-commit test
shares: run a command with the fault, compare it with a twin run without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError

from application.errors import RejectionReplayed
from application.kernel import Answer, Caller, Command, Outcome, execute
from application.program import define_program
from domain.errors import DomainError
from infrastructure.tenancy import Tenant

LOST = "server closed the connection unexpectedly (injected after COMMIT)"


@contextmanager
def _faulty_commit(app: Any, *, commit: bool, times: int) -> Iterator[list[int]]:
    recorder = app.recorder
    original = recorder._commit
    fired: list[int] = []

    def commit_then_lose(batch: list[Any]) -> None:
        if len(fired) >= times:
            original(batch)
            return
        if commit:
            original(batch)
        fired.append(len(batch))
        for save in batch:
            if save.error is None:
                save.error = OperationalError(LOST)
            save.done = True

    recorder._commit = commit_then_lose
    try:
        yield fired
    finally:
        del recorder._commit


def lost_after_commit(app: Any, times: int = 1) -> Any:
    """The next ``times`` saves commit, then answer a lost connection."""
    return _faulty_commit(app, commit=True, times=times)


def lost_before_commit(app: Any, times: int = 1) -> Any:
    """The next ``times`` saves fail with a lost connection before anything is written."""
    return _faulty_commit(app, commit=False, times=times)


def event_count(app: Any) -> int:
    return int(app.recorder.max_notification_id() or 0)


# The fault as a test parameter: lost after COMMIT (it happened) or before (it did not).
FAULTS = pytest.mark.parametrize(
    "fault", [lost_after_commit, lost_before_commit], ids=["after", "before"]
)
# With an idempotency key the kernel answers a retry from the key; without, from the log.
KEYED = pytest.mark.parametrize("keyed", [True, False], ids=["with key", "without key"])
KEY = "client-key-1"

T = TypeVar("T")
Fault = Callable[[Any], AbstractContextManager[list[int]]]
# A command made fresh (with what it needs), and a look at its effect: what one clean run
# shows and a faulted run must show too.
Attempt = tuple[Command, Callable[[], object]]


def pinned(
    tenant: Tenant, program: dict[str, Any] | None = None, at: datetime | None = None
) -> Tenant:
    """``tenant`` with ``program`` defined and its clock stopped at ``at`` (now by default): one
    instant for a twin and the faulted run, whose answers are compared whole."""
    if program is not None:
        define_program(tenant.app, program, "t")
    instant = at or datetime.now(UTC)
    tenant.app.clock = lambda: instant  # type: ignore[method-assign]
    return tenant


def caller(tenant: Tenant, keyed: bool) -> Caller:
    return Caller("t", tenant.slug, tenant.idempotency if keyed else None)


def names(app: Any, aggregate_id: UUID) -> list[str]:
    """The names of the events in a stream, in order."""
    return [type(e).__name__ for e in app.events.get(aggregate_id)]


def injected(fault: Fault, app: Any, run: Callable[[], T]) -> T:
    """What ``run`` answers under ``fault``, which must have fired."""
    with fault(app) as fired:
        result = run()
    assert fired, "the fault was not injected"
    return result


def written(app: Any, run: Callable[[], T]) -> tuple[int, T]:
    """How many events ``run`` wrote, and what it answered."""
    before = event_count(app)
    result = run()
    return event_count(app) - before, result


def check_against_twin(
    tenant: Tenant,
    fault: Fault,
    keyed: bool,
    make: Callable[[], Attempt],
    comparable: Callable[[dict[str, Any]], object] = lambda body: body,
) -> tuple[object, Answer]:
    """Run a command made by ``make`` with a connection lost at its COMMIT, and its twin (made
    the same way, run first without a fault): the same effect, the same outcome, the same
    answer as far as ``comparable`` shows it. With a key, the same request again replays that
    answer (body and position) and changes nothing. The twin's effect and the answer, for the
    checks a command adds."""
    twin_cmd, twin_effect = make()
    twin = execute(tenant.app, twin_cmd, caller(tenant, keyed=False))
    one_effect = twin_effect()
    assert one_effect, "the twin did nothing"
    cmd, effect = make()
    by = caller(tenant, keyed)

    answer = injected(fault, tenant.app, lambda: execute(tenant.app, cmd, by, client_id=KEY))

    # Messages spelled out: this module's asserts are not rewritten by pytest.
    assert (seen := effect()) == one_effect, (seen, one_effect)
    assert answer.outcome is twin.outcome, (answer.outcome, twin.outcome)
    assert comparable(answer.body) == comparable(twin.body), (answer.body, twin.body)
    assert answer.position > 0, answer
    if keyed:
        again = execute(tenant.app, cmd, by, client_id=KEY)
        assert again.outcome is Outcome.REPLAYED, again
        assert (again.body, again.position) == (answer.body, answer.position), (again, answer)
        assert (seen := effect()) == one_effect, (seen, one_effect)
    return one_effect, answer


def rejection_replayed(
    tenant: Tenant,
    cmd: Command,
    refused: type[DomainError],
    then: Callable[[], object],
    client_id: str = KEY,
) -> dict[str, Any]:
    """``cmd`` refused with ``refused`` under a key, ``then`` run (which would let it pass),
    and the same request again: the first refusal, replayed without running the command (it
    writes nothing). The replayed rejection."""
    by = caller(tenant, keyed=True)
    with pytest.raises(refused):
        execute(tenant.app, cmd, by, client_id=client_id)
    then()
    before = event_count(tenant.app)

    with pytest.raises(RejectionReplayed) as replayed:
        execute(tenant.app, cmd, by, client_id=client_id)

    assert event_count(tenant.app) == before, "the replayed refusal wrote events"
    return replayed.value.rejection
