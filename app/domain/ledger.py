"""Ledger maths. Invariants: every change to on_hand, reserved or incoming is one movement; a
stock level is the sum of its movements; available is never shown below zero; reserved and
incoming never go below zero, while on_hand may (an outside sale is a fact, not a request)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    RECEIPT = "receipt"
    SALE = "sale"
    ADJUSTMENT = "adjustment"
    COUNT_ADJUSTMENT = "count_adjustment"
    RETURN = "return"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_EXPECTED = "transfer_expected"
    TRANSFER_IN = "transfer_in"
    TRANSFER_CANCELLED = "transfer_cancelled"
    RESERVATION = "reservation"
    RELEASE = "release"
    FULFILMENT = "fulfilment"
    # A vendor's physical count seen in its change feed: kept, moves nothing (the snapshot books it).
    OBSERVATION = "observation"


# Reasons an ops adjustment may carry; a count_adjustment always has reason "count".
ADJUSTMENT_REASONS = frozenset(
    {"damaged", "lost", "found", "theft", "expired", "correction", "count", "other"}
)


@dataclass(frozen=True)
class Deltas:
    on_hand: int = 0
    reserved: int = 0
    incoming: int = 0

    def __add__(self, other: Deltas) -> Deltas:
        return Deltas(
            self.on_hand + other.on_hand,
            self.reserved + other.reserved,
            self.incoming + other.incoming,
        )

    @property
    def is_zero(self) -> bool:
        return self.on_hand == 0 and self.reserved == 0 and self.incoming == 0


def deltas_for(kind: Kind, qty: int, *, resellable: bool = True) -> Deltas:
    """The quantities one movement of `kind` moves; qty is signed only for adjustments."""
    match kind:
        case Kind.RECEIPT:
            return Deltas(on_hand=qty)
        case Kind.TRANSFER_IN:
            return Deltas(on_hand=qty, incoming=-qty)
        case Kind.SALE | Kind.TRANSFER_OUT:
            return Deltas(on_hand=-qty)
        case Kind.ADJUSTMENT | Kind.COUNT_ADJUSTMENT:
            return Deltas(on_hand=qty)
        case Kind.RETURN:
            # A damaged return is still recorded where it came back, but does not rejoin stock.
            return Deltas(on_hand=qty if resellable else 0)
        case Kind.TRANSFER_EXPECTED:
            return Deltas(incoming=qty)
        case Kind.TRANSFER_CANCELLED:
            return Deltas(incoming=-qty)
        case Kind.RESERVATION:
            return Deltas(reserved=qty)
        case Kind.RELEASE:
            return Deltas(reserved=-qty)
        case Kind.FULFILMENT:
            return Deltas(on_hand=-qty, reserved=-qty)
        case Kind.OBSERVATION:
            return Deltas()
    raise ValueError(f"unknown movement kind {kind!r}")


@dataclass(frozen=True)
class Level:
    on_hand: int
    reserved: int
    incoming: int = 0
    safety_stock: int = 0


def available(level: Level, *, online: bool) -> int:
    """Units a channel may still sell: on_hand - reserved (- safety stock online), never < 0."""
    return free_units(level.on_hand, level.reserved, level.safety_stock, online=online)


def safety_for(override: int | None, default: int) -> int:
    """The safety stock that applies to a level: its own override, else its location's default."""
    return default if override is None else override


def free_units(on_hand: int, reserved: int, safety_stock: int, *, online: bool) -> int:
    """available() on bare numbers, for hot loops: on_hand - reserved (- safety online), never < 0."""
    return max(on_hand - reserved - (safety_stock if online else 0), 0)


def shortage(level: Level) -> int:
    """Units promised but not physically there (an outside sale took them); 0 when covered."""
    return max(level.reserved - max(level.on_hand, 0), 0)


def sum_deltas(rows: Iterable[Deltas]) -> Deltas:
    """Sum of movements: what the projection of a (SKU, location) must equal."""
    total = Deltas()
    for row in rows:
        total = total + row
    return total
