"""PointsBalanceProjection: each points account's debt and held points, and its open lots.

``points_balance (account_id, customer_id, point_type, debt, held)``: one row per account.
``points_lots (account_id, lot_id, earned, remaining, held, earned_at, active_at, expires_at)``:
the lots still holding free (``remaining``) or held points; a lot leaves the table when both are
0, as it leaves the aggregate. The partial index on ``expires_at`` (``remaining > 0``) is the
expiry job's due index: ``due_accounts`` lists the accounts with something due by ``as_of``.
``points_holds (account_id, hold_id, points, expires_at)``: the open holds that have a timeout
(holds recorded before timeouts existed have none and never need releasing); a hold leaves the
table when it is captured, released or timed out. Its index on ``expires_at`` is the job's other
due index. The accounts themselves stay the authority: the job expires what the aggregate says
is due and releases the holds it says timed out.

A redemption reversal can bring back a lot that had left ``points_lots``: its event carries the
lot's dates, so the row is recreated (with ``remaining`` 0, then the reversal's delta).

The rows do not depend on where batch boundaries fall (a live projector applies a few events
per batch, a catch-up or a rebuild thousands): a batch replays each lot's changes event by event
on its row as read before the batch, so a lot emptied by one event leaves the table there, and a
transfer bringing it back later (a merge's undo, the same pair merged again) starts a new row
with its own ``earned``, exactly as when the events come one per batch.

Available now (the profile's ``points``): the active (``active_at <= now()``), unexpired
(``expires_at > now()`` or none) free remaining of the lots, minus the account's debt. A hold
past its timeout still counts as held here until the expiry job (or the account's next command)
records its ``HoldExpired``, at most one job interval later; ``GET .../points`` reads the account
itself and counts it as released at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.points_account import PointsAccount
from projections.engine import Positioned, Projection
from projections.points_balance.batch import Batch, LotRow

BALANCE = "points_balance"
LOTS = "points_lots"
HOLDS = "points_holds"
A = PointsAccount


class PointsBalanceProjection(Projection):
    name: ClassVar[str] = "points_balance"
    tables: ClassVar[tuple[str, ...]] = (BALANCE, LOTS, HOLDS)
    topics: ClassVar[frozenset[str]] = frozenset(
        {
            A.Opened.TOPIC,
            A.Earned.TOPIC,
            A.Redeemed.TOPIC,
            A.Held.TOPIC,
            A.HoldCaptured.TOPIC,
            A.HoldReleased.TOPIC,
            A.HoldExpired.TOPIC,
            A.RedemptionReversed.TOPIC,
            A.Expired.TOPIC,
            A.Reversed.TOPIC,
            A.Adjusted.TOPIC,
            A.TransferredOut.TOPIC,
            A.TransferredIn.TOPIC,
        }
    )

    def create_tables(self, curs: Cursor[DictRow], schema: str, suffix: str = "") -> None:
        s = Identifier(schema)
        balance, lots = Identifier(BALANCE + suffix), Identifier(LOTS + suffix)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " account_id uuid PRIMARY KEY, customer_id uuid NOT NULL,"
                " point_type text NOT NULL, debt bigint NOT NULL DEFAULT 0,"
                " held bigint NOT NULL DEFAULT 0)"
            ).format(s, balance)
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (customer_id)").format(
                Identifier(f"{BALANCE}{suffix}_customer"), s, balance
            )
        )
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " account_id uuid NOT NULL, lot_id text NOT NULL, earned bigint NOT NULL,"
                " remaining bigint NOT NULL, held bigint NOT NULL,"
                " earned_at timestamptz NOT NULL, active_at timestamptz NOT NULL,"
                " expires_at timestamptz, PRIMARY KEY (account_id, lot_id))"
            ).format(s, lots)
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (expires_at) WHERE remaining > 0").format(
                Identifier(f"{LOTS}{suffix}_due"), s, lots
            )
        )
        holds = Identifier(HOLDS + suffix)
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} ("
                " account_id uuid NOT NULL, hold_id text NOT NULL, points bigint NOT NULL,"
                " expires_at timestamptz NOT NULL, PRIMARY KEY (account_id, hold_id))"
            ).format(s, holds)
        )
        curs.execute(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (expires_at)").format(
                Identifier(f"{HOLDS}{suffix}_due"), s, holds
            )
        )

    def apply(
        self, curs: Cursor[DictRow], schema: str, events: Sequence[Positioned], suffix: str = ""
    ) -> None:
        batch = Batch()
        for p in events:
            batch.apply(p.event)
        s = Identifier(schema)
        # Tables in the order a rebuild's swap locks them (balance, lots, holds): a batch
        # running beside a swap waits for it, or makes it wait, but never deadlocks with it.
        self._balances(curs, SQL("{}.{}").format(s, Identifier(BALANCE + suffix)), batch)
        self._lots(curs, SQL("{}.{}").format(s, Identifier(LOTS + suffix)), batch)
        self._holds(curs, SQL("{}.{}").format(s, Identifier(HOLDS + suffix)), batch)

    @staticmethod
    def _balances(curs: Cursor[DictRow], balance: Any, batch: Batch) -> None:
        if batch.opened:
            ids = sorted(batch.opened)
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, customer_id, point_type)"
                    " SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[])"
                    " ON CONFLICT (account_id) DO NOTHING"
                ).format(balance),
                (ids, [batch.opened[a][0] for a in ids], [batch.opened[a][1] for a in ids]),
            )
        accounts = sorted((a, d) for a, d in batch.account_deltas.items() if d[0] or d[1])
        if accounts:
            curs.execute(
                SQL(
                    "UPDATE {} b SET debt = b.debt + d.debt, held = b.held + d.held"
                    " FROM unnest(%b::uuid[], %b::bigint[], %b::bigint[]) AS d(account_id,"
                    " debt, held) WHERE b.account_id = d.account_id"
                ).format(balance),
                (
                    [a for a, _ in accounts],
                    [d[0] for _, d in accounts],
                    [d[1] for _, d in accounts],
                ),
            )

    @staticmethod
    def _lots(curs: Cursor[DictRow], lots: Any, batch: Batch) -> None:
        if not batch.lot_ops:
            return
        # Every row is locked here, in one order, before anything is written (and new rows are
        # written in key order): catch-ups of the same projection running at once (the worker
        # and the expiry job) wait for each other instead of deadlocking.
        keys = sorted(batch.lot_ops)
        curs.execute(
            SQL(
                "SELECT l.account_id, l.lot_id, l.earned, l.remaining, l.held, l.earned_at,"
                " l.active_at, l.expires_at FROM {} l"
                " JOIN unnest(%b::uuid[], %b::text[]) AS k(account_id, lot_id)"
                " ON l.account_id = k.account_id AND l.lot_id = k.lot_id"
                " ORDER BY l.account_id, l.lot_id FOR UPDATE OF l"
            ).format(lots),
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        before = {
            (r["account_id"], r["lot_id"]): LotRow(
                r["earned"], r["remaining"], r["held"], r["earned_at"], r["active_at"],
                r["expires_at"],
            )
            for r in curs.fetchall()
        }  # fmt: skip
        after = batch.lots_after(before)
        gone = [k for k in keys if after[k] is None and k in before]
        if gone:
            curs.execute(
                SQL(
                    "DELETE FROM {} l USING unnest(%b::uuid[], %b::text[]) AS d(account_id, lot_id)"
                    " WHERE l.account_id = d.account_id AND l.lot_id = d.lot_id"
                ).format(lots),
                ([k[0] for k in gone], [k[1] for k in gone]),
            )
        changed = [(k, r) for k in keys if (r := after[k]) is not None and r != before.get(k)]
        if changed:
            # Whole rows, not increments: the batch computed them from the rows it read. A
            # concurrent catch-up of the same batch may write the same keys; its tracking
            # compare-and-set rolls one of the two back, so a conflict must not fail first.
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, lot_id, earned, remaining, held, earned_at,"
                    " active_at, expires_at)"
                    " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::bigint[],"
                    " %b::bigint[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[])"
                    " ON CONFLICT (account_id, lot_id) DO UPDATE SET earned = excluded.earned,"
                    " remaining = excluded.remaining, held = excluded.held,"
                    " earned_at = excluded.earned_at, active_at = excluded.active_at,"
                    " expires_at = excluded.expires_at"
                ).format(lots),
                (
                    [k[0] for k, _ in changed],
                    [k[1] for k, _ in changed],
                    [r.earned for _, r in changed],
                    [r.remaining for _, r in changed],
                    [r.held for _, r in changed],
                    [r.earned_at for _, r in changed],
                    [r.active_at for _, r in changed],
                    [r.expires_at for _, r in changed],
                ),
            )

    @staticmethod
    def _holds(curs: Cursor[DictRow], holds: Any, batch: Batch) -> None:
        # Closes first: a hold the batch closes and opens again is open after it.
        if batch.holds_closed:
            keys = sorted(batch.holds_closed)
            curs.execute(
                SQL(
                    "DELETE FROM {} h USING unnest(%b::uuid[], %b::text[]) AS d(account_id,"
                    " hold_id) WHERE h.account_id = d.account_id AND h.hold_id = d.hold_id"
                ).format(holds),
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
        if batch.holds_opened:
            keys = sorted(batch.holds_opened)
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, hold_id, points, expires_at)"
                    " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[],"
                    " %b::timestamptz[]) ON CONFLICT (account_id, hold_id) DO NOTHING"
                ).format(holds),
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [batch.holds_opened[k][0] for k in keys],
                    [batch.holds_opened[k][1] for k in keys],
                ),
            )


def due_accounts(curs: Cursor[Any], schema: str, as_of: datetime) -> list[UUID]:
    """Accounts holding lots with free points whose expiry is at or before ``as_of``, or open
    holds whose timeout is."""
    curs.execute(
        SQL(
            "SELECT account_id FROM {}.{} WHERE remaining > 0 AND expires_at <= %s"
            " UNION SELECT account_id FROM {}.{} WHERE expires_at <= %s ORDER BY account_id"
        ).format(Identifier(schema), Identifier(LOTS), Identifier(schema), Identifier(HOLDS)),
        (as_of, as_of),
    )
    return [row["account_id"] if isinstance(row, dict) else row[0] for row in curs.fetchall()]


def profile_points_sql(schema: str) -> str:
    """A jsonb scalar subquery: ``{"<point type>": available now, ...}`` for the outer
    ``p.customer_id`` (NULL when the customer has no points account)."""
    balance = f'"{schema}"."{BALANCE}"'
    lots = f'"{schema}"."{LOTS}"'
    return (
        "(SELECT jsonb_object_agg(b.point_type,"
        f" (SELECT COALESCE(SUM(l.remaining), 0) FROM {lots} l"
        " WHERE l.account_id = b.account_id AND l.active_at <= now()"
        " AND (l.expires_at IS NULL OR l.expires_at > now())) - b.debt)"
        f" FROM {balance} b WHERE b.customer_id = p.customer_id)"
    )
