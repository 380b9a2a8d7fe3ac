"""Reserving stock without overselling, and a location's daily shipment capacity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import Raw, rules
from app.models import LocationDayUsage
from app.services.orders.candidates import Context
from app.services.orders.commands import LostRace

# One statement reserves every line or reports which it could not: a line is reserved only if
# available covers it at that instant (re-checked on the newest row version), and the rows are
# locked first in (sku, location) order, so concurrent orders never oversell and never deadlock.
# The locks are held to commit. RETURNING gives the rows as left, for stock events.
_RESERVE_PG = """
WITH v (sku_id, location_id, qty, online, ds) AS (VALUES {values}),
locked AS (
    SELECT s.sku_id, s.location_id FROM stock_levels s
    JOIN v ON s.sku_id = v.sku_id AND s.location_id = v.location_id
    ORDER BY s.sku_id, s.location_id
    FOR UPDATE OF s
)
UPDATE stock_levels s SET reserved = s.reserved + v.qty, updated_at = ?
FROM v, locked
WHERE s.sku_id = v.sku_id AND s.location_id = v.location_id
  AND locked.sku_id = s.sku_id AND locked.location_id = s.location_id
  AND {reservable}
RETURNING s.sku_id, s.location_id, s.on_hand, s.reserved, s.safety_stock
""".replace("{reservable}", rules.reservable_sql("s", "v"))


# SQLite serialises writers (BEGIN IMMEDIATE), so there is no lock order to keep.
_RESERVE_SQLITE = """
WITH v (sku_id, location_id, qty, online, ds) AS (VALUES {values})
UPDATE stock_levels AS s SET reserved = s.reserved + v.qty, updated_at = ?
FROM v
WHERE s.sku_id = v.sku_id AND s.location_id = v.location_id
  AND {reservable}
RETURNING sku_id, location_id, on_hand, reserved, safety_stock
""".replace("{reservable}", rules.reservable_sql("s", "v"))


@lru_cache(maxsize=128)
def _reserve_sql(sqlite_: bool, n: int) -> str:
    row = "(?, ?, ?, ?, ?)" if sqlite_ else "(" + ", ".join(["CAST(? AS INTEGER)"] * 5) + ")"
    return (_RESERVE_SQLITE if sqlite_ else _RESERVE_PG).format(values=", ".join([row] * n))


@dataclass(frozen=True)
class LevelAfter:
    sku_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int | None


def reserve(
    session: Session,
    ctx: Context,
    wanted: dict[tuple[int, int], int],
    now: datetime,
    inserts: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = (),
) -> list[LevelAfter]:
    """Reserve every (sku, location) qty or none; any shortfall is a lost race. Returns the levels after.

    `inserts` are rows that go with the reservation, written in the same statement where the
    database allows (PostgreSQL): the order's rows travel with its reservation in one message.
    """
    if not wanted:
        return []
    online = 1 if ctx.online else 0
    params: list[Any] = []
    for (sku_id, loc_id), qty in sorted(wanted.items()):
        params += (sku_id, loc_id, qty, online, ctx.location_by_id[loc_id].default_safety)
    params.append(now)
    raw = Raw.of(session)
    rows = [
        LevelAfter(*row)
        for row in raw.execute_together(inserts, _reserve_sql(raw.sqlite, len(wanted)), params)
    ]
    if len(rows) != len(wanted):
        raise LostRace("stock changed between routing and reserving")
    return rows


_TAKE_CAPACITY = """
INSERT INTO location_day_usage (location_id, day, used) VALUES (?, ?, 1)
ON CONFLICT (location_id, day) DO UPDATE SET used = location_day_usage.used + 1
WHERE location_day_usage.used < ?
RETURNING used
"""


def take_capacity(session: Session, ctx: Context, location_ids: Sequence[int]) -> None:
    """Count one shipment against each capacity-limited location's day, or lose the race."""
    raw = Raw.of(session)
    for loc_id in sorted(set(location_ids)):
        loc = ctx.location_by_id[loc_id]
        if loc.daily_capacity is None:
            continue
        if not raw.execute(_TAKE_CAPACITY, [loc_id, ctx.days[loc_id], loc.daily_capacity]):
            raise LostRace(f"{loc.code} reached its daily capacity")


def release_capacity(session: Session, location_id: int, day: date) -> None:
    """Give a cancelled shipment's capacity back to its day."""
    session.execute(
        update(LocationDayUsage)
        .where(
            LocationDayUsage.location_id == location_id,
            LocationDayUsage.day == day,
            LocationDayUsage.used > 0,
        )
        .values(used=LocationDayUsage.used - 1)
    )
