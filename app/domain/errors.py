"""Business conditions the service refuses, named for what went wrong; mapped to HTTP once."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal with a stable code, an HTTP-neutral kind and details for the caller."""

    code = "domain_error"
    kind = "conflict"  # one of: invalid, not_found, conflict, forbidden

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a business rule (names the field at fault)."""

    code = "validation_error"
    kind = "invalid"

    def __init__(self, message: str, errors: list[dict[str, str]], code: str | None = None) -> None:
        super().__init__(message, errors=errors)
        if code:
            self.code = code


class NotFound(DomainError):
    code = "not_found"
    kind = "not_found"


class UnknownSku(NotFound):
    code = "unknown_sku"


class UnknownLocation(NotFound):
    code = "unknown_location"


class UnknownChannel(NotFound):
    code = "unknown_channel"


class IdempotencyConflict(DomainError):
    """The same idempotency key (or source + external_ref) came back with a different body."""

    code = "idempotency_conflict"


class InsufficientStock(DomainError):
    code = "insufficient_stock"


class StockConflict(DomainError):
    """The ledger's current state refuses the movement (e.g. receiving more than is in transit)."""

    code = "stock_conflict"


class AlreadyExists(DomainError):
    code = "already_exists"


class Forbidden(DomainError):
    code = "forbidden"
    kind = "forbidden"
