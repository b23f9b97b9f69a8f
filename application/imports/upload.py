"""An upload of rows as one command (``POST /v1/imports/customers``).

The rows are registered by the importer, chunk by chunk, each row through the kernel. The upload
as a whole is a command too, so that an ``Idempotency-Key`` replays its first answer instead of
importing again: the request it names is the body's digest and format; the rows themselves are
carried to the work, not fingerprinted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from application.app import Membercore
from application.context import CommandContext
from application.imports.chunk import ImportSummary
from application.kernel import UNFINGERPRINTED, Command, Decision, Outcome, handles


@dataclass(frozen=True)
class ImportCustomers(Command):
    operation = "ImportCustomers"
    sha256: str
    format: str
    # Imports the uploaded rows as the given actor (the importer reads them from the upload).
    rows: Callable[[str], ImportSummary] = field(compare=False, metadata=UNFINGERPRINTED)


@handles(ImportCustomers)
def import_customers(app: Membercore, cmd: ImportCustomers, ctx: CommandContext) -> Decision:
    summary = cmd.rows(ctx.actor)
    return Decision(Outcome.DONE, summary.body(), position=summary.position)
