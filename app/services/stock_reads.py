"""Reading stock: availability per channel (the storefront's hottest call), levels and history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from app.db import Raw, rules
from app.domain import ledger
from app.domain.access import Scope
from app.domain.errors import UnknownChannel, UnknownSku
from app.domain.geo import haversine_km
from app.models import Channel, Location, Movement, Sku, StockLevel
from app.services import catalog


@dataclass(slots=True)  # built 100s of times a request: a plain init is cheaper
class LocationAvailability:
    location: str
    available: int
    on_hand: int
    reserved: int
    incoming: int
    distance_km: float | None


@dataclass(slots=True)  # built 100s of times a request: a plain init is cheaper
class SkuAvailability:
    sku: str
    total_available: int
    locations: list[LocationAvailability]


@dataclass(slots=True)  # built 100s of times a request: a plain init is cheaper
class Availability:
    channel: str
    items: list[SkuAvailability]


@dataclass(frozen=True, slots=True)
class LevelView:
    sku: str
    location: str
    on_hand: int
    reserved: int
    incoming: int
    safety_stock: int
    safety_stock_override: int | None
    available_online: int
    available_store: int
    shortage: int


@dataclass(frozen=True, slots=True)
class MovementView:
    id: int
    kind: str
    sku: str
    location: str
    qty: int
    on_hand_delta: int
    reserved_delta: int
    incoming_delta: int
    reason: str | None
    source: str
    external_ref: str | None
    occurred_at: datetime
    recorded_at: datetime
    order_id: int | None
    fulfilment_id: int | None
    sync_run_id: int | None
    note: str | None


# One round trip: the channel's active locations crossed with the SKUs asked for, with their
# stock (a missing level is zero). Read on the driver's cursor: it is every product page's call.
_AVAILABILITY = """
SELECT s.code, l.code, l.lat, l.lon, l.default_safety_stock, v.on_hand, v.reserved, v.incoming,
       v.safety_stock, c.kind
FROM channels c
JOIN channel_locations cl ON cl.channel_id = c.id
JOIN locations l ON l.id = cl.location_id AND l.active
JOIN skus s ON s.code IN ({skus})
LEFT JOIN stock_levels v ON v.sku_id = s.id AND v.location_id = l.id
WHERE c.code = ?{only}
"""


@lru_cache(maxsize=256)
def _availability_sql(skus: int, one_location: bool) -> str:
    return _AVAILABILITY.format(skus=", ".join("?" * skus), only=" AND l.code = ?" if one_location else "")


def availability(
    session: Session,
    *,
    sku_codes: Sequence[str],
    channel: str,
    lat: float | None = None,
    lon: float | None = None,
    location: str | None = None,
) -> Availability:
    """Units each active location serving the channel can sell now, per SKU and in total
    (online channels hold safety stock back; a store's till does not)."""
    params: list[object] = [*sku_codes, channel]
    if location is not None:
        params.append(location)
    rows = Raw.of(session).execute(_availability_sql(len(sku_codes), location is not None), params)
    per_sku: dict[str, list[LocationAvailability]] = {code: [] for code in sku_codes}
    distances: dict[str, float | None] = {}
    free = ledger.free_units
    for sku, loc, llat, llon, default_safety, on_hand, reserved, incoming, override, kind in rows:
        on_hand, reserved = on_hand or 0, reserved or 0
        if loc not in distances:
            distances[loc] = (
                round(haversine_km(lat, lon, llat, llon), 2)
                if lat is not None and lon is not None and llat is not None and llon is not None
                else None
            )
        safety = ledger.safety_for(override, default_safety)
        per_sku[sku].append(LocationAvailability(
            loc, free(on_hand, reserved, safety, online=kind == "online"), on_hand, reserved, incoming or 0,
            distances[loc],
        ))  # fmt: skip
    if len(per_sku) != len(sku_codes) or any(not locs for locs in per_sku.values()):
        _explain_missing(session, sku_codes, channel, location, {s for s, locs in per_sku.items() if locs})
    items = []
    for sku in sku_codes:
        locs = per_sku[sku]
        if lat is not None:
            locs.sort(key=lambda r: (r.distance_km is None, r.distance_km or 0.0, r.location))
        else:
            locs.sort(key=lambda r: r.location)
        items.append(SkuAvailability(sku, sum(r.available for r in locs), locs))
    return Availability(channel, items)


def _explain_missing(
    session: Session, sku_codes: Sequence[str], channel: str, location: str | None, seen: set[str]
) -> None:
    """No row for some SKUs: an unknown channel, SKU or location is the caller's 404; otherwise the
    channel (or that location) simply has no active location, and they have nothing to sell."""
    if session.scalar(select(Channel.id).where(Channel.code == channel)) is None:
        raise UnknownChannel(f"no channel {channel!r}", channel=channel)
    missing = [c for c in sku_codes if c not in seen]
    known = set(session.scalars(select(Sku.code).where(Sku.code.in_(missing))))
    unknown = [c for c in missing if c not in known]
    if unknown:
        raise UnknownSku(f"unknown SKU(s): {', '.join(unknown[:20])}", unknown=unknown, field="skus")
    if location is not None:
        catalog.get_location(session, location)


def level_view(sku: str, loc: str, on_hand: int, reserved: int, incoming: int,
               override: int | None, default_safety: int) -> LevelView:  # fmt: skip
    """A level with its derived figures: safety in force, available online and at the till, shortage."""
    safety = ledger.safety_for(override, default_safety)
    lv = ledger.Level(on_hand, reserved, incoming, safety)
    return LevelView(sku, loc, on_hand, reserved, incoming, safety, override, ledger.available(lv, online=True),
                     ledger.available(lv, online=False), ledger.shortage(lv))  # fmt: skip


def list_levels(
    session: Session, *, sku: str | None, location: str | None, short_only: bool, scope: Scope | None,
    after: tuple[int, int] | None, limit: int,
) -> tuple[list[LevelView], tuple[int, int] | None]:  # fmt: skip
    """Stock levels with their derived figures, keyset-paged by (sku, location); staff see theirs."""
    stmt = (
        select(
            StockLevel.sku_id, StockLevel.location_id, Sku.code, Location.code,
            StockLevel.on_hand, StockLevel.reserved, StockLevel.incoming,
            StockLevel.safety_stock, Location.default_safety_stock,
        )
        .join(Sku, Sku.id == StockLevel.sku_id)
        .join(Location, Location.id == StockLevel.location_id)
        .order_by(StockLevel.sku_id, StockLevel.location_id)
        .limit(limit + 1)
    )  # fmt: skip
    if sku is not None:
        stmt = stmt.where(StockLevel.sku_id == catalog.get_sku(session, sku).id)
    if location is not None:
        loc = catalog.get_location(session, location)
        if scope is not None:
            scope.require(loc.id, location)
        stmt = stmt.where(StockLevel.location_id == loc.id)
    if scope is not None:
        stmt = stmt.where(StockLevel.location_id.in_(scope.location_ids))
    if short_only:
        stmt = stmt.where(rules.is_short(StockLevel.on_hand, StockLevel.reserved))
    if after is not None:
        stmt = stmt.where(
            tuple_(StockLevel.sku_id, StockLevel.location_id) > tuple_(literal(after[0]), literal(after[1]))
        )
    rows = session.execute(stmt).all()
    page = rows[:limit]
    nxt = (page[-1][0], page[-1][1]) if len(rows) > limit else None
    return [level_view(*r[2:]) for r in page], nxt


def history(
    session: Session, *, sku: str | None, location: str | None, kind: str | None, scope: Scope | None,
    before_id: int | None, limit: int,
) -> tuple[list[MovementView], int | None]:  # fmt: skip
    """Ledger movements newest first, keyset-paged by id; staff see their locations'."""
    stmt = (
        select(Movement, Sku.code, Location.code)
        .join(Sku, Sku.id == Movement.sku_id)
        .join(Location, Location.id == Movement.location_id)
        .order_by(Movement.id.desc())
        .limit(limit + 1)
    )
    if sku is not None:
        stmt = stmt.where(Movement.sku_id == catalog.get_sku(session, sku).id)
    if location is not None:
        loc = catalog.get_location(session, location)
        if scope is not None:
            scope.require(loc.id, location)
        stmt = stmt.where(Movement.location_id == loc.id)
    if kind is not None:
        stmt = stmt.where(Movement.kind == kind)
    if scope is not None:
        stmt = stmt.where(Movement.location_id.in_(scope.location_ids))
    if before_id is not None:
        stmt = stmt.where(Movement.id < before_id)
    rows = session.execute(stmt).all()
    page = rows[:limit]
    items = [
        MovementView(
            mv.id, mv.kind, sku_code, loc_code, mv.qty, mv.on_hand_delta, mv.reserved_delta, mv.incoming_delta,
            mv.reason, mv.source, mv.external_ref, mv.occurred_at, mv.recorded_at, mv.order_id,
            mv.fulfilment_id, mv.sync_run_id, mv.note,
        )
        for mv, sku_code, loc_code in page
    ]  # fmt: skip
    return items, (page[-1][0].id if len(rows) > limit else None)
