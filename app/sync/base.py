"""The connector interface: connectors are pure I/O adapters that speak a vendor's shapes.

A connector never writes the ledger. It turns vendor pages into the plain records below, each
carrying the vendor's own clock, and turns our targets into vendor writes. Rows it cannot
interpret are returned with `problem` set (never raised, never dropped) so the run can
quarantine them with their raw payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol


class Capability(StrEnum):
    SNAPSHOT = "snapshot"  # pull_snapshot / read_levels
    CHANGES = "changes"  # a true delta feed (Square changes)
    PUSH_AVAILABLE = "push_available"  # channel: set available-to-sell
    PUSH_ADJUSTMENTS = "push_adjustments"  # source: our fulfilments pushed back as adjustments
    CAS = "cas"  # expected_current honoured (Shopify changeFromQuantity)
    IDEMPOTENT_WRITES = "idempotent_writes"
    ORDERS = "orders"  # channel: orders can be pulled
    TWO_STRIKE = "two_strike"  # snapshot not trusted alone: same drift twice before correcting


# ---------------------------------------------------------------- errors


class SyncError(Exception):
    """A run cannot go on; the message is what ops read in the run report."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class TransientError(SyncError):
    """Timeouts, dropped connections, 5xx, bodies that are not what the vendor sends."""

    retryable = True


class RateLimited(TransientError):
    """The vendor said slow down; retry_after is in seconds when it said how long."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status, code="rate_limited")
        self.retry_after = retry_after


class AuthError(SyncError):
    """401/403: credentials missing, wrong, expired or lacking a scope."""


class NotFound(SyncError):
    pass


class VendorRejected(SyncError):
    """A 4xx the vendor explains (code is the vendor's own)."""


class MalformedResponse(TransientError):
    """A 2xx whose body is not the vendor's shape (HTML, truncated JSON, a missing field)."""


class IncompleteSnapshot(SyncError):
    """Paging ended before the last page: nothing may be inferred from what was read."""


@dataclass(frozen=True)
class FileProblem:
    line: int
    message: str


class BadFile(SyncError):
    """A stock file refused whole; every problem is named by line."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(f"line {p.line}: {p.message}" for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"file refused: {shown}{more}", code="bad_file")


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Observation:
    """One snapshot row: the vendor's sellable quantity of an item at a location."""

    item_ref: str  # Square variation id, Shopify InventoryItem gid, Woo product/variation id, CSV SKU
    location_ref: str  # Square location id, Shopify Location gid, "web" for a single-stock shop
    quantity: Decimal | None  # None when the row carries none (untracked, unparseable)
    as_of: datetime | None = None  # the row's own vendor time (a hint only, never the watermark)
    tracked: bool = True
    sku: str | None = None  # the vendor's SKU text, a matching aid only
    problem: str | None = None  # why the row cannot be used ("unknown state X", "quantity 'n/a'")
    line: int | None = None  # CSV line number
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class SnapshotPage:
    observations: Sequence[Observation]
    vendor_time: datetime | None  # the page's HTTP Date header: T in the watermark rule
    complete: bool  # True only on the last page of a full pass


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a vendor's change feed, in the sellable bucket."""

    external_id: str  # the vendor's change id: unique per feed in the ledger
    item_ref: str
    location_ref: str
    kind: str  # "adjustment" | "physical_count" | "transfer_out" | "transfer_in"
    delta: Decimal | None  # the change to the sellable quantity; None for a physical count
    absolute: Decimal | None  # a physical count's quantity (an observation, no balance effect)
    occurred_at: datetime  # vendor business time
    recorded_at: datetime  # vendor receipt time: what watermarks are made of
    origin_reference: str | None = None  # set when we wrote it (Square reference_id): an echo
    problem: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ChangesPage:
    changes: Sequence[Change]
    vendor_time: datetime | None  # the response's Date header
    has_more: bool


@dataclass(frozen=True)
class AvailabilityUpdate:
    """Set a channel's available-to-sell for one item at one of its locations."""

    item_ref: str
    location_ref: str
    target: int  # already clamped to >= 0
    expected_current: int | None  # CAS (Shopify changeFromQuantity); ignored without CAS
    idempotency_key: str
    reference: str | None = None


@dataclass(frozen=True)
class OutboundAdjustment:
    """A ledger fact pushed to a source: a web order fulfilled from this store's stock."""

    item_ref: str
    location_ref: str
    delta: int  # negative: units left the shelf
    idempotency_key: str
    reference_id: str  # comes back in the change feed so the echo is recognised
    occurred_at: datetime | None = None


class PushStatus(StrEnum):
    APPLIED = "applied"
    NOOP = "noop"
    STALE = "stale"  # CAS lost: actual_current carries what the vendor has
    REJECTED = "rejected"  # the vendor refused this item for good (error_code says why)
    RETRYABLE = "retryable"


@dataclass(frozen=True)
class PushResult:
    key: str  # the update's idempotency key
    status: PushStatus
    actual_current: int | None = None
    vendor_time: datetime | None = None
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class IncomingLine:
    qty: int
    item_ref: str | None = None
    sku: str | None = None


@dataclass(frozen=True)
class IncomingOrder:
    """A web-shop order as the shop tells it."""

    external_id: str  # the shop's order id: intake is idempotent by it
    lines: Sequence[IncomingLine]
    customer_ref: str | None = None
    # {"type": "ship", "postcode"|"lat","lon"} or {"type": "pickup", "location_ref": ...}
    delivery: Mapping[str, Any] = field(default_factory=lambda: {"type": "ship"})
    created_at: datetime | None = None
    problem: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class OrdersPage:
    orders: Sequence[IncomingOrder]
    vendor_time: datetime | None
    has_more: bool


# ---------------------------------------------------------------- connectors


@dataclass(frozen=True)
class Connection:
    """What a connector is built from: the feed's settings with its secrets resolved."""

    base_url: str
    secrets: Mapping[str, str]  # name -> value, read from the environment variables the feed names
    options: Mapping[str, Any] = field(default_factory=dict)
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 30.0
    attempts: int = 4
    clock: Callable[[], float] | None = None  # time.time by default
    sleep: Callable[[float], None] | None = None  # time.sleep by default
    file_bytes: bytes | None = None  # an uploaded CSV instead of the URL


class Connector(Protocol):
    name: str
    capabilities: frozenset[Capability]

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        """A full pass over the vendor's levels, a page at a time; the last page says complete."""
        ...

    def pull_changes(self, since: datetime | None) -> Iterator[ChangesPage]:
        """Changes recorded by the vendor after `since` (its clock), oldest first."""
        ...

    def push_adjustments(self, adjustments: Sequence[OutboundAdjustment]) -> list[PushResult]: ...

    def push_available(self, updates: Sequence[AvailabilityUpdate]) -> list[PushResult]: ...

    def pull_orders(self, since: datetime | None) -> Iterator[OrdersPage]: ...

    def parse_order(self, payload: Mapping[str, Any]) -> IncomingOrder:
        """A webhook's order payload as an IncomingOrder."""
        ...


class ConnectorBase:
    """Defaults for what a connector does not do: each refuses plainly instead of pretending."""

    name = "connector"
    capabilities: frozenset[Capability] = frozenset()

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        raise SyncError(f"{self.name} has no stock snapshot")

    def pull_changes(self, since: datetime | None) -> Iterator[ChangesPage]:
        raise SyncError(f"{self.name} has no change feed")

    def push_adjustments(self, adjustments: Sequence[OutboundAdjustment]) -> list[PushResult]:
        raise SyncError(f"{self.name} takes no adjustments")

    def push_available(self, updates: Sequence[AvailabilityUpdate]) -> list[PushResult]:
        raise SyncError(f"{self.name} takes no available-to-sell")

    def pull_orders(self, since: datetime | None) -> Iterator[OrdersPage]:
        raise SyncError(f"{self.name} has no orders")

    def parse_order(self, payload: Mapping[str, Any]) -> IncomingOrder:
        raise SyncError(f"{self.name} has no orders")
