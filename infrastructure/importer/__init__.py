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

The package: ``reading`` (rows of the input, in chunks), ``parsing`` (the worker processes),
``stored`` (the database side) and ``running`` (the pipeline, the checkpoint, the summary).
"""

from infrastructure.importer.parsing import Parser, default_workers
from infrastructure.importer.reading import (
    EXTENSIONS,
    FORMATS,
    MAX_ROW_BYTES,
    Chunk,
    ImportRefused,
    Source,
    fingerprint,
    format_of,
)
from infrastructure.importer.running import (
    CHECKPOINT_VERSION,
    DEFAULT_CHUNK,
    Checkpoint,
    Run,
    import_file,
    import_stream,
)
from infrastructure.importer.stored import StoredStreamsReader, forget_keys, identity_secret

__all__ = [
    "CHECKPOINT_VERSION",
    "DEFAULT_CHUNK",
    "EXTENSIONS",
    "FORMATS",
    "MAX_ROW_BYTES",
    "Checkpoint",
    "Chunk",
    "ImportRefused",
    "Parser",
    "Run",
    "Source",
    "StoredStreamsReader",
    "default_workers",
    "fingerprint",
    "forget_keys",
    "format_of",
    "identity_secret",
    "import_file",
    "import_stream",
]
