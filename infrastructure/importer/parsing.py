"""Parsing an import's chunks, in worker processes when the input is large (the CPU-bound part:
phone numbers, emails), in order and a few chunks ahead."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context

from application.imports import CsvLayout, Parsed, RawRow, parse_rows
from domain.program import ProgramRules
from infrastructure.crypto import claim_id
from infrastructure.importer.reading import Chunk

# Below this input size parsing stays in-process: starting worker processes costs ~1 s.
WORKERS_FROM_BYTES = 2_000_000


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


def default_workers(size: int) -> int:
    if size < WORKERS_FROM_BYTES:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))
