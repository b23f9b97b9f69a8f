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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.lots import LotTakes
from domain.points_account import PointsAccount
from projections.engine import Positioned, Projection

BALANCE = "points_balance"
LOTS = "points_lots"
HOLDS = "points_holds"
A = PointsAccount


@dataclass(frozen=True)
class _Lot:
    """One ``points_lots`` row (its key aside)."""

    earned: int
    remaining: int
    held: int
    earned_at: datetime
    active_at: datetime
    expires_at: datetime | None


def _dates(lot: dict[str, Any]) -> tuple[datetime, datetime, datetime | None]:
    expires = lot["expires_at"]
    return (
        datetime.fromisoformat(lot["earned_at"]),
        datetime.fromisoformat(lot["active_at"]),
        datetime.fromisoformat(expires) if expires else None,
    )


# What an event does to one lot row (``_LotOp.run``): a lot earned (kept if the row exists),
# arrived by a transfer (added to the row if it exists), restored by a redemption reversal
# (recreated empty if it had left), or a change of its free and held points (none if absent).
NEW, ARRIVE, RESTORE, DELTA = "new", "arrive", "restore", "delta"


@dataclass(frozen=True)
class _LotOp:
    kind: str
    lot: _Lot | None = None
    remaining: int = 0
    held: int = 0

    def run(self, row: _Lot | None) -> _Lot | None:
        if self.kind == DELTA:
            if row is None:
                return None
            return replace(row, remaining=row.remaining + self.remaining, held=row.held + self.held)
        assert self.lot is not None
        if row is None:
            return replace(self.lot, remaining=0, held=0) if self.kind == RESTORE else self.lot
        if self.kind == ARRIVE:
            return replace(row, remaining=row.remaining + self.lot.remaining)
        return row


class _Batch:
    """A batch of events, gathered in memory before one round of SQL.

    Lot rows are not folded into net deltas: whether a row exists when an event reaches it
    decides what the event does (a lot emptied by one event leaves the table, and a transfer
    bringing it back later starts a new row with its own ``earned`` and dates). So each lot's
    changes are kept per event, in log order, and replayed on the rows as they stood before
    the batch (``lot_rows``): the result is the one-event-per-batch result, wherever the batch
    boundaries fall. Account counters and holds are simple enough to net.
    """

    def __init__(self) -> None:
        self.opened: dict[UUID, tuple[UUID, str]] = {}
        self.account_deltas: dict[UUID, list[int]] = {}
        # Per lot, its changes grouped by event, in log order.
        self.lot_ops: dict[tuple[UUID, str], list[list[_LotOp]]] = {}
        self._event = 0
        self._last_event: dict[tuple[UUID, str], int] = {}
        # Per hold with a timeout: whether the batch closes it (first), and the hold it leaves
        # open (points, expires_at) after its last close.
        self.holds_closed: set[tuple[UUID, str]] = set()
        self.holds_opened: dict[tuple[UUID, str], tuple[int, datetime]] = {}

    def op(self, account: UUID, lot_id: str, op: _LotOp) -> None:
        key = (account, lot_id)
        groups = self.lot_ops.setdefault(key, [])
        if self._last_event.get(key) != self._event:
            self._last_event[key] = self._event
            groups.append([])
        groups[-1].append(op)

    def lot(self, account: UUID, lot_id: str, remaining: int, held: int = 0) -> None:
        self.op(account, lot_id, _LotOp(DELTA, remaining=remaining, held=held))

    def takes(self, account: UUID, takes: LotTakes, *, to_held: bool = False) -> None:
        for lot_id, n in takes:
            self.lot(account, lot_id, -n, n if to_held else 0)

    def account(self, account: UUID, debt: int = 0, held: int = 0) -> None:
        delta = self.account_deltas.setdefault(account, [0, 0])
        delta[0] += debt
        delta[1] += held

    def add_lot(self, account: UUID, e: Any, points: int, repaid: int, at: datetime) -> None:
        lot = _Lot(points, points - repaid, 0, at, e.active_at or at, e.expires_at)
        self.op(account, e.lot_id, _LotOp(NEW, lot))
        self.account(account, debt=-repaid)

    def open_hold(self, account: UUID, hold_id: str, points: int, expires_at: datetime) -> None:
        # Like an insert that keeps an existing row: the first open after the last close.
        self.holds_opened.setdefault((account, hold_id), (points, expires_at))

    def close_hold(self, account: UUID, hold_id: str) -> None:
        key = (account, hold_id)
        self.holds_opened.pop(key, None)
        self.holds_closed.add(key)

    def restore(self, account: UUID, e: Any) -> None:
        for lot in e.restored_lots:
            back = _Lot(lot["earned"], 0, 0, *_dates(lot))
            self.op(account, lot["lot_id"], _LotOp(RESTORE, back))
        for lot_id, n in e.lots:
            self.lot(account, lot_id, n)
        # What settled a clamp refund's write-off or repaid debt does not stay free on the lot.
        self.takes(account, (*e.reclaimed, *e.repaid))
        self.account(account, debt=-sum(n for _, n in e.repaid))

    def apply(self, e: Any) -> None:
        self._event += 1
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
                self.open_hold(acc, e.hold_id, e.points, e.expires_at)
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
                arrived = _Lot(lot["points"], lot["points"], 0, *_dates(lot))
                self.op(acc, lot["lot_id"], _LotOp(ARRIVE, arrived))
            self.account(acc, debt=e.debt)

    def lots_after(
        self, before: dict[tuple[UUID, str], _Lot]
    ) -> dict[tuple[UUID, str], _Lot | None]:
        """Each touched lot's row after the batch (None: no row), from its row ``before``.
        After each event, a lot with nothing free or held left leaves the table."""
        after: dict[tuple[UUID, str], _Lot | None] = {}
        for key, groups in self.lot_ops.items():
            row = before.get(key)
            for ops in groups:
                for op in ops:
                    row = op.run(row)
                if row is not None and row.remaining == 0 and row.held == 0:
                    row = None
            after[key] = row
        return after


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
        # Tables in the order a rebuild's swap locks them (balance, lots, holds): a batch
        # running beside a swap waits for it, or makes it wait, but never deadlocks with it.
        self._balances(curs, SQL("{}.{}").format(s, Identifier(BALANCE + suffix)), batch)
        self._lots(curs, SQL("{}.{}").format(s, Identifier(LOTS + suffix)), batch)
        self._holds(curs, SQL("{}.{}").format(s, Identifier(HOLDS + suffix)), batch)

    @staticmethod
    def _balances(curs: Cursor[DictRow], balance: Any, batch: _Batch) -> None:
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
    def _lots(curs: Cursor[DictRow], lots: Any, batch: _Batch) -> None:
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
            (r["account_id"], r["lot_id"]): _Lot(
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
    def _holds(curs: Cursor[DictRow], holds: Any, batch: _Batch) -> None:
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
