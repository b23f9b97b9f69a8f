"""``IdentityClaim`` lives in ``domain.identity_claim`` (it was in ``domain.customer``): the
events stored before the move keep decoding, under the topics they were stored with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.identity_claim import IdentityClaim
from infrastructure.eventstore import MsgspecMapper

ROOT = Path(__file__).resolve().parents[2]
# Written by the golden fixture's generator while the class was domain.customer.IdentityClaim.
GOLDEN = ROOT / "tests" / "integration" / "golden" / "2026-11" / "events.jsonl"
# The aggregate's (each Created event's ``originator_topic``) and its stored events'.
TOPICS = [
    "membercore.IdentityClaim",
    "membercore.IdentityClaim.Claimed",
    "membercore.IdentityClaim.HolderAdded",
    "membercore.IdentityClaim.HolderRemoved",
    "membercore.IdentityClaim.Transferred",
]


def _stored_claim() -> StoredEvent:
    with GOLDEN.open(encoding="utf-8") as rows:
        row = next(r for r in map(json.loads, rows) if r.get("topic") == TOPICS[1])
    return StoredEvent(
        UUID(row["originator_id"]),
        row["originator_version"],
        row["topic"],
        json.dumps(row["state"]).encode(),
    )


def test_a_claim_event_stored_before_the_move_decodes_into_the_moved_class() -> None:
    stored = _stored_claim()

    event = MsgspecMapper().to_domain_event(stored)
    claim = event.mutate(None)

    assert stored.topic == "membercore.IdentityClaim.Claimed"
    assert type(event) is IdentityClaim.Claimed
    assert isinstance(claim, IdentityClaim)
    assert claim.id == stored.originator_id
    assert claim.holders == (event.customer_id,)


def test_a_fresh_process_importing_any_domain_module_resolves_the_claim_topics() -> None:
    # domain.values imports nothing of the claim: the package registers every aggregate.
    script = (
        "import sys\n"
        "import domain.values\n"
        "from eventsourcing.utils import resolve_topic\n"
        "print(' '.join(resolve_topic(t).__module__ for t in sys.argv[1:]))\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script, *TOPICS],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["domain.identity_claim"] * len(TOPICS)
