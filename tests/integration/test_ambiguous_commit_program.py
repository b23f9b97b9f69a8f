"""DefineProgram with the connection lost around COMMIT: one version recorded, the first answer."""

from __future__ import annotations

from application.kernel import Caller, Outcome, execute
from application.program import DefineProgram
from domain.program import PROGRAM_ID
from infrastructure.tenancy import Tenant
from tests.integration.ambiguous import FAULTS, Fault, injected
from tests.integration.points_support import PROGRAM


@FAULTS
def test_a_program_defined_while_the_connection_is_lost_is_recorded_once(
    tenant: Tenant, fault: Fault
) -> None:
    define = DefineProgram(PROGRAM)

    answer = injected(fault, tenant.app, lambda: execute(tenant.app, define, Caller("t")))

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
