"""Errors raised by the application layer (as opposed to business rules in ``domain.errors``)."""

from __future__ import annotations

from typing import Any, ClassVar


class ApplicationError(Exception):
    code: ClassVar[str] = "application_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class IdempotencyKeyReused(ApplicationError):
    """The client id was used before for a different request."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for a different request")


class RequestInProgress(ApplicationError):
    """A request with the same client id is still being processed."""

    code = "request_in_progress"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"a request with idempotency key {key!r} is still in progress")


class ConcurrencyConflict(ApplicationError):
    """Optimistic concurrency kept failing after the bounded retries; safe to retry later."""

    code = "concurrency_conflict"

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(f"the command conflicted with concurrent writes {attempts} times")


class ServiceUnavailable(ApplicationError):
    """The database could not be reached or timed out; nothing was written."""

    code = "service_unavailable"


class TenantNotFound(ApplicationError):
    code = "tenant_not_found"

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"tenant {slug!r} does not exist")


class TenantExists(ApplicationError):
    code = "tenant_exists"

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"tenant {slug!r} already exists")


class RejectionReplayed(ApplicationError):
    """A client id's first attempt was rejected: the retry answers that rejection again (a new
    client id is needed to try again)."""

    def __init__(self, rejection: dict[str, Any]) -> None:
        self.rejection = rejection
        self.code = str(rejection.get("code", "rejected"))  # type: ignore[misc]
        super().__init__(str(rejection.get("detail", "rejected")))


class UnknownOperation(ApplicationError):
    """A command no handler is registered for (a programming error, never a client's)."""

    code = "unknown_operation"

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"no handler is registered for {operation}")
