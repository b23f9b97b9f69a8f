"""Program commands: DefineProgram (PUT /v1/program) and reading the rules commands need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from application.app import Membercore
from application.context import CommandContext
from application.kernel import Answer, Caller, Command, Decision, Outcome, execute, handles
from application.loaders import optional
from domain.loyalty import NO_LOYALTY, LoyaltyRules, loyalty_of
from domain.program import (
    DEFAULT_RULES,
    PROGRAM_ID,
    Program,
    ProgramRules,
    rules_of,
    validate_program,
)


def timezone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def country_exists(code: str) -> bool:
    return code in phonenumbers.SUPPORTED_REGIONS


@dataclass(frozen=True)
class DefineProgram(Command):
    """Validate the whole document and record it as the next version. ``PUT`` is idempotent by
    nature: the same document again records nothing and answers the version in force."""

    operation = "DefineProgram"
    document: Any

    def validated(self) -> dict[str, Any]:
        return validate_program(
            self.document, timezone_exists=timezone_exists, country_exists=country_exists
        )


@handles(DefineProgram)
def define(app: Membercore, cmd: DefineProgram, ctx: CommandContext) -> Decision:
    doc = cmd.validated()
    at = app.clock()
    program = load_program(app)
    if program is None:
        program = Program.define(doc, actor=ctx.actor, at=at)
    else:
        program.replace(doc, actor=ctx.actor, at=at)
    body = {**program.document, "version": program.version}
    return Decision(Outcome.DONE, body, save=(program,), position_of=PROGRAM_ID)


def define_program(app: Membercore, document: Any, actor: str) -> Answer:
    """``DefineProgram`` as ``actor`` without an idempotency key (the CLI, fixtures)."""
    return execute(app, DefineProgram(document), Caller(actor))


def load_program(app: Membercore, version: int | None = None) -> Program | None:
    return optional(app, PROGRAM_ID, Program, version=version)


def program_rules(app: Membercore) -> ProgramRules:
    """The rules in force now; the defaults while the tenant has no program."""
    return program_view(app).rules


# The loyalty rules of every program version, parsed once per application instance. Versions
# never change once recorded, so the cache is only extended, never invalidated.
_VERSIONS: WeakKeyDictionary[Membercore, list[tuple[datetime, LoyaltyRules, ProgramRules]]] = (
    WeakKeyDictionary()
)


@dataclass(frozen=True)
class ProgramView:
    """The program as one read sees it (a command, or a round of a batch): the customer rules
    now, and the loyalty rules of the version in force at any time."""

    rules: ProgramRules
    versions: tuple[tuple[datetime, LoyaltyRules, ProgramRules], ...]

    def loyalty_at(self, at: datetime | None = None) -> LoyaltyRules:
        """The version whose ``PUT`` came last before ``at`` (the latest when None; the first
        for times before it): orders are evaluated with the version in force when placed."""
        if not self.versions:
            return NO_LOYALTY
        if at is None:
            return self.versions[-1][1]
        in_force = self.versions[0][1]
        for since, rules, _ in self.versions:
            if since > at:
                break
            in_force = rules
        return in_force


def program_view(app: Membercore) -> ProgramView:
    """One read of the program (one round trip while no new version was recorded)."""
    program = load_program(app)
    if program is None:
        return ProgramView(DEFAULT_RULES, ())
    versions = _VERSIONS.setdefault(app, [])
    if len(versions) < program.version:
        for event in app.events.get(PROGRAM_ID, gt=len(versions)):
            recorded: Any = event  # a Program.Defined or Program.Replaced
            document, version = recorded.document, recorded.originator_version
            versions.append(
                (recorded.timestamp, loyalty_of(document, version), rules_of(document, version))
            )
    in_force = tuple(versions[: program.version])
    return ProgramView(in_force[-1][2], in_force)


def loyalty_rules(app: Membercore, at: datetime | None = None) -> LoyaltyRules:
    """The loyalty rules in force at ``at`` (now when None); see :meth:`ProgramView.loyalty_at`."""
    return program_view(app).loyalty_at(at)
