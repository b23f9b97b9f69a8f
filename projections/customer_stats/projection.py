"""CustomerStatsProjection: order count, spend net of refunds, first and last order, refunds and
distinct purchase days per person, following merges, their undos and reassigned orders.

A profile is one person, so a survivor's stats count its own orders and those of every customer
currently merged into it (transitively: C merged into B merged into A counts for A); an undo
takes them back out. A merged-away customer has no row (the profile shows empty stats, as its
points and levels are empty: everything moved to the survivor).

Tables:

- ``customer_stats_orders (order_id, customer_id, placed_at, day, amount, refunded,
  refund_count)``: one row per order, kept from ``Order.Placed``, ``Order.Refunded`` and
  ``Order.Reassigned`` (the undo of a merge hands a routed order back to the source);
  ``day`` is the order's date in the tenant's time zone;
- ``customer_stats_links (source_id, survivor_id)``: the merges in force, kept from
  ``Customer.MergedInto`` (added) and ``Customer.MergeUndone`` (removed);
- ``customer_stats (customer_id, order_count, gross_spend, refunded, refund_count,
  first_order_at, last_order_at, purchase_days)``: the output the profile reads, recomputed at
  the end of each batch for the people the batch touched, from the orders of the person and
  everyone merged into it. ``purchase_days`` counts distinct days over all of them (a day on
  which both merged customers bought counts once). A refund counts once per refund command;
  ``total_spend = gross_spend - refunded``; ``avg_order_value`` is ``total_spend //
  order_count`` (floored: minor units stay integers). Back-dated orders move
  ``first_order_at`` back. A person without orders has no row.

Within a batch the order and link rows are written first (their final state does not depend on
where batches end: placements and links are keyed, refunds add up), then the stats of every
touched person are recomputed from them, so a rebuild in batches of any size gives the same
rows. Tables laid out before merges counted (``customer_order_days``) are replaced on install
and the projection is caught up again from position 0 (``install``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.customer import Customer
from domain.order import Order
from infrastructure.tenancy import TRACKING_TABLE
from projections.engine import Positioned, Projection

STATS = "customer_stats"
ORDERS = "customer_stats_orders"
LINKS = "customer_stats_links"
# The table of the layout before stats followed merges: its presence without ORDERS marks a
# tenant whose stats must be rebuilt from the log.
OLD_DAYS = "customer_order_days"


@dataclass
class _Placed:
    customer_id: UUID
    placed_at: datetime
    day: date
    amount: int
    refunded: int = 0
    refund_count: int = 0


@dataclass
class _Batch:
    """The net effect of a batch on the order and link rows, and who it touched."""

    placed: dict[UUID, _Placed]
    refunds: dict[UUID, tuple[int, int]]  # of orders placed before the batch: amount, count
    owners: dict[UUID, UUID]  # reassigned orders placed before the batch: their last owner
    links: dict[UUID, UUID | None]  # source -> survivor (None: the merge was undone)
    touched: set[UUID]


def _collect(events: Sequence[Positioned]) -> _Batch:
    b = _Batch({}, {}, {}, {}, set())
    for p in events:
        e = p.event
        if isinstance(e, Order.Placed):
            b.placed[e.originator_id] = _Placed(e.customer_id, e.placed_at, e.placed_on, e.amount)
            b.touched.add(e.customer_id)
        elif isinstance(e, Order.Refunded):
            placed = b.placed.get(e.originator_id)
            if placed is not None:
                placed.refunded += e.amount
                placed.refund_count += 1
            else:
                amount, count = b.refunds.get(e.originator_id, (0, 0))
                b.refunds[e.originator_id] = (amount + e.amount, count + 1)
            b.touched.add(e.customer_id)
        elif isinstance(e, Order.Reassigned):
            placed = b.placed.get(e.originator_id)
            if placed is not None:
                placed.customer_id = e.customer_id
            else:
                b.owners[e.originator_id] = e.customer_id
            b.touched |= {e.customer_id, e.previous_customer_id}
        elif isinstance(e, Customer.MergedInto):
            b.links[e.originator_id] = e.survivor_id
            b.touched |= {e.originator_id, e.survivor_id}
        elif isinstance(e, Customer.MergeUndone):
            b.links[e.originator_id] = None  # the survivor is touched as the link goes
            b.touched.add(e.originator_id)
    return b


class CustomerStatsProjection(Projection):
    name: ClassVar[str] = "customer_stats"
    tables: ClassVar[tuple[str, ...]] = (STATS, ORDERS, LINKS)
    topics: ClassVar[frozenset[str]] = frozenset(
        {
            Order.Placed.TOPIC,
            Order.Refunded.TOPIC,
            Order.Reassigned.TOPIC,
            Customer.MergedInto.TOPIC,
            Customer.MergeUndone.TOPIC,
        }
    )

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
                " order_id uuid PRIMARY KEY, customer_id uuid NOT NULL,"
                " placed_at timestamptz NOT NULL, day date NOT NULL, amount bigint NOT NULL,"
                " refunded bigint NOT NULL, refund_count integer NOT NULL)"
            ).format(s, Identifier(ORDERS + suffix))
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (customer_id)").format(
                Identifier(f"{ORDERS}{suffix}_customer"), s, Identifier(ORDERS + suffix)
            )
        )
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " source_id uuid PRIMARY KEY, survivor_id uuid NOT NULL)"
            ).format(s, Identifier(LINKS + suffix))
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (survivor_id)").format(
                Identifier(f"{LINKS}{suffix}_survivor"), s, Identifier(LINKS + suffix)
            )
        )

    def install(self, curs: Cursor[DictRow], schema: str) -> None:
        """Create the tables; a tenant still on the layout before stats followed merges (no
        per-order table) gets its stats dropped and its tracking reset, so the worker builds
        them again from position 0 (reads show empty stats until it has caught up)."""
        curs.execute(
            "SELECT to_regclass(%s) IS NOT NULL AS old, to_regclass(%s) IS NULL AS missing",
            (f'"{schema}"."{OLD_DAYS}"', f'"{schema}"."{ORDERS}"'),
        )
        row = curs.fetchone()
        if row is not None and row["old"] and row["missing"]:
            for table in (STATS, OLD_DAYS):
                curs.execute(
                    SQL("DROP TABLE IF EXISTS {}.{}").format(Identifier(schema), Identifier(table))
                )
            curs.execute(
                SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                    Identifier(schema), Identifier(TRACKING_TABLE)
                ),
                (self.name,),
            )
        self.create_tables(curs, schema)

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        b = _collect(events)
        if not b.touched:
            return
        t = _tables(schema, suffix)
        # Everyone whose group may change: the touched and the people they counted for before
        # the batch's links changed and after (their chains of survivors).
        people = b.touched | _survivors(curs, t, b.touched)
        _write_orders(curs, t, b)
        people |= _write_links(curs, t, b.links)
        people |= _survivors(curs, t, people)
        _recompute(curs, t, sorted(people))


@dataclass(frozen=True)
class _Tables:
    stats: Composed
    orders: Composed
    links: Composed


def _tables(schema: str, suffix: str) -> _Tables:
    def name(table: str) -> Composed:
        return SQL("{}.{}").format(Identifier(schema), Identifier(table + suffix))

    return _Tables(name(STATS), name(ORDERS), name(LINKS))


def _survivors(curs: Cursor[DictRow], t: _Tables, people: Iterable[UUID]) -> set[UUID]:
    """The customers ``people`` are merged into, directly or through a chain of merges."""
    curs.execute(
        SQL(
            "WITH RECURSIVE up(id) AS (SELECT unnest(%b::uuid[])"
            " UNION SELECT l.survivor_id FROM up JOIN {l} l ON l.source_id = up.id)"
            " SELECT id FROM up"
        ).format(l=t.links),
        (sorted(people),),
    )
    return {r["id"] for r in curs.fetchall()}


def _write_orders(curs: Cursor[DictRow], t: _Tables, b: _Batch) -> None:
    if b.placed:
        ids = list(b.placed)
        rows = [b.placed[i] for i in ids]
        curs.execute(
            SQL(
                "INSERT INTO {o} (order_id, customer_id, placed_at, day, amount, refunded,"
                " refund_count) SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::timestamptz[],"
                " %b::date[], %b::bigint[], %b::bigint[], %b::int[])"
            ).format(o=t.orders),
            (
                ids,
                [r.customer_id for r in rows],
                [r.placed_at for r in rows],
                [r.day for r in rows],
                [r.amount for r in rows],
                [r.refunded for r in rows],
                [r.refund_count for r in rows],
            ),
        )
    if b.refunds:
        ids = list(b.refunds)
        curs.execute(
            SQL(
                "UPDATE {o} o SET refunded = o.refunded + v.amount,"
                " refund_count = o.refund_count + v.count"
                " FROM unnest(%b::uuid[], %b::bigint[], %b::int[]) AS v(order_id, amount, count)"
                " WHERE o.order_id = v.order_id"
            ).format(o=t.orders),
            (ids, [b.refunds[i][0] for i in ids], [b.refunds[i][1] for i in ids]),
        )
    if b.owners:
        ids = list(b.owners)
        curs.execute(
            SQL(
                "UPDATE {o} o SET customer_id = v.customer_id"
                " FROM unnest(%b::uuid[], %b::uuid[]) AS v(order_id, customer_id)"
                " WHERE o.order_id = v.order_id"
            ).format(o=t.orders),
            (ids, [b.owners[i] for i in ids]),
        )


def _write_links(curs: Cursor[DictRow], t: _Tables, links: dict[UUID, UUID | None]) -> set[UUID]:
    """Write the batch's final links; returns the survivors of the links removed."""
    gone = sorted(s for s, v in links.items() if v is None)
    removed: set[UUID] = set()
    if gone:
        curs.execute(
            SQL("DELETE FROM {l} WHERE source_id = ANY(%b::uuid[]) RETURNING survivor_id").format(
                l=t.links
            ),
            (gone,),
        )
        removed = {r["survivor_id"] for r in curs.fetchall()}
    kept = sorted((s, v) for s, v in links.items() if v is not None)
    if kept:
        curs.execute(
            SQL(
                "INSERT INTO {l} (source_id, survivor_id) SELECT * FROM unnest(%b::uuid[],"
                " %b::uuid[]) ON CONFLICT (source_id) DO UPDATE SET survivor_id ="
                " excluded.survivor_id"
            ).format(l=t.links),
            ([s for s, _ in kept], [v for _, v in kept]),
        )
    return removed


def _recompute(curs: Cursor[DictRow], t: _Tables, people: list[UUID]) -> None:
    """Each of ``people`` not merged away gets the stats of its orders and those of everyone
    merged into it (transitively); the merged-away and those without orders get no row."""
    curs.execute(
        SQL(
            "WITH RECURSIVE heads AS ("
            "  SELECT id FROM unnest(%b::uuid[]) AS p(id)"
            "  WHERE NOT EXISTS (SELECT 1 FROM {l} l WHERE l.source_id = p.id)),"
            " members(head, id) AS (SELECT id, id FROM heads"
            "  UNION SELECT m.head, l.source_id FROM members m JOIN {l} l"
            "  ON l.survivor_id = m.id),"
            " totals AS (SELECT m.head, count(*)::int AS order_count,"
            "  sum(o.amount)::bigint AS gross_spend, sum(o.refunded)::bigint AS refunded,"
            "  sum(o.refund_count)::int AS refund_count, min(o.placed_at) AS first_order_at,"
            "  max(o.placed_at) AS last_order_at, count(DISTINCT o.day)::int AS purchase_days"
            "  FROM members m JOIN {o} o ON o.customer_id = m.id GROUP BY m.head),"
            " cleared AS (DELETE FROM {s} s WHERE s.customer_id = ANY(%b::uuid[])"
            "  AND s.customer_id NOT IN (SELECT head FROM totals))"
            " INSERT INTO {s} AS s (customer_id, order_count, gross_spend, refunded,"
            "  refund_count, first_order_at, last_order_at, purchase_days)"
            " SELECT * FROM totals ORDER BY head"
            " ON CONFLICT (customer_id) DO UPDATE SET order_count = excluded.order_count,"
            "  gross_spend = excluded.gross_spend, refunded = excluded.refunded,"
            "  refund_count = excluded.refund_count, first_order_at = excluded.first_order_at,"
            "  last_order_at = excluded.last_order_at, purchase_days = excluded.purchase_days"
        ).format(s=t.stats, o=t.orders, l=t.links),
        (people, people),
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
