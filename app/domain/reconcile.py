"""Reconciliation rules (FEED-FORMATS.md §9.3): when a snapshot row may be compared, and what then."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum


class Verdict(StrEnum):
    MATCH = "match"  # quiet, no drift
    APPLY = "apply"  # quiet, drift within the auto-apply limit: one count_adjustment
    DISCREPANCY = "discrepancy"  # quiet, drift too large: ops decide
    DEFER = "defer"  # not quiet around the read, or the feed does not yet cover it
    FIRST_STRIKE = "first_strike"  # two-strike feeds: a drift seen once waits for a second sighting


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    drift: int
    why: str = ""


def whole_units(q: Decimal | None) -> int | None:
    """A vendor quantity as whole units, or None when it is not a whole number (never rounded)."""
    if q is None:
        return None
    try:
        if q != q.to_integral_value():
            return None
        n = int(q)
    except (InvalidOperation, ValueError, OverflowError):
        return None
    return n if -(2**31) < n < 2**31 else None


def is_quiet(read_at: datetime, settle: timedelta, recent: list[datetime] | tuple[datetime, ...]) -> bool:
    """Quiet: no fact visible to the feed for this key was recorded by the vendor after T - settle.

    §9.3 bounds the window above by W; every visible fact we hold was recorded at or before W
    (the feed returned it by then), except that W comes from a Date header with whole seconds
    while the facts carry milliseconds, so no upper bound is the same rule without that hole."""
    lo = read_at - settle
    return not any(at > lo for at in recent)


def decide(
    *,
    vendor_qty: int,
    visible_qty: int,
    read_at: datetime,
    covered_until: datetime | None,
    settle: timedelta,
    recent: list[datetime] | tuple[datetime, ...],
    auto_apply_limit: int,
    two_strike: bool = False,
    previous_strike: int | None = None,
) -> Decision:
    """Compare a snapshot row with the ledger as the feed sees it, or defer it (never guess).

    covered_until (W) is the change feed's coverage; for a feed without one it is the read time.
    """
    w = covered_until if covered_until is not None else read_at
    if w < read_at:
        return Decision(Verdict.DEFER, 0, "the change feed does not yet cover the read")
    if not is_quiet(read_at, settle, recent):
        return Decision(Verdict.DEFER, 0, "the key moved around the time it was read")
    drift = vendor_qty - visible_qty
    if drift == 0:
        return Decision(Verdict.MATCH, 0)
    if two_strike and previous_strike != drift:
        return Decision(Verdict.FIRST_STRIKE, drift, "the same difference must be seen on two snapshots")
    if abs(drift) <= auto_apply_limit:
        return Decision(Verdict.APPLY, drift)
    return Decision(
        Verdict.DISCREPANCY, drift, f"difference {drift:+d} is over the auto-apply limit {auto_apply_limit}"
    )


def available_to_sell(free_units: list[int] | tuple[int, ...], safety_buffer: int) -> int:
    """ATS pushed to a channel: the sum over its locations of free units less the buffer, never below 0."""
    return sum(max(0, f - safety_buffer) for f in free_units)
