"""``membercore``: serve, api, worker, tenants, keys, projections.

A composition root like ``runtime``: it starts the API, so it may import ``api`` (lazily).
Commands that create things print one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from application.errors import ApplicationError
from application.permissions import Role
from infrastructure.logging import configure_logging
from infrastructure.runtime import Runtime
from infrastructure.settings import Settings
from infrastructure.tenancy import InvalidSlug


def _serve(settings: Settings, args: argparse.Namespace, *, projections: bool) -> int:
    import uvicorn

    from api.app import create_app

    app = create_app(settings, projections=projections)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
    return 0


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
    from projections.registry import BY_NAME, PROJECTIONS

    runtime = Runtime.open(settings)
    try:
        slugs = [args.tenant] if args.tenant else runtime.tenants.slugs()
        chosen = [BY_NAME[args.projection]] if args.projection else list(PROJECTIONS)
        for slug in slugs:
            tenant = runtime.tenants.get(slug)
            for projection in chosen:
                position = rebuild(tenant, projection, batch_size=settings.projection_batch)
                _print({"tenant": slug, "projection": projection.name, "position": position})
    finally:
        runtime.close()
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from infrastructure.importer import ImportRefused, import_file

    runtime = Runtime.open(settings)
    try:
        tenant = runtime.tenants.get(args.tenant)
        summary = import_file(
            tenant,
            Path(args.file),
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
        sys.stderr.write(f"membercore: {e}\n")
        return 2
    finally:
        runtime.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="membercore", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("serve", "API and projection worker in one process"),
        ("api", "the API only"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--host")
        s.add_argument("--port", type=int)
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
    rb.add_argument("--tenant")
    rb.add_argument("--projection")

    imp = sub.add_parser("import", help="bulk imports").add_subparsers(dest="what", required=True)
    ic = imp.add_parser(
        "customers", help="import customers from a CSV or NDJSON file (resumable, idempotent)"
    )
    ic.add_argument("file")
    ic.add_argument("--tenant", required=True)
    ic.add_argument("--format", choices=["csv", "ndjson"], help="default: by the file extension")
    ic.add_argument("--report", help="rejected rows (NDJSON); default FILE.rejected.ndjson")
    ic.add_argument("--checkpoint", help="resume state; default FILE.progress.json")
    ic.add_argument("--chunk", type=int, default=1000, help="rows per transaction (1000)")
    ic.add_argument("--workers", type=int, help="parsing processes (default: by file size)")
    ic.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ic.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings.from_env()
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
    except (ApplicationError, InvalidSlug) as e:
        sys.stderr.write(f"membercore: {e}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
