"""The ``membercore`` command line: a bad argument is one line, ``membercore: <reason>``, on
stderr and exit status 2, never a traceback; a command's output is its result alone (no logs,
not the embedded PostgreSQL's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.cli import main
from infrastructure.runtime import Runtime
from tests.conftest import new_slug

ROOT = Path(__file__).resolve().parents[2]


def _one_line(err: str) -> str:
    """The reason, after checking that stderr is one ``membercore: ...`` line."""
    assert "Traceback" not in err
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert err.startswith("membercore: "), err
    return err.removeprefix("membercore: ").rstrip("\n")


# -- refused while parsing: no database needed ------------------------------------------------

PARSE_ERRORS = {
    "no command": ([], "the following arguments are required: command"),
    "unknown command": (["bogus"], "invalid choice: 'bogus'"),
    "tenants without action": (["tenants"], "tenants: the following arguments are required"),
    "tenants create without slug": (["tenants", "create"], "arguments are required: slug"),
    "keys create without role": (["keys", "create", "--tenant", "t"], "--role"),
    "keys create unknown role": (
        ["keys", "create", "--tenant", "t", "--role", "god"],
        "argument --role: invalid choice: 'god'",
    ),
    "rebuild unknown projection": (
        ["projections", "rebuild", "--projection", "profiel"],
        "argument --projection: invalid choice: 'profiel'",
    ),
    "import unknown format": (
        ["import", "customers", "f.csv", "--tenant", "t", "--format", "xml"],
        "argument --format: invalid choice: 'xml'",
    ),
    "import chunk zero": (
        ["import", "customers", "f.csv", "--tenant", "t", "--chunk", "0"],
        "argument --chunk: 0 must be at least 1",
    ),
    "import workers not a number": (
        ["import", "customers", "f.csv", "--tenant", "t", "--workers", "two"],
        "argument --workers: 'two' is not an integer",
    ),
    "import without tenant": (["import", "customers", "f.csv"], "--tenant"),
    "serve port out of range": (
        ["serve", "--port", "70000"],
        "argument --port: 70000 must be between 1 and 65535",
    ),
    "api port not a number": (["api", "--port", "http"], "argument --port: 'http' is not"),
    "worker with an argument": (["worker", "--threads", "3"], "unrecognized arguments"),
}


@pytest.mark.parametrize(("argv", "reason"), PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
def test_a_bad_argument_is_one_membercore_line_and_exit_2(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert out == ""
    assert reason in _one_line(err)


# -- refused after parsing: each case its own process, all started at once ---------------------


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERCORE_")}
    env.pop("REDIS_URL", None)
    return {**env, "DATABASE_URL": database_url, **extra}


def _start(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "infrastructure.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def refused(
    database_url: str, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[int, str, str]]]:
    """(exit status, stdout, stderr) of every case below, run concurrently."""
    tenant = runtime.tenants.create(new_slug())
    work = tmp_path_factory.mktemp("cli")
    odd = work / "people.txt"
    odd.write_text('{"name": "A"}\n')
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    imp = ["import", "customers"]
    cases = {
        "bad slug": ["tenants", "create", "Not-A-Slug"],
        "tenant exists": ["tenants", "create", tenant.slug],
        "keys for unknown tenant": ["keys", "create", "--tenant", "nosuch", "--role", "admin"],
        "rebuild unknown tenant": ["projections", "rebuild", "--tenant", "nosuch"],
        "import missing file": [*imp, str(work / "no.csv"), "--tenant", "x"],
        "import a directory": [*imp, str(work), "--tenant", "x"],
        "import unknown tenant": [*imp, str(odd), "--tenant", "nosuch"],
        "import unknown extension": [*imp, str(odd), "--tenant", tenant.slug],
        "serve busy port": ["serve", "--port", port],
        "serve unknown host": ["api", "--host", "no-such-host.invalid", "--port", port],
        "bad setting": ["tenants", "create", "x"],
    }
    envs = {"bad setting": _env(database_url, MEMBERCORE_POOL_MAX="lots")}
    try:
        procs = {
            name: _start(argv, envs.get(name) or _env(database_url)) for name, argv in cases.items()
        }
        results = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            results[name] = (proc.returncode, out, err)
        yield results
    finally:
        busy.close()


REFUSED = {
    "bad slug": "tenant slug 'Not-A-Slug' must match",
    "tenant exists": "already exists",
    "keys for unknown tenant": "tenant 'nosuch' does not exist",
    "rebuild unknown tenant": "tenant 'nosuch' does not exist",
    "import missing file": "no.csv: no such file",
    "import a directory": ": not a file",
    "import unknown tenant": "tenant 'nosuch' does not exist",
    "import unknown extension": "cannot tell the format",
    "serve busy port": "Address already in use",
    "serve unknown host": "cannot listen on no-such-host.invalid",
    "bad setting": "MEMBERCORE_POOL_MAX must be an integer, got 'lots'",
}


@pytest.mark.parametrize(("case", "reason"), REFUSED.items(), ids=REFUSED.keys())
def test_an_argument_refused_after_parsing_is_one_membercore_line_and_exit_2(
    case: str, reason: str, refused: dict[str, tuple[int, str, str]]
) -> None:
    status, out, err = refused[case]

    assert (status, out) == (2, ""), err
    assert reason in _one_line(err)


# -- output: the result alone -----------------------------------------------------------------


def test_tenants_create_prints_only_its_result_on_a_given_database(database_url: str) -> None:
    slug = new_slug()
    proc = _start(["tenants", "create", slug], _env(database_url))
    out, err = proc.communicate(timeout=120)

    assert (proc.returncode, err) == (0, "")
    assert json.loads(out)["tenant"] == slug
    assert out.count("\n") == 1


def test_the_embedded_servers_log_stays_out_of_a_commands_output(tmp_path: Path) -> None:
    env = _env("", MEMBERCORE_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL")

    created = _start(["tenants", "create", "shop"], env, cwd=tmp_path)
    out, err = created.communicate(timeout=300)
    again = _start(["tenants", "create", "shop"], env, cwd=tmp_path)
    again_out, again_err = again.communicate(timeout=300)

    assert (created.returncode, err) == (0, "")  # initdb and server start: nothing shown
    assert out.count("\n") == 1
    assert json.loads(out)["tenant"] == "shop"
    assert (again.returncode, again_out) == (2, "")
    assert _one_line(again_err) == "tenant 'shop' already exists"
