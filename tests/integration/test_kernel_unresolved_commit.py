"""A connection lost after COMMIT whose check is lost too (reliability case C7, a failover).

The kernel finds out whether a save whose connection dropped committed before it decides
again. When that read fails as well (the database is still failing over), the question is
still open on the next attempt: deciding again on a state that may already hold the first
decision's events answers something else (a registration that created its customer would
answer "matched" 200; an erasure would answer ``customer_erased``). The kernel must ask again
first, and answer what it decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import OperationalError

from application.kernel import Caller, Outcome, execute
from application.privacy import EraseCustomer
from application.registration import RegisterCustomer
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import event_count, lost_after_commit
from tests.integration.support import register


@contextmanager
def _first_check_lost(tenant: Tenant, keyed: bool) -> Iterator[list[int]]:
    """The first read the kernel makes to find out whether a save committed fails as a lost
    connection would (the key's answer with a key, the stream's event without)."""
    failed: list[int] = []
    if keyed:
        store: Any = tenant.idempotency
        original = store.answer

        def answer(key: Any) -> Any:
            if not failed:
                failed.append(1)
                raise OperationalError("server closed the connection unexpectedly")
            return original(key)

        store.answer = answer
        try:
            yield failed
        finally:
            del store.answer
    else:
        recorder: Any = tenant.app.recorder
        select = recorder.select_events

        def select_events(*args: Any, **kwargs: Any) -> Any:
            if not failed:
                failed.append(1)
                raise OperationalError("server closed the connection unexpectedly")
            return select(*args, **kwargs)

        recorder.select_events = select_events
        try:
            yield failed
        finally:
            del recorder.select_events


def _caller(tenant: Tenant, keyed: bool) -> Caller:
    return Caller("t", tenant.slug, tenant.idempotency if keyed else None)


def test_a_registration_whose_commit_check_is_lost_answers_created_once(tenant: Tenant) -> None:
    for keyed in (True, False):
        cmd = RegisterCustomer(identities=[("member_no", f"m-{uuid4().hex[:8]}")], name="New")
        by = _caller(tenant, keyed)
        before = event_count(tenant.app)
        with lost_after_commit(tenant.app) as fired, _first_check_lost(tenant, keyed) as failed:
            answer = execute(tenant.app, cmd, by, client_id=f"reg-{uuid4()}")
        assert fired, "the lost commit was not injected"
        assert failed, "the lost check was not injected"

        assert answer.outcome is Outcome.CREATED, (keyed, answer)
        assert answer.body["matched"] is False
        assert event_count(tenant.app) - before == 2  # the customer and its identity's claim


def test_an_erasure_whose_commit_check_is_lost_answers_erased(tenant: Tenant) -> None:
    for keyed in (True, False):
        cid = register(tenant, ("member_no", f"e-{uuid4().hex[:8]}"), name="Gone").customer_id
        by = _caller(tenant, keyed)
        with lost_after_commit(tenant.app) as fired, _first_check_lost(tenant, keyed) as failed:
            answer = execute(tenant.app, EraseCustomer(cid, "asked"), by, client_id=f"e-{cid}")
        assert fired, "the lost commit was not injected"
        assert failed, "the lost check was not injected"

        assert answer.outcome is Outcome.DONE
        assert answer.body["erased"] is True
