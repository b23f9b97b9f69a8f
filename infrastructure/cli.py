"""``membercore``: serve, api, worker, tenants, keys, projections, import.

A composition root like ``runtime``: it starts the API, so it may import ``api`` (lazily).
Commands that create things print one JSON object on stdout; logs go to stderr. A bad argument
is one line, ``membercore: <reason>``, and exit status 2, never a traceback; a database that
cannot be reached is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import psycopg

from application.errors import ApplicationError
from application.permissions import Role
from infrastructure.logging import configure_logging
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings, SettingsError
from infrastructure.tenancy import InvalidSlug
from projections.registry import BY_NAME

# Long-running commands log what they do; one-shot commands print their result and nothing
# else (the embedded server starting, for one) unless MEMBERCORE_LOG_LEVEL asks for more.
SERVICES = ("serve", "api", "worker")
ONE_SHOT_LOG_LEVEL = "warning"


class UsageError(Exception):
    """A bad argument found after parsing (a file that is not there)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the usage and ``prog: error: ...``; the rule is one line.
        where = self.prog.removeprefix("membercore").strip()
        self.exit(2, f"membercore: {where + ': ' if where else ''}{message}\n")


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} must be {bound}")
        return value

    parse.__name__ = "integer"
    return parse


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a bad host or a busy port is a usage error
    before anything starts (uvicorn would log it and exit 1 after building the app)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _serve(settings: Settings, args: argparse.Namespace, *, projections: bool) -> int:
    import uvicorn

    from api.app import create_app

    sock = _listen(args.host or settings.host, args.port or settings.port)
    config = uvicorn.Config(
        create_app(settings, projections=projections),
        log_config=None,
        access_log=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _worker(settings: Settings) -> int:
    runtime = Runtime.open(settings, projections=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    runtime.close()
    return 0


def _print(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _tenants_create(settings: Settings, args: argparse.Namespace) -> int:
    runtime = Runtime.open(settings)
    try:
        runtime.tenants.create(args.slug)
        _print({"tenant": args.slug, "api_key": runtime.keys.create(args.slug, Role.ADMIN)})
    finally:
        runtime.close()
    return 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    runtime = Runtime.open(settings)
    try:
        _print({"api_key": runtime.keys.create(args.tenant, Role(args.role))})
    finally:
        runtime.close()
    return 0


def _projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from projections.engine import rebuild
    from projections.registry import PROJECTIONS

    runtime = Runtime.open(settings)
    try:
        slugs = [args.tenant] if args.tenant else runtime.tenants.slugs()
        chosen = [BY_NAME[args.projection]] if args.projection else list(PROJECTIONS)
        tenants = [runtime.tenants.get(slug) for slug in slugs]  # every name checked first
        for tenant in tenants:
            for projection in chosen:
                position = rebuild(tenant, projection, batch_size=settings.projection_batch)
                _print({"tenant": tenant.slug, "projection": projection.name, "position": position})
    finally:
        runtime.close()
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from infrastructure.importer import ImportRefused, import_file

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{args.file}: {'not a file' if path.exists() else 'no such file'}")
    runtime = Runtime.open(settings)
    try:
        tenant = runtime.tenants.get(args.tenant)
        summary = import_file(
            tenant,
            path,
            fmt=args.format,
            report=Path(args.report) if args.report else None,
            checkpoint=Path(args.checkpoint) if args.checkpoint else None,
            chunk=args.chunk,
            workers=args.workers,
            progress=not args.no_progress,
            restart=args.restart,
        )
        _print(summary)
    except (ImportRefused, OSError) as e:
        raise UsageError(str(e)) from None
    finally:
        runtime.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="membercore", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("serve", "API and projection worker in one process"),
        ("api", "the API only"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--host", help="default: MEMBERCORE_HOST or 127.0.0.1")
        s.add_argument(
            "--port", type=_bounded_int(1, 65535), help="default: MEMBERCORE_PORT or 8000"
        )
    sub.add_parser("worker", help="the projection worker only")

    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenants.add_parser("create", help="create a tenant and print its admin key")
    create.add_argument("slug")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    kc = keys.add_parser("create", help="create an API key for a tenant and role")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--role", required=True, choices=[r.value for r in Role])

    proj = sub.add_parser("projections", help="projection maintenance").add_subparsers(
        dest="action", required=True
    )
    rb = proj.add_parser("rebuild", help="rebuild query tables from the log and swap them in")
    rb.add_argument("--tenant", help="default: every tenant")
    rb.add_argument("--projection", choices=sorted(BY_NAME), help="default: every projection")

    imp = sub.add_parser("import", help="bulk imports").add_subparsers(dest="what", required=True)
    ic = imp.add_parser(
        "customers", help="import customers from a CSV or NDJSON file (resumable, idempotent)"
    )
    ic.add_argument("file")
    ic.add_argument("--tenant", required=True)
    ic.add_argument("--format", choices=["csv", "ndjson"], help="default: by the file extension")
    ic.add_argument("--report", help="rejected rows (NDJSON); default FILE.rejected.ndjson")
    ic.add_argument("--checkpoint", help="resume state; default FILE.progress.json")
    ic.add_argument(
        "--chunk", type=_bounded_int(1), default=1000, help="rows per transaction (1000)"
    )
    ic.add_argument(
        "--workers", type=_bounded_int(1), help="parsing processes (default: by file size)"
    )
    ic.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ic.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    return p


def _fail(status: int, reason: object) -> int:
    sys.stderr.write(f"membercore: {reason}\n")
    sys.stderr.flush()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # pgserver asks platformdirs for XDG_RUNTIME_DIR, which containers often lack.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        return _fail(2, e)
    if args.command not in SERVICES and "MEMBERCORE_LOG_LEVEL" not in os.environ:
        settings = replace(settings, log_level=ONE_SHOT_LOG_LEVEL)
    configure_logging(settings)
    try:
        if args.command in ("serve", "api"):
            return _serve(settings, args, projections=args.command == "serve")
        if args.command == "worker":
            return _worker(settings)
        if args.command == "tenants":
            return _tenants_create(settings, args)
        if args.command == "keys":
            return _keys_create(settings, args)
        if args.command == "import":
            return _import(settings, args)
        return _projections_rebuild(settings, args)
    except (ApplicationError, InvalidSlug, UsageError) as e:
        return _fail(2, e)
    except psycopg.Error as e:  # PoolTimeout included
        return _fail(1, f"database unavailable: {e}")


if __name__ == "__main__":
    raise SystemExit(main())
