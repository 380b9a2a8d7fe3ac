"""The arithmetic of a fulfilment line's units. Invariant: qty = reserved + awaiting + done +
cancelled at every step (reserved: held here; awaiting: coming by transfer; done: handed over;
cancelled: given back or not wanted any more)."""

from __future__ import annotations

from typing import Protocol


class LineUnits(Protocol):
    qty: int
    reserved: int
    awaiting: int
    done: int
    cancelled: int


def hand_over(line: LineUnits) -> int:
    """Everything reserved leaves with the carrier or the customer; returns the units handed over."""
    units = line.reserved
    line.done += units
    line.reserved = 0
    return units


def give_up(line: LineUnits) -> int:
    """The line will not be fulfilled: all it holds or awaits is cancelled; returns the units it held."""
    held = line.reserved
    line.cancelled += line.reserved + line.awaiting
    line.reserved = line.awaiting = 0
    return held


def cancel_awaited(line: LineUnits, qty: int) -> int:
    """Cancel up to qty of the units still coming by transfer; returns how many."""
    take = min(qty, line.awaiting)
    line.awaiting -= take
    line.cancelled += take
    return take


def cancel_reserved(line: LineUnits, qty: int) -> int:
    """Cancel up to qty of the units held here; returns how many (to release)."""
    take = min(qty, line.reserved)
    line.reserved -= take
    line.cancelled += take
    return take


def arrive(line: LineUnits, qty: int) -> int:
    """Transferred units arrived: up to qty awaited units are now held here; returns how many."""
    take = min(qty, line.awaiting)
    line.awaiting -= take
    line.reserved += take
    return take


def source_elsewhere(line: LineUnits, qty: int, *, still_awaited: bool) -> None:
    """qty held units go: a pickup now awaits them by transfer; anything else no longer holds them."""
    line.reserved -= qty
    if still_awaited:
        line.awaiting += qty
    else:
        line.cancelled += qty


def add(line: LineUnits, qty: int) -> None:
    """qty more units reserved on this line (a re-route adding to an existing line)."""
    line.qty += qty
    line.reserved += qty


def settled(line: LineUnits) -> bool:
    """Nothing is held or awaited any more."""
    return line.reserved == 0 and line.awaiting == 0
