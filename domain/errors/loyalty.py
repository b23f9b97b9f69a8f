"""Errors of the loyalty program: the program itself, levels and benefits."""

from __future__ import annotations

from typing import Any

from domain.errors.base import DomainError


class ProgramNotFound(DomainError):
    code = "program_not_found"

    def __init__(self) -> None:
        super().__init__("this tenant has no program yet: PUT /v1/program first")


class LevelGroupNotFound(DomainError):
    code = "level_group_not_found"

    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"the program has no level group {group!r}")


class BenefitNotFound(DomainError):
    code = "benefit_not_found"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the program has no benefit {benefit!r}")


class GrantNotFound(DomainError):
    """No direct grant with this id was made to the customer."""

    code = "benefit_grant_not_found"

    def __init__(self, grant_id: str) -> None:
        self.grant_id = grant_id
        super().__init__(f"the customer has no benefit grant {grant_id!r}")


class BenefitNotHeld(DomainError):
    code = "benefit_not_held"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the customer does not hold the benefit {benefit!r} now")


class BenefitDisabled(DomainError):
    code = "benefit_disabled"

    def __init__(self, benefit: str) -> None:
        self.benefit = benefit
        super().__init__(f"the benefit {benefit!r} is switched off")


class BenefitQuotaExhausted(DomainError):
    code = "benefit_quota_exhausted"

    def __init__(self, benefit: str, quota: int, period: str) -> None:
        self.benefit, self.quota, self.period = benefit, quota, period
        super().__init__(f"the benefit {benefit!r} was used {quota} times this {period}")

    def problem_fields(self) -> dict[str, Any]:
        return {"quota": self.quota, "period": self.period}


class LevelNotFound(DomainError):
    """A level code the level group does not have (an override naming it is a bad request)."""

    code = "level_not_found"

    def __init__(self, group: str, level: str) -> None:
        self.group, self.level = group, level
        super().__init__(f"the level group {group!r} has no level {level!r}")

    def problem_fields(self) -> dict[str, Any]:
        return {"group": self.group, "level": self.level}


class OverrideNotFound(DomainError):
    code = "level_override_not_found"

    def __init__(self, group: str, override_id: str) -> None:
        self.group, self.override_id = group, override_id
        super().__init__(f"no override {override_id!r} on the level group {group!r}")
