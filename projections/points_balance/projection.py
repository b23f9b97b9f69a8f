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

Available now (the profile's ``points``): the active (``active_at <= now()``), unexpired
(``expires_at > now()`` or none) free remaining of the lots, minus the account's debt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.points_account import LotTakes, PointsAccount
from projections.engine import Positioned, Projection

BALANCE = "points_balance"
LOTS = "points_lots"
HOLDS = "points_holds"
A = PointsAccount


@dataclass
class _NewLot:
    account_id: UUID
    lot_id: str
    earned: int
    remaining: int
    earned_at: datetime
    active_at: datetime
    expires_at: datetime | None
    held: int = 0
    # Arrived by a transfer (merge or undo): the row may still exist with what a transfer out
    # earlier in the same batch is about to take, so it is added to, not skipped.
    arrived: bool = False


class _Batch:
    """The net effect of a batch of events, folded in memory before one round of SQL."""

    def __init__(self) -> None:
        self.opened: dict[UUID, tuple[UUID, str]] = {}
        self.new_lots: dict[tuple[UUID, str], _NewLot] = {}
        self.lot_deltas: dict[tuple[UUID, str], list[int]] = {}
        self.account_deltas: dict[UUID, list[int]] = {}
        # Holds with a timeout opened (key -> (points, expires_at)) and closed in the batch.
        self.holds_opened: dict[tuple[UUID, str], tuple[int, datetime]] = {}
        self.holds_closed: set[tuple[UUID, str]] = set()
        # Lots a redemption reversal gives back that may have left the table: their rows.
        self.restored: dict[tuple[UUID, str], _NewLot] = {}

    def lot(self, account: UUID, lot_id: str, remaining: int, held: int = 0) -> None:
        new = self.new_lots.get((account, lot_id))
        if new is not None:
            new.remaining += remaining
            new.held += held
            return
        delta = self.lot_deltas.setdefault((account, lot_id), [0, 0])
        delta[0] += remaining
        delta[1] += held

    def takes(self, account: UUID, takes: LotTakes, *, to_held: bool = False) -> None:
        for lot_id, n in takes:
            self.lot(account, lot_id, -n, n if to_held else 0)

    def account(self, account: UUID, debt: int = 0, held: int = 0) -> None:
        delta = self.account_deltas.setdefault(account, [0, 0])
        delta[0] += debt
        delta[1] += held

    def add_lot(self, account: UUID, e: Any, points: int, repaid: int, at: datetime) -> None:
        lot_id = e.lot_id
        self.new_lots[(account, lot_id)] = _NewLot(
            account, lot_id, points, points - repaid, at, e.active_at or at, e.expires_at
        )
        self.account(account, debt=-repaid)

    def close_hold(self, account: UUID, hold_id: str) -> None:
        key = (account, hold_id)
        if self.holds_opened.pop(key, None) is None:
            self.holds_closed.add(key)

    def restore(self, account: UUID, e: Any) -> None:
        for lot in e.restored_lots:
            key = (account, lot["lot_id"])
            if key not in self.new_lots and key not in self.restored:
                expires = lot["expires_at"]
                self.restored[key] = _NewLot(
                    account,
                    lot["lot_id"],
                    lot["earned"],
                    0,
                    datetime.fromisoformat(lot["earned_at"]),
                    datetime.fromisoformat(lot["active_at"]),
                    datetime.fromisoformat(expires) if expires else None,
                )
        for lot_id, n in e.lots:
            self.lot(account, lot_id, n)

    def apply(self, e: Any) -> None:
        acc: UUID = e.originator_id
        if isinstance(e, A.Opened):
            self.opened[acc] = (e.customer_id, e.point_type)
        elif isinstance(e, A.Earned):
            self.add_lot(acc, e, e.points, e.repaid, e.earned_at)
        elif isinstance(e, A.Redeemed | A.Expired):
            self.takes(acc, e.lots)
        elif isinstance(e, A.Held):
            self.takes(acc, e.lots, to_held=True)
            self.account(acc, held=e.points)
            if e.expires_at is not None:
                self.holds_opened[(acc, e.hold_id)] = (e.points, e.expires_at)
        elif isinstance(e, A.HoldCaptured):
            for lot_id, n in e.lots:
                self.lot(acc, lot_id, 0, -n)
            self.account(acc, held=-e.points)
            self.close_hold(acc, e.hold_id)
        elif isinstance(e, A.HoldReleased | A.HoldExpired):
            for lot_id, n in e.lots:
                self.lot(acc, lot_id, n, -n)
            self.account(acc, held=-e.points)
            self.close_hold(acc, e.hold_id)
        elif isinstance(e, A.RedemptionReversed):
            self.restore(acc, e)
        elif isinstance(e, A.Reversed):
            self.takes(acc, ((e.lot_id, e.taken_from_lot), *e.lots))
            self.account(acc, debt=e.debt)
        elif isinstance(e, A.Adjusted):
            if e.amount > 0:
                self.add_lot(acc, e, e.amount, e.repaid, e.timestamp)
            else:
                self.takes(acc, e.lots)
        elif isinstance(e, A.TransferredOut):
            self.takes(acc, e.lots)
            self.account(acc, debt=-e.debt)
        elif isinstance(e, A.TransferredIn):
            for lot in e.lots:
                expires = lot["expires_at"]
                self.new_lots[(acc, lot["lot_id"])] = _NewLot(
                    acc,
                    lot["lot_id"],
                    lot["points"],
                    lot["points"],
                    datetime.fromisoformat(lot["earned_at"]),
                    datetime.fromisoformat(lot["active_at"]),
                    datetime.fromisoformat(expires) if expires else None,
                    arrived=True,
                )
            self.account(acc, debt=e.debt)


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
        batch = _Batch()
        for p in events:
            batch.apply(p.event)
        s = Identifier(schema)
        balance = SQL("{}.{}").format(s, Identifier(BALANCE + suffix))
        lots = SQL("{}.{}").format(s, Identifier(LOTS + suffix))
        if batch.opened:
            ids = list(batch.opened)
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, customer_id, point_type)"
                    " SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[])"
                    " ON CONFLICT (account_id) DO NOTHING"
                ).format(balance),
                (ids, [batch.opened[a][0] for a in ids], [batch.opened[a][1] for a in ids]),
            )
        if batch.restored:
            # Rows for restored lots that left the table; the reversal's delta follows below.
            back = list(batch.restored.values())
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, lot_id, earned, remaining, held, earned_at,"
                    " active_at, expires_at)"
                    " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::bigint[],"
                    " %b::bigint[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[])"
                    " ON CONFLICT (account_id, lot_id) DO NOTHING"
                ).format(lots),
                (
                    [n.account_id for n in back],
                    [n.lot_id for n in back],
                    [n.earned for n in back],
                    [0 for _ in back],
                    [0 for _ in back],
                    [n.earned_at for n in back],
                    [n.active_at for n in back],
                    [n.expires_at for n in back],
                ),
            )
        self._holds(curs, SQL("{}.{}").format(s, Identifier(HOLDS + suffix)), batch)
        kept = [n for n in batch.new_lots.values() if n.remaining > 0 or n.held > 0]
        for arrived in (False, True):
            new = [n for n in kept if n.arrived is arrived]
            if not new:
                continue
            curs.execute(
                SQL(
                    "INSERT INTO {} AS l (account_id, lot_id, earned, remaining, held, earned_at,"
                    " active_at, expires_at)"
                    " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::bigint[],"
                    " %b::bigint[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[])"
                    # Earned lots: only a concurrent catch-up of the same batch conflicts, and
                    # its tracking compare-and-set rolls it back: it must not fail before that.
                    # Arrived lots add to a row a transfer out in this batch is about to empty.
                    + (
                        " ON CONFLICT (account_id, lot_id) DO UPDATE SET"
                        " remaining = l.remaining + excluded.remaining"
                        if arrived
                        else " ON CONFLICT (account_id, lot_id) DO NOTHING"
                    )
                ).format(lots),
                (
                    [n.account_id for n in new],
                    [n.lot_id for n in new],
                    [n.earned for n in new],
                    [n.remaining for n in new],
                    [n.held for n in new],
                    [n.earned_at for n in new],
                    [n.active_at for n in new],
                    [n.expires_at for n in new],
                ),
            )
        deltas = [(k, d) for k, d in batch.lot_deltas.items() if d[0] or d[1]]
        # A restored lot taken again in the same batch nets to 0: its recreated row must go.
        deltas += [(k, [0, 0]) for k in batch.restored if k not in dict(deltas)]
        if deltas:
            params = (
                [k[0] for k, _ in deltas],
                [k[1] for k, _ in deltas],
                [d[0] for _, d in deltas],
                [d[1] for _, d in deltas],
            )
            curs.execute(
                SQL(
                    "UPDATE {} l SET remaining = l.remaining + d.remaining,"
                    " held = l.held + d.held"
                    " FROM unnest(%b::uuid[], %b::text[], %b::bigint[], %b::bigint[])"
                    " AS d(account_id, lot_id, remaining, held)"
                    " WHERE l.account_id = d.account_id AND l.lot_id = d.lot_id"
                ).format(lots),
                params,
            )
            # Consumed lots leave the table (a second statement: a data-modifying CTE's
            # DELETE would not see the rows its UPDATE changed).
            curs.execute(
                SQL(
                    "DELETE FROM {} l USING unnest(%b::uuid[], %b::text[]) AS d(account_id, lot_id)"
                    " WHERE l.account_id = d.account_id AND l.lot_id = d.lot_id"
                    " AND l.remaining = 0 AND l.held = 0"
                ).format(lots),
                params[:2],
            )
        accounts = [(a, d) for a, d in batch.account_deltas.items() if d[0] or d[1]]
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
    def _holds(curs: Cursor[DictRow], holds: Any, batch: _Batch) -> None:
        if batch.holds_opened:
            keys = list(batch.holds_opened)
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
        if batch.holds_closed:
            keys = list(batch.holds_closed)
            curs.execute(
                SQL(
                    "DELETE FROM {} h USING unnest(%b::uuid[], %b::text[]) AS d(account_id,"
                    " hold_id) WHERE h.account_id = d.account_id AND h.hold_id = d.hold_id"
                ).format(holds),
                ([k[0] for k in keys], [k[1] for k in keys]),
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
