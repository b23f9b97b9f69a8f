"""DefineProgram with the connection lost around COMMIT: one version recorded, the first answer."""

from __future__ import annotations

from typing import Any

import pytest

from application.kernel import Caller, Outcome, execute
from application.program import DefineProgram
from domain.program import PROGRAM_ID
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import lost_after_commit, lost_before_commit
from tests.integration.points_support import PROGRAM


@pytest.mark.parametrize("fault", [lost_after_commit, lost_before_commit], ids=["after", "before"])
def test_a_program_defined_while_the_connection_is_lost_is_recorded_once(
    tenant: Tenant, fault: Any
) -> None:
    with fault(tenant.app) as fired:
        answer = execute(tenant.app, DefineProgram(PROGRAM), Caller("t"))

    assert fired, "the fault was not injected"
    assert answer.outcome is Outcome.DONE
    assert answer.body["version"] == 1
    assert answer.position > 0
    assert [e.originator_version for e in tenant.app.events.get(PROGRAM_ID)] == [1]


def test_the_same_document_again_records_nothing_and_answers_the_version_in_force(
    tenant: Tenant,
) -> None:
    first = execute(tenant.app, DefineProgram(PROGRAM), Caller("t"))
    again = execute(tenant.app, DefineProgram(PROGRAM), Caller("t"))

    assert again.body == first.body
    assert again.position == first.position
    assert len(list(tenant.app.events.get(PROGRAM_ID))) == 1
