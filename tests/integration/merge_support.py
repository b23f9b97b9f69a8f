"""Merges and undos through the kernel, for tests: the answer, or the merge's id."""

from __future__ import annotations

from uuid import UUID

from application.app import Membercore
from application.kernel import Answer, Caller, execute
from application.merges import MergeCustomers, UndoMerge


def merge(app: Membercore, survivor: UUID, source: UUID, actor: str = "t") -> Answer:
    return execute(app, MergeCustomers(survivor, source), Caller(actor))


def merged(app: Membercore, survivor: UUID, source: UUID, actor: str = "t") -> UUID:
    """Merge ``source`` into ``survivor``; the merge's id."""
    return merge_id_of(merge(app, survivor, source, actor))


def undo(app: Membercore, merge_id: UUID, actor: str = "t") -> Answer:
    return execute(app, UndoMerge(merge_id), Caller(actor))


def merge_id_of(answer: Answer) -> UUID:
    return UUID(answer.body["merge_id"])
