"""Bulk import of customers: rows decoded and checked, then registered a chunk at a time.

``register_customer`` costs a round trip or more per row. An import instead decides a whole chunk
in memory and writes it in one transaction:

1. each row is decoded (an NDJSON object with the POST /v1/customers fields, or a CSV record) and
   checked by ``parse_registration``, exactly as a request is; a bad row becomes a
   :class:`Rejection` with its row number and every problem found;
2. the identity claims of the whole chunk (and the row's customer id) are read in one query;
3. each row is decided with ``decide_registration`` in row order, against the stored holders and
   the customers registered by earlier rows of the same chunk (a later row sharing an identity
   with an earlier one matches it);
4. the chunk's events (``Customer.Registered``, ``IdentityClaim.Claimed``...) are saved at once,
   after the new customers' data keys are made in one round trip.

Rows whose decision involves stored customers beyond a plain match (linking a new identity to a
stored customer, merging several, sharing a stored claim, a referrer to check) are *deferred*:
they go through ``register_customer`` one by one after the chunk's save, in row order, and so
does every later row of the chunk sharing an identity with them. If the chunk's save collides
with a concurrent writer (a claim taken meanwhile), the whole chunk is registered row by row.

Customer ids are derived from (tenant, source fingerprint, row number), so importing the same
rows again produces the same events, and a row already imported is ``matched`` (by its
identities' claims, or by its customer id) without writing anything.

The package: ``rows`` (the row formats: NDJSON and CSV rows decoded and checked into commands),
``events`` (what a row records, built without the aggregates; the imported customer's id) and
``chunk`` (deciding and writing a chunk). The names below are the import's public surface.
"""

from application.imports.chunk import (
    ChunkOutcome,
    ChunkPlan,
    CustomerImport,
    ImportSummary,
    StoredStreams,
    Totals,
)
from application.imports.events import (
    IMPORT_NAMESPACE,
    claimed_event,
    customer_id_for,
    registered_event,
)
from application.imports.rows import (
    BadRow,
    CsvHeaderError,
    CsvLayout,
    Parsed,
    ParsedRow,
    RawRow,
    Rejection,
    RowProblem,
    decode_ndjson,
    parse_rows,
)

__all__ = [
    "IMPORT_NAMESPACE",
    "BadRow",
    "ChunkOutcome",
    "ChunkPlan",
    "CsvHeaderError",
    "CsvLayout",
    "CustomerImport",
    "ImportSummary",
    "Parsed",
    "ParsedRow",
    "RawRow",
    "Rejection",
    "RowProblem",
    "StoredStreams",
    "Totals",
    "claimed_event",
    "customer_id_for",
    "decode_ndjson",
    "parse_rows",
    "registered_event",
]
