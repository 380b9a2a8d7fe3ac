"""Routing's vocabulary: lines, candidates, requests, policies, decisions and who is excluded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

Criterion = Literal["distance", "priority", "capacity", "depth"]
DEFAULT_CRITERIA: tuple[Criterion, ...] = ("distance", "priority", "capacity", "depth")

# Transfers are internal moves to a pickup store: capacity (customer shipments) and stock depth
# do not apply, so sources are ranked on distance to the store, then priority.
TRANSFER_CRITERIA: tuple[Criterion, ...] = ("distance", "priority")

_CRITERIA: frozenset[str] = frozenset(get_args(Criterion))


@dataclass(frozen=True)
class Line:
    """An order line, or a quantity of one SKU taken from one location."""

    sku: str
    qty: int

    def __post_init__(self) -> None:
        if self.qty < 1:
            raise ValueError(f"line {self.sku!r}: qty must be >= 1, got {self.qty}")


@dataclass(frozen=True)
class Candidate:
    """A location that might fulfil the order, with the stock it can give this order."""

    code: str
    lat: float | None
    lon: float | None
    priority: int  # lower number = preferred
    # Ship-from-location shipments still allowed today; None = unlimited; ship type only.
    remaining_capacity: int | None
    # sku -> units available to this order (net of reserved and safety stock); missing = 0.
    stock: Mapping[str, int]
    active: bool = True
    ships: bool = True  # can ship to customers
    pickup: bool = False  # offers click-and-collect
    serves_channel: bool = True  # serves the order's channel


@dataclass(frozen=True)
class ShipTo:
    """Home delivery to these coordinates (None when the address could not be placed)."""

    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class PickupAt:
    """Click-and-collect at the store with this location code."""

    location: str


@dataclass(frozen=True)
class RoutingRequest:
    """What to route: distinct SKUs with qty >= 1, and where the customer gets them."""

    lines: tuple[Line, ...]
    delivery: ShipTo | PickupAt
    allow_split: bool = True
    allow_partial: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("an order needs at least one line")
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError(f"order lines must have distinct skus, got {skus}")


@dataclass(frozen=True)
class RoutingPolicy:
    """Per-deployment routing settings."""

    criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA
    max_shipments: int = 3  # bound on a split, and on transfer sources for a pickup
    pickup_shortfall: Literal["transfer", "refuse"] = "transfer"
    max_alternatives: int = 3

    def __post_init__(self) -> None:
        unknown = [c for c in self.criteria if c not in _CRITERIA]
        if unknown:
            raise ValueError(f"unknown routing criteria: {unknown}")
        if self.max_shipments < 1:
            raise ValueError(f"max_shipments must be >= 1, got {self.max_shipments}")
        if self.pickup_shortfall not in ("transfer", "refuse"):
            raise ValueError(f"unknown pickup_shortfall: {self.pickup_shortfall!r}")
        if self.max_alternatives < 0:
            raise ValueError(f"max_alternatives must be >= 0, got {self.max_alternatives}")


@dataclass(frozen=True)
class Allocation:
    """Units one location reserves for the order, and what it does with them."""

    location: str
    type: Literal["ship", "pickup", "transfer"]
    lines: tuple[Line, ...]  # units taken from THIS location's stock (reserve here)
    to_location: str | None = None  # "transfer": the pickup store receiving the units
    # "pickup": everything the customer collects there (own lines + transfers in).
    collect_lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class CandidateNote:
    """Why one candidate was chosen, passed over, or not considered."""

    location: str
    outcome: Literal["chosen", "rejected", "excluded"]
    reason: str
    distance_km: float | None = None


@dataclass(frozen=True)
class Alternative:
    """A pickup store that could serve the whole order from its own stock."""

    location: str
    distance_km: float | None


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of routing one order; applied (or quoted) by the service layer."""

    status: Literal["allocated", "partial", "refused"]
    allocations: tuple[Allocation, ...]
    backordered: tuple[Line, ...]
    explanation: tuple[CandidateNote, ...]
    alternatives: tuple[Alternative, ...] = ()
    # for refused: "insufficient_stock" | "pickup_location_unavailable"
    reason: str | None = None
    # A pickup's promised ready time (set by the service, which knows the store's clock).
    ready_by: datetime | None = None


def initial_order_status(decision: RoutingDecision) -> str:
    """A placed order starts allocated, partially allocated (some lines back-ordered) or, with
    nothing allocated, back-ordered."""
    if not decision.allocations:
        return "backordered"
    return "partially_allocated" if decision.backordered else "allocated"


def ship_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A location may ship an order only if active, serving the channel, shipping, with capacity."""
    reasons = list(transfer_exclusion_reasons(candidate))
    if not candidate.ships:
        reasons.append("does not ship")
    if candidate.remaining_capacity is not None and candidate.remaining_capacity <= 0:
        reasons.append("no capacity left today")
    return tuple(reasons)


def transfer_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A location may source a pickup (own stock or transfer) only if active and in the channel."""
    reasons: list[str] = []
    if not candidate.active:
        reasons.append("inactive")
    if not candidate.serves_channel:
        reasons.append("does not serve this channel")
    return tuple(reasons)


def pickup_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A store may hand over an order only if active, offering pickup and serving the channel."""
    reasons = list(transfer_exclusion_reasons(candidate))
    if not candidate.pickup:
        reasons.append("does not offer pickup")
    return tuple(reasons)
