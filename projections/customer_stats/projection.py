"""CustomerStatsProjection: order count, spend net of refunds, first and last order, refunds and
distinct purchase days per customer, kept from ``Order.Placed`` and ``Order.Refunded``.

``customer_stats (customer_id, order_count, gross_spend, refunded, refund_count, first_order_at,
last_order_at, purchase_days)``; the days themselves are in ``customer_order_days (customer_id,
day)`` (the order's date in the tenant's time zone). A refund counts once per refund command;
``total_spend = gross_spend - refunded``; ``avg_order_value`` is ``total_spend // order_count``
(floored: minor units stay integers). Back-dated orders move ``first_order_at`` back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.order import Order
from projections.engine import Positioned, Projection

STATS = "customer_stats"
DAYS = "customer_order_days"


@dataclass
class _Delta:
    orders: int = 0
    spend: int = 0
    refunded: int = 0
    refunds: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def order(self, amount: int, at: datetime) -> None:
        self.orders += 1
        self.spend += amount
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)


class CustomerStatsProjection(Projection):
    name: ClassVar[str] = "customer_stats"
    tables: ClassVar[tuple[str, ...]] = (STATS, DAYS)
    topics: ClassVar[frozenset[str]] = frozenset({Order.Placed.TOPIC, Order.Refunded.TOPIC})

    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        s = Identifier(schema)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " customer_id uuid PRIMARY KEY, order_count integer NOT NULL,"
                " gross_spend bigint NOT NULL, refunded bigint NOT NULL,"
                " refund_count integer NOT NULL, first_order_at timestamptz,"
                " last_order_at timestamptz, purchase_days integer NOT NULL)"
            ).format(s, Identifier(STATS + suffix))
        )
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " customer_id uuid NOT NULL, day date NOT NULL, PRIMARY KEY (customer_id, day))"
            ).format(s, Identifier(DAYS + suffix))
        )

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        deltas: dict[UUID, _Delta] = {}
        days: set[tuple[UUID, date]] = set()
        for p in events:
            e = p.event
            delta = deltas.setdefault(e.customer_id, _Delta())
            if isinstance(e, Order.Placed):
                delta.order(e.amount, e.placed_at)
                days.add((e.customer_id, e.placed_on))
            elif isinstance(e, Order.Refunded):
                delta.refunded += e.amount
                delta.refunds += 1
        if not deltas:
            return
        stats = SQL("{}.{}").format(Identifier(schema), Identifier(STATS + suffix))
        days_table = SQL("{}.{}").format(Identifier(schema), Identifier(DAYS + suffix))
        ids = list(deltas)
        curs.execute(
            SQL(
                "INSERT INTO {t} AS s (customer_id, order_count, gross_spend, refunded,"
                " refund_count, first_order_at, last_order_at, purchase_days)"
                " SELECT *, 0 FROM unnest(%b::uuid[], %b::int[], %b::bigint[], %b::bigint[],"
                " %b::int[], %b::timestamptz[], %b::timestamptz[])"
                " ON CONFLICT (customer_id) DO UPDATE SET"
                " order_count = s.order_count + excluded.order_count,"
                " gross_spend = s.gross_spend + excluded.gross_spend,"
                " refunded = s.refunded + excluded.refunded,"
                " refund_count = s.refund_count + excluded.refund_count,"
                " first_order_at = LEAST(s.first_order_at, excluded.first_order_at),"
                " last_order_at = GREATEST(s.last_order_at, excluded.last_order_at)"
            ).format(t=stats),
            (
                ids,
                [deltas[c].orders for c in ids],
                [deltas[c].spend for c in ids],
                [deltas[c].refunded for c in ids],
                [deltas[c].refunds for c in ids],
                [deltas[c].first for c in ids],
                [deltas[c].last for c in ids],
            ),
        )
        if days:
            pairs = sorted(days)
            curs.execute(
                SQL(
                    "WITH added AS (INSERT INTO {d} (customer_id, day)"
                    " SELECT * FROM unnest(%b::uuid[], %b::date[]) ON CONFLICT DO NOTHING"
                    " RETURNING customer_id)"
                    " UPDATE {t} s SET purchase_days = s.purchase_days + n.count"
                    " FROM (SELECT customer_id, count(*) FROM added GROUP BY customer_id) n"
                    " WHERE s.customer_id = n.customer_id"
                ).format(d=days_table, t=stats),
                ([c for c, _ in pairs], [d for _, d in pairs]),
            )


def profile_stats_sql(schema: str) -> str:
    """A jsonb scalar subquery: the profile's ``stats`` for the outer ``p.customer_id``."""
    table = f'"{schema}"."{STATS}"'
    return (
        "(SELECT jsonb_build_object('order_count', s.order_count,"
        " 'total_spend', s.gross_spend - s.refunded,"
        " 'first_order_at', s.first_order_at, 'last_order_at', s.last_order_at,"
        " 'avg_order_value', CASE WHEN s.order_count > 0"
        " THEN (s.gross_spend - s.refunded) / s.order_count END,"
        " 'refund_count', s.refund_count, 'purchase_days', s.purchase_days)"
        f" FROM {table} s WHERE s.customer_id = p.customer_id)"
    )
