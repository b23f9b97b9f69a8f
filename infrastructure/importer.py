"""Running a customer import: streaming reader, parsing processes, pipelined writes, checkpoint.

``import_file`` is ``membercore import customers FILE``; ``import_stream`` is the API upload.
Both read the input a line (or CSV record) at a time and hold at most a few chunks in memory,
whatever the input's size. The decisions are ``application.imports``'s; this module only moves
rows: it parses chunks in worker processes (the CPU-bound part: phone numbers, emails), decides
chunk k+1 while chunk k is being written, and records after every written chunk where to resume.

The checkpoint (``FILE.progress.json`` unless told) holds the byte offset and line after the last
written chunk, the totals so far and the report's length. A killed import started again resumes
there; a chunk interrupted before its commit wrote nothing, and one committed but not yet
checkpointed is read again and finds its rows already imported (matched, nothing written).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier
from tqdm import tqdm

from application.imports import (
    ChunkOutcome,
    CsvHeaderError,
    CsvLayout,
    CustomerImport,
    ImportSummary,
    Parsed,
    RawRow,
    Rejection,
    RowProblem,
    Totals,
    customer_id_for,
    parse_rows,
)
from application.program import program_rules
from domain.program import ProgramRules
from infrastructure.crypto import IDENTITY_SECRET, SECRETS_TABLE, claim_id
from infrastructure.eventstore import EVENTS_TABLE
from infrastructure.tenancy import Tenant
from infrastructure.tenant_app import TenantApp

FORMATS = ("csv", "ndjson")
EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}
DEFAULT_CHUNK = 1000
# Below this input size parsing stays in-process: starting worker processes costs ~1 s.
WORKERS_FROM_BYTES = 2_000_000
CHECKPOINT_VERSION = 1
MAX_ROW_BYTES = 1 << 20  # an NDJSON line longer than this is rejected unread (as a request is)
TOO_LONG = RowProblem(None, f"longer than {MAX_ROW_BYTES} bytes")


class ImportRefused(Exception):
    """The import cannot start (unknown format, bad CSV header, checkpoint of another file)."""


def format_of(path: Path | str, given: str | None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise ImportRefused(f"format must be one of {', '.join(FORMATS)}")
        return given
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImportRefused(f"cannot tell the format of {path}: give --format csv or ndjson")
    return fmt


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    raws: list[RawRow]
    end_offset: int  # bytes of the input consumed once this chunk is read
    end_line: int  # lines consumed


class Source:
    """Rows of a binary file object, each with the line it starts on and the offset after it."""

    def __init__(self, file: IO[bytes], fmt: str) -> None:
        self.file = file
        self.fmt = fmt
        self.layout: CsvLayout | None = None
        self.data_offset = 0  # where the first row starts
        self.data_line = 0  # lines before it
        if fmt == "csv":
            file.seek(0)
            header: list[str] = []
            for _, record, offset, line in self._csv(0, 0):
                if isinstance(record, RowProblem):
                    raise ImportRefused(f"cannot read the CSV header: {record.reason}")
                header, self.data_offset, self.data_line = record, offset, line
                break
            if not header:
                raise ImportRefused("the CSV file has no header row")
            try:
                self.layout = CsvLayout.of(header)
            except CsvHeaderError as e:
                raise ImportRefused(str(e)) from None

    def rows(self, offset: int, line: int) -> Iterator[tuple[int, Any, int, int]]:
        """(row = its first line, raw row, offset after it, lines after it) from ``offset``."""
        offset, line = max(offset, self.data_offset), max(line, self.data_line)
        self.file.seek(offset)
        if self.fmt == "ndjson":
            read = partial(self.file.readline, MAX_ROW_BYTES + 1)
            for raw in iter(read, b""):
                offset += len(raw)
                line += 1
                if len(raw) > MAX_ROW_BYTES:  # skip the rest of the line, never hold it whole
                    rest = raw
                    while not rest.endswith(b"\n") and (rest := read()):
                        offset += len(rest)
                    yield line, TOO_LONG, offset, line
                elif raw.strip():
                    yield line, raw, offset, line
        else:
            yield from self._csv(offset, line)

    def _csv(self, offset: int, line: int) -> Iterator[tuple[int, Any, int, int]]:
        position = [offset, line]
        decoder = codecs.getincrementaldecoder("utf-8")("replace")

        def lines() -> Iterator[str]:
            for raw in iter(self.file.readline, b""):
                position[0] += len(raw)
                position[1] += 1
                yield decoder.decode(raw)

        reader = csv.reader(lines(), strict=False)
        while True:
            start = position[1] + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # a field over the size limit, an unterminated quote at the end
                yield start, RowProblem(None, f"not a CSV record: {e}"), position[0], position[1]
                continue
            if record and any(cell.strip() for cell in record):
                yield start, record, position[0], position[1]

    def chunks(self, offset: int, line: int, size: int) -> Iterator[Chunk]:
        raws: list[RawRow] = []
        end_offset, end_line = offset, line
        for row, raw, end_offset, end_line in self.rows(offset, line):
            raws.append((row, raw))
            if len(raws) >= size:
                yield Chunk(raws, end_offset, end_line)
                raws = []
        if raws or end_offset != offset:
            yield Chunk(raws, end_offset, end_line)


def fingerprint(file: IO[bytes]) -> str:
    """sha256 of the whole input (one streaming pass)."""
    digest = hashlib.sha256()
    file.seek(0)
    for block in iter(partial(file.read, 1 << 20), b""):
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()


# -- parsing (in worker processes when the input is large) ------------------------------------


def _parse(
    raws: Sequence[RawRow], rules: ProgramRules, secret: bytes, layout: CsvLayout | None
) -> list[Parsed]:
    return parse_rows(raws, rules, partial(claim_id, secret), layout)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not: its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _start_parser(pid: int) -> None:
    """In a parsing process: collect garbage rarely (it only parses), and exit as soon as the
    importing process is gone (killed, say). A worker blocked writing a result nobody reads
    would otherwise live on, holding the importer's stdout and stderr open."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])

    def watch() -> None:
        while _alive(pid):
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="watch-importer", daemon=True).start()


class Parser:
    """Parses chunks in order, in ``workers`` processes (0: in this thread), a few ahead."""

    def __init__(
        self, rules: ProgramRules, secret: bytes, layout: CsvLayout | None, workers: int
    ) -> None:
        self.args = (rules, secret, layout)
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            # forkserver: never fork a process whose pool threads may hold locks.
            self.pool = ProcessPoolExecutor(
                workers,
                mp_context=get_context("forkserver"),
                initializer=_start_parser,
                initargs=(os.getpid(),),
            )

    def parse(self, chunks: Iterator[Chunk]) -> Iterator[tuple[list[Parsed], Chunk]]:
        if self.pool is None:
            for chunk in chunks:
                yield _parse(chunk.raws, *self.args), chunk
            return
        window: deque[tuple[Future[list[Parsed]], Chunk]] = deque()
        ahead = 2 * self.workers + 1  # bounded: the input is never read far ahead
        for chunk in chunks:
            window.append((self.pool.submit(_parse, chunk.raws, *self.args), chunk))
            if len(window) >= ahead:
                future, done = window.popleft()
                yield future.result(), done
        while window:
            future, done = window.popleft()
            yield future.result(), done

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# -- the database side ------------------------------------------------------------------------


def identity_secret(tenant: Tenant) -> bytes:
    with tenant.datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL("SELECT value FROM {}.{} WHERE name = %s").format(
                Identifier(tenant.schema), Identifier(SECRETS_TABLE)
            ),
            (IDENTITY_SECRET,),
        )
        row = curs.fetchone()
    assert row is not None, f"tenant schema {tenant.schema} has no identity secret"
    return bytes(row["value"])


class StoredStreamsReader:
    """A chunk's stored claims (and which of its customer ids exist), or stored customers, in
    one statement each."""

    def __init__(self, app: TenantApp) -> None:
        self.app = app
        table = SQL("{}.{}").format(Identifier(app.schema), Identifier(EVENTS_TABLE))
        # One index probe per id whatever the table's statistics say (a fresh tenant's are
        # unset: the planner would pick a merge join over the whole index, and JIT it).
        self.claims_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%b::bytea[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id,"
            " originator_version, topic, state FROM {t}"
            " WHERE originator_id = CAST(encode(k.id, 'hex') AS uuid) OFFSET 0) e"
            " UNION ALL SELECT e.originator_id, 0, NULL, NULL"
            " FROM unnest(%b::uuid[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id FROM {t}"
            " WHERE originator_id = k.id AND originator_version = 1 OFFSET 0) e"
        ).format(t=table)
        self.streams_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%b::uuid[]) AS k(id) CROSS JOIN LATERAL (SELECT originator_id,"
            " originator_version, topic, state FROM {t} WHERE originator_id = k.id OFFSET 0) e"
        ).format(t=table)

    def claims(
        self, claim_ids: Sequence[bytes], customer_ids: Sequence[UUID]
    ) -> tuple[dict[bytes, list[Any]], set[UUID]]:
        rows = self._select(self.claims_statement, (list(claim_ids), list(customer_ids)))
        existing = {r["originator_id"] for r in rows if r["topic"] is None}
        events = self._decode([r for r in rows if r["topic"] is not None])
        return {k.bytes: v for k, v in events.items()}, existing

    def customers(self, customer_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        return self._decode(self._select(self.streams_statement, (list(customer_ids),)))

    def _select(self, statement: Any, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.app.datastore.transaction(commit=False) as curs:
            curs.execute("SET LOCAL jit = off")
            curs.execute(statement, params, prepare=True)
            return curs.fetchall()

    def _decode(self, rows: list[dict[str, Any]]) -> dict[UUID, list[Any]]:
        stored: dict[UUID, list[StoredEvent]] = {}
        for r in sorted(rows, key=_stream_order):
            stored.setdefault(r["originator_id"], []).append(
                StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
            )
        mapper = self.app.sealing_mapper
        mapper.prepare([e for events in stored.values() for e in events])  # keys at once
        return {k: [mapper.to_domain_event(e) for e in events] for k, events in stored.items()}


def _stream_order(row: dict[str, Any]) -> tuple[str, int]:
    return str(row["originator_id"]), int(row["originator_version"])


def forget_keys(app: TenantApp, customer_ids: Sequence[UUID]) -> None:
    """Drop written customers' data keys from the key ring's cache: an import would otherwise
    grow it by one entry per row (up to its 200,000-entry reset)."""
    app.keys.evict(customer_ids)


# -- running ----------------------------------------------------------------------------------


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


def default_workers(size: int) -> int:
    if size < WORKERS_FROM_BYTES:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


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
