"""Running an import: one pass over the input from its checkpoint, planning chunk k+1 while
chunk k is written, recording after every written chunk where to resume."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from application.imports import (
    ChunkOutcome,
    CustomerImport,
    ImportSummary,
    Rejection,
    Totals,
    customer_id_for,
)
from application.program import program_rules
from infrastructure.importer.parsing import Parser, default_workers
from infrastructure.importer.reading import Chunk, ImportRefused, Source, fingerprint, format_of
from infrastructure.importer.stored import StoredStreamsReader, forget_keys, identity_secret
from infrastructure.tenancy import Tenant

DEFAULT_CHUNK = 1000
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    tenant: str
    fingerprint: str
    format: str
    offset: int = 0
    line: int = 0
    rows: int = 0
    registered: int = 0
    matched: int = 0
    rejected: int = 0
    position: int = 0
    report_bytes: int = 0
    version: int = CHECKPOINT_VERSION

    def totals(self) -> Totals:
        return Totals(self.rows, self.registered, self.matched, self.rejected, self.position)

    def save(self, path: Path) -> None:
        """Atomically (write a sibling file, rename it over): a kill leaves the old or the new."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ImportRefused(f"cannot read the checkpoint {path}: {e}") from e
        if data.get("version") != CHECKPOINT_VERSION:
            raise ImportRefused(f"{path} is not a checkpoint of this version: use --restart")
        return cls(**data)


@dataclass
class Run:
    """One pass over the input from a position: parse, plan k+1 while k is written, report."""

    tenant: Tenant
    source: Source
    source_id: str
    chunk: int
    workers: int
    actor: str
    on_chunk: Callable[[ChunkOutcome, Chunk], None]
    totals: Totals = field(default_factory=Totals)

    def run(self, offset: int, line: int) -> Totals:
        app = self.tenant.app
        rules = program_rules(app)
        importer = CustomerImport(
            app,
            StoredStreamsReader(app),
            rules,
            customer_id=partial(customer_id_for, self.tenant.slug, self.source_id),
            actor=self.actor,
        )
        parser = Parser(rules, identity_secret(self.tenant), self.source.layout, self.workers)
        writer = ThreadPoolExecutor(1, thread_name_prefix="import-writer")
        pending: tuple[Future[ChunkOutcome], Chunk] | None = None
        busy: frozenset[bytes] = frozenset()
        try:
            for parsed, chunk in parser.parse(self.source.chunks(offset, line, self.chunk)):
                plan = importer.plan(parsed, busy)
                if pending is not None:
                    self._finish(*pending)
                pending = (writer.submit(importer.write, plan), chunk)
                busy = frozenset(plan.touched)
            if pending is not None:
                done, pending = pending, None
                self._finish(*done)
        finally:
            if pending is not None:  # an error: let the write under way end, record nothing
                with contextlib.suppress(Exception):
                    pending[0].result()
            writer.shutdown(wait=True)
            parser.close()
        return self.totals

    def _finish(self, future: Future[ChunkOutcome], chunk: Chunk) -> None:
        outcome = future.result()
        forget_keys(self.tenant.app, outcome.customers)
        self.totals.add(outcome)
        self.on_chunk(outcome, chunk)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Let the cyclic garbage collector run rarely while importing.

    A chunk allocates tens of thousands of objects that live until it is written: with the
    default thresholds they are promoted and re-scanned over and over (measured: ~20 % of an
    import's time). Everything allocated before the import is frozen out of the scans, and a
    young collection waits for 50,000 new objects instead of 700. Restored afterwards.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def import_file(
    tenant: Tenant,
    path: Path,
    *,
    fmt: str | None = None,
    report: Path | None = None,
    checkpoint: Path | None = None,
    chunk: int = DEFAULT_CHUNK,
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    actor: str = "cli",
    on_progress: Callable[[Checkpoint], None] | None = None,
) -> dict[str, Any]:
    """Import (or resume importing) ``path``; returns the summary the CLI prints.

    ``on_progress`` is called with the checkpoint after every written chunk.
    """
    if chunk < 1:
        raise ImportRefused("--chunk must be at least 1")
    fmt = format_of(path, fmt)
    report = report or path.with_name(path.name + ".rejected.ndjson")
    checkpoint = checkpoint or path.with_name(path.name + ".progress.json")
    started = time.monotonic()
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        digest = fingerprint(file)
        state = None if restart else Checkpoint.load(checkpoint)
        if state is not None and (state.fingerprint, state.tenant, state.format) != (
            digest,
            tenant.slug,
            fmt,
        ):
            raise ImportRefused(
                f"{checkpoint} is the checkpoint of another file, tenant or format:"
                " use --restart to start over"
            )
        resumed = state is not None
        state = state or Checkpoint(tenant.slug, digest, fmt)
        source = Source(file, fmt)
        with report.open("a+b") as out:
            # Rows of a chunk rejected after the last checkpoint are reported again on resume.
            out.truncate(min(state.report_bytes, out.seek(0, os.SEEK_END)))
            out.seek(0, os.SEEK_END)
            bar = tqdm(
                total=size,
                initial=max(state.offset, source.data_offset),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="import",
                file=sys.stderr,
                disable=None if progress else True,
                dynamic_ncols=True,
            )
            first_row = state.line + 1
            before = state.rows
            last = [max(state.offset, source.data_offset)]

            def on_chunk(outcome: ChunkOutcome, chunk: Chunk) -> None:
                for rejection in outcome.rejections:
                    out.write(json.dumps(rejection.to_dict(), ensure_ascii=False).encode() + b"\n")
                out.flush()
                state.offset, state.line = chunk.end_offset, chunk.end_line
                state.rows += outcome.rows
                state.registered += outcome.registered
                state.matched += outcome.matched
                state.rejected += len(outcome.rejections)
                state.position = max(state.position, outcome.position)
                state.report_bytes = out.tell()
                state.save(checkpoint)
                bar.update(chunk.end_offset - last[0])
                last[0] = chunk.end_offset
                bar.set_postfix(rows=state.rows, rejected=state.rejected, refresh=False)
                if on_progress is not None:
                    on_progress(state)

            run = Run(
                tenant,
                source,
                source_id=digest,
                chunk=chunk,
                workers=default_workers(size) if workers is None else workers,
                actor=actor,
                on_chunk=on_chunk,
            )
            try:
                with _few_collections():
                    run.run(state.offset, state.line)
            finally:
                bar.close()
            report_bytes = out.tell()
    if report_bytes == 0:
        report.unlink(missing_ok=True)
    checkpoint.unlink(missing_ok=True)  # done: running the file again imports it again (no-op)
    seconds = time.monotonic() - started
    rows = state.rows - before
    summary: dict[str, Any] = {
        "rows": state.rows,
        "registered": state.registered,
        "matched": state.matched,
        "rejected": state.rejected,
        "seconds": round(seconds, 3),
        "rate": round(rows / seconds, 1) if seconds > 0 else 0.0,
        "position": state.position,
        "report": str(report) if report_bytes else None,
    }
    if resumed:
        summary["resumed_at_line"] = first_row
    return summary


def import_stream(
    tenant: Tenant,
    file: IO[bytes],
    *,
    fmt: str,
    source_id: str,
    actor: str,
    chunk: int = DEFAULT_CHUNK,
    workers: int = 0,
    max_rejections: int = 1000,
) -> ImportSummary:
    """Import an uploaded body (spooled to ``file``); rejections kept up to ``max_rejections``."""
    started = time.monotonic()
    source = Source(file, fmt)
    kept: list[Rejection] = []

    def on_chunk(outcome: ChunkOutcome, chunk: Chunk) -> None:
        room = max_rejections - len(kept)
        kept.extend(outcome.rejections[:room])

    run = Run(tenant, source, source_id, chunk, workers, actor, on_chunk)
    totals = run.run(0, 0)
    return ImportSummary(
        rows=totals.rows,
        registered=totals.registered,
        matched=totals.matched,
        rejected=totals.rejected,
        seconds=time.monotonic() - started,
        position=totals.position,
        rejections=tuple(kept),
        rejections_truncated=totals.rejected > len(kept),
    )
