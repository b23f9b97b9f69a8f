"""Record a golden fixture era: ``<era>/events.jsonl`` and its balances ``<era>/balances.json``.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m tests.integration.golden.make_fixture 2027-03

The era is a new folder name (by convention the month it is recorded in). Recording into an
existing era is refused: an era's events are what the code of its day stored, and rewriting them
would hide exactly the incompatibility the tests exist to catch.

Creates a throw-away database on that server, records ``scenario.run`` in a fresh tenant on
PostgreSQL, builds its projections, writes every stored event row (plus the identity secret and
the customers' data keys) and the balances read from its aggregates and profile read model,
then drops the database. Customer and merge ids are numbered and the identity secret is fixed
(``scenario.IDS``, ``scenario.SECRET``), so a regeneration changes only the header's data keys,
the sealed personal fields and whatever the code change itself changed.

Two events are written in their older class version, as rows stored before the upgrade read:
the first merge's ``Merge.Undone`` as v1 (no ``class_version``, no survivor or source) and the
staff alert's ``StaffActivity.AlertRaised`` as v1 (no ``staff_id``). The balances come from the
events as recorded (v2), so the test proves the upcast rows replay to the same balances.

When to record a new era: after an *additive* change (a new event, a new field with a default,
a new step in the scenario) — ``test_golden_events.py`` asks for one when the latest era lacks a
stored event class. Never to make an old era pass again after an incompatible change to an
existing event: that failure is the test doing its job (write an upcaster instead). An old era's
``balances.json`` may be edited by hand only where a *read model* (not an aggregate) legitimately
changed its output, e.g. a projection that now follows merges; say so in the commit.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from domain.merge import Merge
from domain.staff import StaffActivity
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from tests.integration.golden import replay, scenario

# (topic, which occurrence in the log, the v2 fields a v1 row lacks)
DOWNGRADES = (
    (Merge.Undone.TOPIC, 0, ("survivor_id", "source_id")),
    (StaffActivity.AlertRaised.TOPIC, 0, ("staff_id",)),
)


def as_v1(events: list[dict[str, Any]]) -> None:
    """Rewrite the rows named in ``DOWNGRADES`` as their v1 form (in place)."""
    for topic, occurrence, dropped in DOWNGRADES:
        state = [e for e in events if e["topic"] == topic][occurrence]["state"]
        assert state.pop("class_version") == 2, topic
        for name in dropped:
            del state[name]


def generate(database_url: str, era: str) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(database_url=database_url, data_dir=Path(data_dir), log_level="warning")
        runtime = Runtime.open(settings)
        try:
            tenant = runtime.tenants.create(f"golden_{secrets.token_hex(4)}")
            scenario.run(tenant)
            replay.project(tenant)
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as sql:
                header, events = replay.dump_tenant(sql, tenant)
                ids = replay.streams(events)
                golden = {
                    "aggregates": replay.balances(tenant.app, replay.replay(tenant.app, ids)),
                    "profiles": replay.read_models(sql, tenant)["profiles"],
                }
        finally:
            runtime.close()
    as_v1(events)
    replay.write_events(header, events, replay.events_path(era))
    replay.balances_path(era).write_text(
        json.dumps(golden, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"{len(events)} events -> {replay.events_path(era).parent}")


def main() -> None:
    server = os.environ.get("DATABASE_URL")
    if not server:
        sys.exit("DATABASE_URL must name a PostgreSQL server (a database is created on it)")
    if len(sys.argv) != 2 or not sys.argv[1] or "/" in sys.argv[1]:
        sys.exit("usage: python -m tests.integration.golden.make_fixture <new era folder>")
    era = sys.argv[1]
    if replay.events_path(era).exists():
        sys.exit(f"era {era} exists: record a new era instead of rewriting one")
    dbname = f"mc_golden_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        generate(urlunsplit(urlsplit(server)._replace(path=f"/{dbname}")), era)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
