"""Bulk import of customers (``membercore import customers``) on the real event store.

What a file registers and how it reads back, rejected rows with their line and reasons, rows of
one file naming the same person, rows naming stored customers, re-running a file (nothing new),
a concurrent writer taking a claim mid-chunk, and resuming after the process is SIGKILLed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.imports import (
    CustomerImport,
    claimed_event,
    customer_id_for,
    parse_rows,
    registered_event,
)
from application.kernel import Caller, execute
from application.loaders import load_customer
from application.program import program_rules
from application.registration import RegisterCustomer, parse_registration
from domain.customer import Customer
from domain.identity_claim import IdentityClaim
from domain.program import DEFAULT_RULES
from domain.registration import NewCustomer, decide_registration
from domain.values import Identity
from infrastructure.crypto import claim_id
from infrastructure.importer import (
    ImportRefused,
    StoredStreamsReader,
    identity_secret,
    import_file,
)
from infrastructure.tenancy import Tenant
from tests.integration.support import register, rows

ROOT = Path(__file__).resolve().parents[2]
REGISTERED = Customer.Registered.TOPIC
CLAIMED = IdentityClaim.Claimed.TOPIC


def run(tenant: Tenant, path: Path, **options: Any) -> dict[str, Any]:
    options.setdefault("progress", False)
    options.setdefault("workers", 0)
    return import_file(tenant, path, **options)


def write_ndjson(path: Path, *items: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items),
        encoding="utf-8",
    )
    return path


def topics(sql: psycopg.Connection[Any], tenant: Tenant) -> dict[str, int]:
    found = rows(sql, tenant, "SELECT topic, count(*) AS n FROM {s}.membercore_events GROUP BY 1")
    return {r["topic"]: r["n"] for r in found}


def event_count(sql: psycopg.Connection[Any], tenant: Tenant) -> int:
    return int(rows(sql, tenant, "SELECT count(*) AS n FROM {s}.membercore_events")[0]["n"])


def holder(tenant: Tenant, type_: str, value: str) -> Customer:
    claim = tenant.app.repository.get(tenant.app.claim_id(Identity(type_, value)))
    assert isinstance(claim, IdentityClaim)
    assert len(claim.holders) == 1
    return load_customer(tenant.app, claim.holders[0])


def person(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "identities": [{"type": "wechat_unionid", "value": f"u{n}"}],
        "name": f"Person {n}",
        "phone": f"+86138{n:08d}",
        "email": f"Person{n}@Example.com",
        **extra,
    }


# -- what a file registers --------------------------------------------------------------------


def test_an_ndjson_file_registers_each_person_readable_with_normalised_values(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_ndjson(
        tmp_path / "customers.ndjson",
        person(1, birthday="1990-05-01", attributes={"city": "Shanghai"}, channel="tmall"),
        "",  # blank lines are skipped (and still counted as lines)
        person(2, roles=["consumer", "agent"], owner="staff-7", store_id="S1"),
    )

    summary = run(tenant, path)

    assert summary["rows"] == 2
    assert (summary["registered"], summary["matched"], summary["rejected"]) == (2, 0, 0)
    assert summary["report"] is None
    assert summary["position"] == event_count(sql, tenant) == 8
    assert topics(sql, tenant) == {REGISTERED: 2, CLAIMED: 6}
    first = holder(tenant, "phone", "+8613800000001")
    assert first.name == "Person 1"
    assert first.email == "person1@example.com"
    assert first.birthday == date(1990, 5, 1)
    assert first.attributes == {"city": "Shanghai"}
    assert first.channel == "tmall"
    assert set(first.identities) == {
        Identity("wechat_unionid", "u1"),
        Identity("phone", "+8613800000001"),
        Identity("email", "person1@example.com"),
    }
    second = holder(tenant, "email", "person2@example.com")
    assert set(second.roles) == {"consumer", "agent"}
    assert (second.owner, second.store_id) == ("staff-7", "S1")
    # Ids derive from (tenant, file, line): the same row always gets the same customer id.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.id == customer_id_for(tenant.slug, digest, 1)
    assert second.id == customer_id_for(tenant.slug, digest, 3)
    assert not path.with_name(path.name + ".progress.json").exists()  # removed once done


def test_a_csv_file_registers_customers_with_typed_attributes(
    tenant: Tenant, tmp_path: Path
) -> None:
    tenant_program(tenant)
    path = tmp_path / "customers.csv"
    path.write_text(
        "\ufeffidentity_type,identity_value,name,phone,email,birthday,roles,attr.vip,"
        "attr.visits,identity.tmall_ouid,identities\n"
        "wechat_unionid,u1,Li Lei,13800138000,LI@example.com,1990-05-01,consumer|agent,yes,3,"
        "T1,jd_pin:J1|pos_member_no:P1\n"
        ',,"Han, Meimei",+8613800138001,,,,no,2.5,,\n',
        encoding="utf-8",
    )

    summary = run(tenant, path)

    assert (summary["rows"], summary["registered"], summary["rejected"]) == (2, 2, 0)
    li = holder(tenant, "tmall_ouid", "T1")
    assert li.name == "Li Lei"
    assert li.phone == "+8613800138000"  # the program's default country applies
    assert set(li.roles) == {"consumer", "agent"}
    assert li.attributes == {"vip": True, "visits": 3}
    assert {i.type for i in li.identities} == {
        "wechat_unionid",
        "tmall_ouid",
        "jd_pin",
        "pos_member_no",
        "phone",
        "email",
    }
    han = holder(tenant, "phone", "+8613800138001")
    assert han.name == "Han, Meimei"
    assert han.attributes == {"vip": False, "visits": 2.5}


def tenant_program(tenant: Tenant) -> None:
    from application.program import define_program

    define_program(
        tenant.app,
        {
            "currency": "CNY",
            "timezone": "Asia/Shanghai",
            "point_types": [{"code": "points"}],
            "identity": {"default_country": "CN"},
            "attributes": [
                {"code": "vip", "type": "boolean"},
                {"code": "visits", "type": "number"},
            ],
            "roles": [{"code": "consumer"}, {"code": "agent"}],
        },
        "t",
    )


def test_rejected_rows_are_reported_with_their_line_and_every_reason(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_ndjson(
        tmp_path / "mixed.ndjson",
        person(1),
        {"identities": [{"type": "x", "value": "1"}], "name": 5},
        '{"not json',
        {"phone": "12345", "email": "nope", "birthday": "1990-13-01"},
        {"name": "no identity at all"},
        {"phone": "+8613800000009", "favourite": "tea"},
        person(7),
    )
    report = tmp_path / "rejected.ndjson"

    summary = run(tenant, path, report=report)

    assert (summary["rows"], summary["registered"], summary["rejected"]) == (7, 2, 5)
    assert summary["report"] == str(report)
    rejected = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["row"] for r in rejected] == [2, 3, 4, 5, 6]
    assert all(r["code"] == "invalid_input" for r in rejected)
    by_row = {r["row"]: r["errors"] for r in rejected}
    assert by_row[2] == [{"field": "name", "reason": "Expected `str | null`, got `int`"}]
    assert by_row[3][0]["field"] is None
    assert "JSON" in by_row[3][0]["reason"]
    # msgspec refuses the bad date before anything else is looked at.
    assert [e["field"] for e in by_row[4]] == ["birthday"]
    assert [e["field"] for e in by_row[5]] == ["identities"]
    assert by_row[6][0]["field"] == "favourite"
    assert topics(sql, tenant) == {REGISTERED: 2, CLAIMED: 6}


def test_a_csv_row_reports_every_problem_at_once(tenant: Tenant, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "identity_type,identity_value,phone,email,birthday\n"
        "wechat_unionid,u1,12345,bad-email,1990-13-01\n"
        'wechat_unionid,u2,"unterminated\n',
        encoding="utf-8",
    )

    summary = run(tenant, path)

    assert (summary["rows"], summary["rejected"]) == (2, 2)
    rejected = [json.loads(line) for line in Path(summary["report"]).read_text().splitlines()]
    assert [e["field"] for e in rejected[0]["errors"]] == ["birthday", "phone", "email"]
    assert rejected[1]["row"] == 3


def test_overlong_lines_and_undecodable_cells_are_rejected_rows_not_failures(
    tenant: Tenant, tmp_path: Path
) -> None:
    long_line = json.dumps({"name": "x" * (2 << 20), "phone": "+8613800138000"})
    path = write_ndjson(tmp_path / "long.ndjson", person(1), long_line, person(3))
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(
        "identity_type,identity_value,name\nmember_no,m1,Zoë\nmember_no,m2,ok\n".encode("latin-1")
    )

    summary = run(tenant, path)
    from_csv = run(tenant, csv_path)

    assert (summary["rows"], summary["registered"], summary["rejected"]) == (3, 2, 1)
    (too_long,) = [json.loads(x) for x in Path(summary["report"]).read_text().splitlines()]
    assert too_long["row"] == 2
    assert "longer than" in too_long["errors"][0]["reason"]
    assert (from_csv["registered"], from_csv["rejected"]) == (1, 1)
    (latin,) = [json.loads(x) for x in Path(from_csv["report"]).read_text().splitlines()]
    assert latin["errors"] == [{"field": "name", "reason": "is not valid UTF-8"}]


def test_a_checkpoint_of_another_file_is_refused_unless_restarting(
    tenant: Tenant, tmp_path: Path
) -> None:
    path = write_ndjson(tmp_path / "a.ndjson", person(1))
    checkpoint = tmp_path / "a.ndjson.progress.json"
    checkpoint.write_text(
        json.dumps(
            {"tenant": tenant.slug, "fingerprint": "0" * 64, "format": "ndjson", "offset": 9}
            | {"line": 1, "rows": 1, "version": 1}
        )
    )

    with pytest.raises(ImportRefused, match="--restart"):
        run(tenant, path)
    summary = run(tenant, path, restart=True)

    assert (summary["rows"], summary["registered"]) == (1, 1)
    assert not checkpoint.exists()


def test_an_unknown_csv_column_refuses_the_file_before_anything_is_written(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("identity_type,identity_value,shoe_size\nwechat_unionid,u1,42\n")

    with pytest.raises(ImportRefused, match="shoe_size"):
        run(tenant, path)

    assert event_count(sql, tenant) == 0


# -- one person, several rows -------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1000, 2])
def test_rows_naming_the_same_person_make_one_customer_holding_every_identity(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path, chunk: int
) -> None:
    path = write_ndjson(
        tmp_path / "dupes.ndjson",
        {"identities": [{"type": "wechat_unionid", "value": "u1"}], "name": "First"},
        {"identities": [{"type": "tmall_ouid", "value": "t9"}], "name": "Other"},
        {
            "identities": [{"type": "wechat_unionid", "value": "u1"}],
            "phone": "+8613800138000",
            "name": "Second",
        },
        {"phone": "+86 138 0013 8000", "email": "same@example.com"},
        {"identities": [{"type": "wechat_unionid", "value": "u1"}]},
    )

    summary = run(tenant, path, chunk=chunk)

    assert (summary["registered"], summary["matched"], summary["rejected"]) == (2, 3, 0)
    assert topics(sql, tenant) == {
        REGISTERED: 2,
        CLAIMED: 4,  # u1, t9, the phone, the email: each claimed once
        Customer.IdentitiesLinked.TOPIC: 2,
    }
    first = holder(tenant, "email", "same@example.com")
    assert first.name == "First"  # the earliest row registers; later ones only add identities
    assert set(first.identities) == {
        Identity("wechat_unionid", "u1"),
        Identity("phone", "+8613800138000"),
        Identity("email", "same@example.com"),
    }


def test_rows_naming_stored_customers_link_to_them_or_merge_them(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    a = register(tenant, ("wechat_unionid", "ua"), name="A")
    b = register(tenant, ("tmall_ouid", "tb"), name="B")
    path = write_ndjson(
        tmp_path / "stored.ndjson",
        {"identities": [{"type": "wechat_unionid", "value": "ua"}]},  # nothing new: no write
        {
            "identities": [
                {"type": "wechat_unionid", "value": "ua"},
                {"type": "jd_pin", "value": "j"},
            ]
        },
        {"identities": [{"type": "jd_pin", "value": "j"}], "name": "after the link"},
        {"identities": [{"type": "tmall_ouid", "value": "tb"}, {"type": "jd_pin", "value": "j"}]},
        person(5),
    )

    summary = run(tenant, path)

    assert (summary["registered"], summary["matched"], summary["rejected"]) == (1, 4, 0)
    survivor = load_customer(tenant.app, a.customer_id)
    assert Identity("jd_pin", "j") in survivor.identities
    assert Identity("tmall_ouid", "tb") in survivor.identities  # B was merged into A
    assert load_customer(tenant.app, b.customer_id).merged_into == a.customer_id
    assert topics(sql, tenant)[REGISTERED] == 3


def test_running_a_file_again_writes_nothing(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_ndjson(tmp_path / "again.ndjson", *(person(n) for n in range(50)), {"name": "x"})
    first = run(tenant, path, chunk=7)
    written = event_count(sql, tenant)

    second = run(tenant, path, chunk=7)
    third = run(tenant, path, chunk=1000, workers=1)

    assert (first["registered"], first["rejected"]) == (50, 1)
    for again in (second, third):
        assert (again["rows"], again["registered"], again["matched"], again["rejected"]) == (
            51,
            0,
            50,
            1,
        )
        assert again["position"] == 0
    assert event_count(sql, tenant) == written


def test_a_row_whose_customer_lost_its_identities_since_is_not_registered_again(
    tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from application.customers import LinkIdentities, UnlinkIdentity

    path = write_ndjson(tmp_path / "one.ndjson", {"phone": "+8613800138000"})
    run(tenant, path)
    customer = holder(tenant, "phone", "+8613800138000")
    execute(tenant.app, LinkIdentities(customer.id, [("member_no", "m1")]), Caller("t"))
    execute(tenant.app, UnlinkIdentity(customer.id, ("phone", "+8613800138000")), Caller("t"))
    written = event_count(sql, tenant)

    summary = run(tenant, path)

    # Its customer id says the row was imported: matched, not a second customer.
    assert (summary["registered"], summary["matched"]) == (0, 1)
    assert event_count(sql, tenant) == written


def test_a_claim_taken_by_another_writer_mid_chunk_sends_the_chunk_row_by_row(
    tenant: Tenant, sql: psycopg.Connection[Any]
) -> None:
    app = tenant.app
    rules = program_rules(app)
    secret = identity_secret(tenant)
    raws = [(n, json.dumps(person(n)).encode()) for n in (1, 2, 3)]
    importer = CustomerImport(
        app,
        StoredStreamsReader(app),
        rules,
        customer_id=partial(customer_id_for, tenant.slug, "race"),
        actor="t",
    )
    plan = importer.plan(parse_rows(raws, rules, partial(claim_id, secret)))
    assert (len(plan.batch), plan.registered) == (3, 3)
    # Someone registers person 2 (by phone) between the decision and the write.
    other = register(tenant, ("phone", "+8613800000002"), name="the other writer")

    outcome = importer.write(plan)

    assert outcome.one_by_one
    assert (outcome.registered, outcome.matched, outcome.rows) == (2, 1, 3)
    two = holder(tenant, "email", "person2@example.com")
    assert two.id == other.customer_id
    assert topics(sql, tenant)[REGISTERED] == 3


def test_the_batch_shortcuts_record_what_the_aggregates_and_decision_would() -> None:
    reg = parse_registration(
        RegisterCustomer(
            identities=[("wechat_unionid", "u1")],
            name="Li",
            phone="+8613800138000",
            email="li@example.com",
            birthday=date(1990, 5, 1),
            attributes={"city": "Shanghai"},
            roles=["consumer", "consumer"],
            owner="s1",
            channel="tmall",
            store_id="x",
        ),
        DEFAULT_RULES,
    )
    at = datetime.now(UTC)
    customer_id, claim = uuid4(), uuid4()
    by_aggregate = Customer.register(
        customer_id=customer_id,
        identities=reg.identities,
        name=reg.name,
        phone=reg.phone,
        email=reg.email,
        birthday=reg.birthday,
        attributes=reg.attributes,
        roles=reg.roles,
        owner=reg.owner,
        referrer_id=reg.referrer_id,
        actor="t",
        at=at,
        channel=reg.channel,
        store_id=reg.store_id,
    ).collect_events()
    assert by_aggregate == [registered_event(customer_id, reg, actor="t", at=at)]
    identity = reg.identities[0]
    by_claim = IdentityClaim.claim(identity, customer_id, claim_id=claim, at=at).collect_events()
    assert by_claim == [claimed_event(identity, customer_id, claim_id=claim, at=at)]
    # The shortcut for rows whose identities nobody holds.
    assert decide_registration(reg.identities, {}, DEFAULT_RULES) == NewCustomer(reg.identities)


# -- resuming after a kill ------------------------------------------------------------------------

KILL_ROWS = 20_000
PEOPLE = 15_000  # row n >= PEOPLE repeats the phone of row n - PEOPLE: the same person
BAD = [n for n in range(PEOPLE, KILL_ROWS) if n % 101 == 0]  # rejected (a bad email)


def kill_file(path: Path) -> Path:
    with path.open("w") as f:
        for n in range(KILL_ROWS):
            f.write(
                json.dumps(
                    {
                        "identities": [{"type": "wechat_unionid", "value": f"k{n}"}],
                        "phone": f"+86139{n % PEOPLE:08d}",
                        "email": f"k{n}@example.com" if n not in BAD else "not-an-email",
                        "name": f"K {n}",
                    }
                )
                + "\n"
            )
    return path


def cli(database_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEMBERCORE_LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "infrastructure.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def checkpoint_rows(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["rows"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_an_import_killed_midway_resumes_and_ends_with_each_person_once(
    database_url: str, tenant: Tenant, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = kill_file(tmp_path / "people.ndjson")
    checkpoint = path.with_name(path.name + ".progress.json")
    # A parsing process too: it must not outlive the killed importer (nor hold its pipes).
    args = ("import", "customers", str(path), "--tenant", tenant.slug, "--chunk", "500")
    args += ("--workers", "1", "--no-progress")

    killed_at = []
    for target in (3_000, 11_000):  # two kills: one before, one after the repeated people start
        proc = cli(database_url, *args)
        deadline = time.monotonic() + 120
        while checkpoint_rows(checkpoint) < target:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        killed_at.append(checkpoint_rows(checkpoint))
    assert killed_at[-1] < KILL_ROWS, "the import finished before it could be killed"

    proc = cli(database_url, *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)

    assert summary["rows"] == KILL_ROWS
    assert summary["rejected"] == len(BAD)
    assert summary["resumed_at_line"] == killed_at[-1] + 1
    assert not checkpoint.exists()
    # Each rejected row reported once, in order, however the kills fell.
    report = [json.loads(line)["row"] for line in Path(summary["report"]).read_text().splitlines()]
    assert report == [n + 1 for n in BAD]
    found = topics(sql, tenant)
    assert found[REGISTERED] == PEOPLE
    # unionids and emails of the rows taken, and one claim per phone
    assert found[CLAIMED] == 2 * (KILL_ROWS - len(BAD)) + PEOPLE
    assert found[Customer.IdentitiesLinked.TOPIC] == KILL_ROWS - PEOPLE - len(BAD)
    assert IdentityClaim.HolderAdded.TOPIC not in found
    # Every claim's holder is a registered customer: nothing points at a lost or doubled one.
    orphans = rows(
        sql,
        tenant,
        "SELECT count(*) AS n FROM {s}.membercore_events c WHERE c.topic = %s AND NOT EXISTS"
        " (SELECT 1 FROM {s}.membercore_events r WHERE r.topic = %s"
        " AND r.originator_id = (convert_from(c.state, 'utf8')::json->>'customer_id')::uuid)",
        CLAIMED,
        REGISTERED,
    )
    assert orphans[0]["n"] == 0
    # Row k{n} of a repeated phone ended up with the customer of row n - PEOPLE.
    late = holder(tenant, "wechat_unionid", f"k{PEOPLE + 7}")
    assert late.name == "K 7"
    assert isinstance(late.id, UUID)
