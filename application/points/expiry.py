"""The points expiry job: every lot due and every hold timed out by ``as_of`` leaves the
accounts, one ``ExpirePointsAccount`` command per account found due.

Which accounts are due comes from the write side's due index (``Membercore.due``): the accounts
with lots due or holds timed out by ``as_of``. Each account then releases and expires what *it*
says is due, so running the job twice, or in two processes at once, writes one ``HoldExpired``
per hold and one ``Expired`` per lot: the second finds nothing due in the accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from application.app import Membercore
from application.context import CommandContext
from application.instants import require_offset
from application.kernel import Caller, Command, Decision, Outcome, execute, handles
from application.loaders import optional
from domain.errors import FieldProblem, InvalidInput
from domain.points_account import PointsAccount

JOB = Caller("job:expire-points")


@dataclass(frozen=True)
class ExpiryRun:
    as_of: datetime
    accounts: int = 0
    expired_accounts: int = 0
    lots: int = 0
    points: int = 0
    position: int = 0
    holds: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "accounts_checked": self.accounts,
            "accounts_expired": self.expired_accounts,
            "lots_expired": self.lots,
            "points_expired": self.points,
            "holds_expired": self.holds,
        }


@dataclass(frozen=True)
class ExpirePointsAccount(Command):
    """Release the holds of one account timed out by ``as_of`` and expire its lots due by then;
    nothing due (done by an earlier or concurrent run): nothing is written."""

    operation = "ExpirePointsAccount"
    account_id: UUID
    as_of: datetime


@handles(ExpirePointsAccount)
def expire_account(app: Membercore, cmd: ExpirePointsAccount, ctx: CommandContext) -> Decision:
    account = optional(app, cmd.account_id, PointsAccount)
    if account is None:
        return Decision(Outcome.DONE, {"holds": 0, "lots": 0, "points": 0})
    settled = account.settle(cmd.as_of, at=app.clock())
    body = {"holds": settled.holds, "lots": settled.lots, "points": settled.points}
    return Decision(Outcome.DONE, body, save=(account,))


@dataclass(frozen=True)
class ExpirePoints(Command):
    """The job at ``as_of`` (not in the future: points are never expired early)."""

    operation = "ExpirePoints"
    as_of: datetime

    def __post_init__(self) -> None:
        require_offset(self.as_of, field="as_of")


@handles(ExpirePoints)
def expire_points(app: Membercore, cmd: ExpirePoints, ctx: CommandContext) -> Decision:
    run = expire_due(app, cmd.as_of, app.due.points_accounts(cmd.as_of))
    return Decision(Outcome.DONE, run.body(), position=run.position)


def expire_due(app: Membercore, as_of: datetime, accounts: list[UUID]) -> ExpiryRun:
    """The job over ``accounts`` (those found due by ``as_of``)."""
    if as_of > app.clock():
        raise InvalidInput([FieldProblem("as_of", "must not be in the future")])
    checked = expired_accounts = lots = points = holds = position = 0
    for account_id in dict.fromkeys(accounts):
        checked += 1
        done = execute(app, ExpirePointsAccount(account_id, as_of), JOB)
        if done.body["points"] or done.body["holds"]:
            expired_accounts += 1
            lots += done.body["lots"]
            points += done.body["points"]
            holds += done.body["holds"]
            position = max(position, done.position)
    if position == 0:
        position = app.recorder.max_notification_id() or 0
    return ExpiryRun(as_of, checked, expired_accounts, lots, points, position, holds)
