"""D6: the committed golden fixture of stored loyalty events (tests/integration/golden/) still
replays, through the application's repository and through the projections, to the balances
recorded when it was made, including rows stored in an older class version (a v1
``Merge.Undone`` and a v1 ``StaffActivity.AlertRaised``, read through their upcasters).

The fixture is read, never regenerated here: a change that makes an event class unable to read
its stored rows, or read them differently, fails these tests. See docs/events.md#golden-fixtures.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from domain.merge import Merge
from domain.points_account import PointsAccount
from domain.staff import StaffActivity
from infrastructure.tenancy import Tenant
from tests.integration.golden import replay
from tests.unit.test_mapper import _stored_event_classes


@pytest.fixture(scope="module", params=replay.ERAS)
def era(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def fixture(era: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return replay.read_events(replay.events_path(era))


@pytest.fixture(scope="module")
def golden(era: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(replay.balances_path(era).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def loaded(tenant: Tenant, fixture: tuple[dict[str, Any], list[dict[str, Any]]]) -> Tenant:
    replay.load_into(tenant, *fixture)
    return tenant


def test_the_fixture_holds_version_1_rows_of_the_upcast_events(
    fixture: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, events = fixture
    versions = {
        topic: sorted({e["state"].get("class_version", 1) for e in events if e["topic"] == topic})
        for topic in (Merge.Undone.TOPIC, StaffActivity.AlertRaised.TOPIC)
    }
    assert versions[Merge.Undone.TOPIC] == [1, 2]
    assert versions[StaffActivity.AlertRaised.TOPIC] == [1]


def test_replaying_the_fixture_through_the_repository_gives_the_golden_balances(
    loaded: Tenant, fixture: tuple[dict[str, Any], list[dict[str, Any]]], golden: dict[str, Any]
) -> None:
    aggregates = replay.replay(loaded.app, replay.streams(fixture[1]))

    assert replay.balances(loaded.app, aggregates) == golden["aggregates"]


def test_every_lot_replayed_from_the_fixture_accounts_for_all_its_points(
    loaded: Tenant, fixture: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    aggregates = replay.replay(loaded.app, replay.streams(fixture[1]))
    lots = [
        lot for a in aggregates.values() if isinstance(a, PointsAccount) for lot in a.lots.values()
    ]

    assert lots
    for lot in lots:
        spent = lot.redeemed + lot.expired + lot.reversed + lot.adjusted + lot.transferred
        assert lot.earned == spent + lot.remaining + lot.held, lot


def test_projections_rebuilt_from_the_fixture_give_the_golden_read_models(
    loaded: Tenant, sql: psycopg.Connection[Any], golden: dict[str, Any]
) -> None:
    replay.project(loaded)

    models = replay.read_models(sql, loaded)

    assert models["points"] == replay.points_view(golden["aggregates"])
    assert models["levels"] == {k: v["level"] for k, v in golden["aggregates"]["levels"].items()}
    assert models["profiles"] == golden["profiles"]


# The aggregates whose every stored event class the latest era must hold a row of.
LOYALTY = ("PointsAccount", "LevelMembership", "BenefitAccount", "Order", "Merge")


def test_the_latest_era_holds_a_row_of_every_stored_event_class_of_the_loyalty_aggregates() -> None:
    _, events = replay.read_events(replay.events_path(replay.LATEST))
    stored = {e["topic"] for e in events}
    classes = [c for c in _stored_event_classes() if c.__qualname__.split(".")[0] in LOYALTY]

    assert len(classes) > 20
    missing = sorted(c.TOPIC for c in classes if c.TOPIC not in stored)
    assert not missing, f"record a new era (make_fixture.py) with a scenario step for: {missing}"
