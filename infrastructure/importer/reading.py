"""Reading an import's input: rows of an NDJSON or CSV file, each with the line it starts on and
the byte offset after it (where a resumed import starts again), in chunks."""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from application.imports import CsvHeaderError, CsvLayout, RawRow, RowProblem

FORMATS = ("csv", "ndjson")
EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}
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
