"""MergeCandidatesProjection: customers suggested as the same person, waiting for a review.

One row per ``Customer.MatchSuggested`` (the customer that recorded it, the other one, the
suggesting identity type as ``reason`` = ``identity:<type>``), until either side is merged into
the other or into anyone else, or erased: then every pair it is part of disappears. A pair
suggested again while it is listed keeps its first suggestion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.customer import Customer
from projections.engine import Positioned, Projection

TABLE = "merge_candidates"


class MergeCandidatesProjection(Projection):
    name: ClassVar[str] = "merge_candidates"
    tables: ClassVar[tuple[str, ...]] = (TABLE,)
    topics: ClassVar[frozenset[str]] = frozenset(
        {Customer.MatchSuggested.TOPIC, Customer.MergedInto.TOPIC, Customer.Erased.TOPIC}
    )

    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        s, table = Identifier(schema), Identifier(TABLE + suffix)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " customer_id uuid NOT NULL, other_id uuid NOT NULL, reason text NOT NULL,"
                " suggested_at timestamptz NOT NULL, position bigint NOT NULL,"
                " PRIMARY KEY (customer_id, other_id))"
            ).format(s, table)
        )
        for column in ("other_id", "position"):
            curs.execute(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                    Identifier(f"{TABLE}{suffix}_{column}_idx"), s, table, Identifier(column)
                )
            )

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        table = SQL("{}.{}").format(Identifier(schema), Identifier(TABLE + suffix))
        # Pairs suggested in this batch and still listed at its end, and customers whose pairs
        # of earlier batches go (deleted before the batch's pairs are inserted).
        pairs: dict[tuple[UUID, UUID], tuple[str, datetime, int]] = {}
        gone: set[UUID] = set()
        for p in events:
            e, cid = p.event, p.event.originator_id
            if isinstance(e, Customer.MatchSuggested):
                if cid != e.other_id:
                    pairs.setdefault(
                        (cid, e.other_id), (f"identity:{e.identity_type}", e.timestamp, p.position)
                    )
            elif isinstance(e, Customer.MergedInto | Customer.Erased):
                gone.add(cid)
                pairs = {k: v for k, v in pairs.items() if cid not in k}
        if gone:
            ids = list(gone)
            curs.execute(
                SQL("DELETE FROM {} WHERE customer_id = ANY(%s) OR other_id = ANY(%s)").format(
                    table
                ),
                (ids, ids),
            )
        if pairs:
            keys = list(pairs)
            curs.execute(
                SQL(
                    "INSERT INTO {} (customer_id, other_id, reason, suggested_at, position)"
                    " SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[],"
                    " %b::timestamptz[], %b::bigint[])"
                    " ON CONFLICT (customer_id, other_id) DO NOTHING"
                ).format(table),
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [pairs[k][0] for k in keys],
                    [pairs[k][1] for k in keys],
                    [pairs[k][2] for k in keys],
                ),
            )
