"""A benefit grant or a level override racing a merge of its customer (reliability case B7: no
lost update).

The merge copies the source's grants in force to the survivor. A grant decided on the source
while the merge runs must either be refused once the merge stands (``customer_merged``) or
reach the survivor: answering 201 and leaving it on the merged-away id loses it for the person.
The interleaving is made deterministic: the merge commits right after the grant read the
source's benefit account.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

import application.benefits.commands as benefit_commands
import application.levels.overrides as level_overrides
from application.benefits.commands import GrantBenefit
from application.benefits.queries import benefits_of
from application.kernel import Caller, execute
from application.levels.overrides import SetLevelOverride
from application.loaders import membership
from application.merges import MergeCustomers
from application.program import define_program
from domain.errors import CustomerMerged
from infrastructure.tenancy import Tenant
from tests.integration.support import register

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "timezone": "UTC",
    "point_types": [{"code": "points", "earn": [{"per_amount": 100, "points": 1}]}],
    "benefits": [{"code": "free_shipping", "name": "包邮", "validity_days": 30}],
}


def _merge_after_the_read(
    monkeypatch: pytest.MonkeyPatch, tenant: Tenant, survivor: UUID, source: UUID
) -> None:
    read = benefit_commands.benefit_account
    merged: list[int] = []

    def then_merge(app: Any, customer_id: UUID) -> Any:
        found = read(app, customer_id)
        if not merged:
            merged.append(1)
            execute(tenant.app, MergeCustomers(survivor, source), Caller("other"))
        return found

    monkeypatch.setattr(benefit_commands, "benefit_account", then_merge)


@pytest.mark.parametrize("source_has_an_account", [False, True], ids=["new", "existing"])
def test_a_grant_racing_a_merge_of_its_customer_is_refused_or_reaches_the_survivor(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, source_has_an_account: bool
) -> None:
    define_program(tenant.app, PROGRAM, "t")
    survivor = register(tenant, ("member_no", "survivor")).customer_id
    source = register(tenant, ("member_no", "source")).customer_id
    if source_has_an_account:
        execute(tenant.app, GrantBenefit(source, "g0", "free_shipping", "vip"), Caller("t"))
    _merge_after_the_read(monkeypatch, tenant, survivor, source)

    try:
        execute(tenant.app, GrantBenefit(source, "g1", "free_shipping", "vip"), Caller("t"))
    except CustomerMerged:
        return  # refused once the merge stood: nothing lost

    held = benefits_of(tenant.app, survivor, tenant.app.clock())
    granted = [s for b in held for s in b.to_dict()["sources"] if "g1" in str(s)]
    assert granted, "the grant answered 201 but the survivor never got it"


def test_a_grant_made_before_a_merge_reaches_the_survivor(tenant: Tenant) -> None:
    """The check above, without the race: what a merge gives the survivor."""
    define_program(tenant.app, PROGRAM, "t")
    survivor = register(tenant, ("member_no", "survivor")).customer_id
    source = register(tenant, ("member_no", "source")).customer_id
    execute(tenant.app, GrantBenefit(source, "g1", "free_shipping", "vip"), Caller("t"))

    execute(tenant.app, MergeCustomers(survivor, source), Caller("t"))

    held = benefits_of(tenant.app, survivor, tenant.app.clock())
    assert [s for b in held for s in b.to_dict()["sources"] if "g1" in str(s)]


LADDER: dict[str, Any] = {
    **PROGRAM,
    "level_groups": [
        {
            "code": "consumer",
            "basis": "spend",
            "levels": [
                {"code": "normal", "threshold": 0},
                {"code": "gold", "threshold": 100000},
            ],
        }
    ],
}


def test_a_level_override_racing_a_merge_of_its_customer_is_refused(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    define_program(tenant.app, LADDER, "t")
    survivor = register(tenant, ("member_no", "survivor")).customer_id
    source = register(tenant, ("member_no", "source")).customer_id
    read = level_overrides.membership
    merged: list[int] = []

    def then_merge(app: Any, customer_id: UUID, group: str) -> Any:
        found = read(app, customer_id, group)
        if not merged:
            merged.append(1)
            execute(tenant.app, MergeCustomers(survivor, source), Caller("other"))
        return found

    monkeypatch.setattr(level_overrides, "membership", then_merge)
    until = (tenant.app.clock() + timedelta(days=30)).isoformat()
    cmd = SetLevelOverride(source, "consumer", "o-1", "gold", until, "vip")

    with pytest.raises(CustomerMerged):
        execute(tenant.app, cmd, Caller("t"))
    assert merged == [1]
    assert membership(tenant.app, source, "consumer") is None
