"""Locations, SKUs and channels: the reference data the ledger and routing stand on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import insert_for
from app.domain.errors import AlreadyExists, InvalidInput, UnknownChannel, UnknownLocation, UnknownSku
from app.models import Channel, ChannelLocation, Location, Postcode, Sku
from app.services.catalog_views import ChannelView, LocationView, SkuUpsertView, SkuView

LOCATION_FIELDS = (
    "name", "kind", "lat", "lon", "postcode", "timezone", "active", "ships", "pickup",
    "priority", "daily_capacity", "pick_minutes", "pickup_hold_hours", "default_safety_stock",
    "pickup_reminder_hours", "opening_hours", "transfer_hours", "not_found_policy",
)  # fmt: skip


def get_location(session: Session, code: str) -> Location:
    """The location with this code, or UnknownLocation."""
    location = session.scalar(select(Location).where(Location.code == code))
    if location is None:
        raise UnknownLocation(f"no location {code!r}", location=code)
    return location


def location_ids(session: Session, codes: Iterable[str], field: str = "location") -> dict[str, int]:
    """Map location codes to ids; every unknown code is reported at once, naming the field."""
    wanted = set(codes)
    found = dict(
        session.execute(select(Location.code, Location.id).where(Location.code.in_(wanted))).tuples().all()
    )
    missing = sorted(wanted - found.keys())
    if missing:
        raise UnknownLocation(f"unknown location(s): {', '.join(missing)}", unknown=missing, field=field)
    return found


def sku_ids(session: Session, codes: Iterable[str], field: str = "sku") -> dict[str, int]:
    """Map SKU codes to ids; every unknown code is reported at once, naming the field."""
    wanted = set(codes)
    found: dict[str, int] = {}
    chunk = sorted(wanted)
    # Bounded IN lists keep SQLite under its variable limit for large batches.
    for start in range(0, len(chunk), 900):
        part = chunk[start : start + 900]
        found.update(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_(part))).tuples().all())
    missing = sorted(wanted - found.keys())
    if missing:
        raise UnknownSku(f"unknown SKU(s): {', '.join(missing[:20])}", unknown=missing, field=field)
    return found


def _set_channels(session: Session, location: Location, channel_codes: Sequence[str]) -> None:
    channels = dict(
        session.execute(select(Channel.code, Channel.id).where(Channel.code.in_(channel_codes)))
        .tuples()
        .all()
    )
    missing = sorted(set(channel_codes) - channels.keys())
    if missing:
        raise InvalidInput(
            "unknown channel(s)",
            [{"field": "channels", "message": f"unknown channel {c!r}"} for c in missing],
        )
    session.execute(delete(ChannelLocation).where(ChannelLocation.location_id == location.id))
    session.add_all(
        ChannelLocation(channel_id=cid, location_id=location.id) for cid in sorted(channels.values())
    )


def create_location(session: Session, data: dict[str, Any]) -> Location:
    """Add a location; its code must be new (the row, for seeding: surfaces use add_location)."""
    if session.scalar(select(Location.id).where(Location.code == data["code"])) is not None:
        raise AlreadyExists(f"location {data['code']!r} exists", location=data["code"])
    location = Location(code=data["code"])
    _apply_location(session, location, data)
    return location


def add_location(session: Session, data: dict[str, Any]) -> LocationView:
    """Add a location (its code must be new), as surfaces show it."""
    return location_views(session, [create_location(session, data)])[0]


def update_location(session: Session, code: str, data: dict[str, Any]) -> LocationView:
    """Change the given fields of a location; unspecified fields keep their value."""
    location = get_location(session, code)
    _apply_location(session, location, data)
    return location_views(session, [location])[0]


def upsert_locations(session: Session, rows: Sequence[dict[str, Any]]) -> list[LocationView]:
    """Create or update many locations by code, all or nothing."""
    existing = {
        loc.code: loc
        for loc in session.scalars(select(Location).where(Location.code.in_([r["code"] for r in rows])))
    }
    result = []
    for row in rows:
        location = existing.get(row["code"]) or Location(code=row["code"])
        _apply_location(session, location, row)
        result.append(location)
    return location_views(session, result)


def _apply_location(session: Session, location: Location, data: dict[str, Any]) -> None:
    for field in LOCATION_FIELDS:
        if field in data and (
            data[field] is not None or field in {"daily_capacity", "postcode", "lat", "lon", "opening_hours"}
        ):
            setattr(location, field, data[field])
    if location.id is None:
        session.add(location)
        session.flush()
    if data.get("channels") is not None:
        _set_channels(session, location, data["channels"])


def location_channels(session: Session, location_ids_: Iterable[int]) -> dict[int, list[str]]:
    """Channel codes served, per location id."""
    out: dict[int, list[str]] = {}
    rows = session.execute(
        select(ChannelLocation.location_id, Channel.code)
        .join(Channel, Channel.id == ChannelLocation.channel_id)
        .where(ChannelLocation.location_id.in_(list(location_ids_)))
        .order_by(Channel.code)
    )
    for loc_id, code in rows:
        out.setdefault(loc_id, []).append(code)
    return out


def list_locations(session: Session) -> list[LocationView]:
    """Every location, by code."""
    return location_views(session, list(session.scalars(select(Location).order_by(Location.code))))


def show_location(session: Session, code: str) -> LocationView:
    """The location with this code as surfaces show it, or UnknownLocation."""
    return location_views(session, [get_location(session, code)])[0]


def location_views(session: Session, locations: Sequence[Location]) -> list[LocationView]:
    """Locations with the channels each serves (one read for all of them)."""
    chans = location_channels(session, [loc.id for loc in locations])
    return [
        LocationView(
            code=loc.code, name=loc.name, kind=loc.kind, lat=loc.lat, lon=loc.lon, postcode=loc.postcode,
            timezone=loc.timezone, active=loc.active, ships=loc.ships, pickup=loc.pickup,
            priority=loc.priority, daily_capacity=loc.daily_capacity, pick_minutes=loc.pick_minutes,
            pickup_hold_hours=loc.pickup_hold_hours, default_safety_stock=loc.default_safety_stock,
            channels=tuple(chans.get(loc.id, ())), pickup_reminder_hours=loc.pickup_reminder_hours,
            opening_hours=loc.opening_hours, transfer_hours=loc.transfer_hours, not_found_policy=loc.not_found_policy,
        )
        for loc in locations
    ]  # fmt: skip


# ---------------------------------------------------------------- SKUs
def get_sku(session: Session, code: str) -> Sku:
    """The SKU with this code, or UnknownSku."""
    sku = session.scalar(select(Sku).where(Sku.code == code))
    if sku is None:
        raise UnknownSku(f"no SKU {code!r}", sku=code)
    return sku


def show_sku(session: Session, code: str) -> SkuView:
    """The SKU with this code as surfaces show it, or UnknownSku."""
    return sku_view(get_sku(session, code))


def sku_view(sku: Sku) -> SkuView:
    return SkuView(code=sku.code, name=sku.name, barcode=sku.barcode, active=sku.active)


def upsert_skus(session: Session, rows: Sequence[dict[str, Any]]) -> tuple[list[Sku], int]:
    """Create or update SKUs by code, all or nothing; the rows (for seeding: surfaces use save_skus)
    and how many were new."""
    codes = [r["code"] for r in rows]
    existing: dict[str, Sku] = {}
    for start in range(0, len(codes), 900):
        existing.update(
            (s.code, s) for s in session.scalars(select(Sku).where(Sku.code.in_(codes[start : start + 900])))
        )
    _check_barcodes(session, rows)
    created = 0
    result = []
    for row in rows:
        sku = existing.get(row["code"])
        if sku is None:
            sku = Sku(code=row["code"])
            session.add(sku)
            created += 1
        sku.name = row["name"]
        sku.barcode = row.get("barcode")
        sku.active = row.get("active", True)
        result.append(sku)
    session.flush()
    return result, created


def save_skus(session: Session, rows: Sequence[dict[str, Any]]) -> SkuUpsertView:
    """Create or update SKUs by code, all or nothing: the SKUs as saved and how many were new."""
    skus, created = upsert_skus(session, rows)
    return SkuUpsertView(created=created, updated=len(skus) - created, items=[sku_view(s) for s in skus])


def _check_barcodes(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    # A barcode names one SKU; a scanner at the counter must never find two.
    wanted = {r["barcode"]: r["code"] for r in rows if r.get("barcode")}
    errors = []
    seen: dict[str, str] = {}
    for i, r in enumerate(rows):
        bc = r.get("barcode")
        if bc and bc in seen and seen[bc] != r["code"]:
            errors.append({"field": f"skus[{i}].barcode", "message": f"barcode {bc} given twice"})
        if bc:
            seen[bc] = r["code"]
    if wanted:
        taken = (
            session.execute(select(Sku.barcode, Sku.code).where(Sku.barcode.in_(list(wanted)))).tuples().all()
        )
        for barcode, owner in taken:
            if owner != wanted[barcode]:
                index = next(i for i, r in enumerate(rows) if r.get("barcode") == barcode)
                errors.append(
                    {"field": f"skus[{index}].barcode", "message": f"barcode {barcode} belongs to {owner}"}
                )
    if errors:
        raise InvalidInput("barcode clash", errors)


def update_sku(session: Session, code: str, data: dict[str, Any]) -> SkuView:
    """Change the given fields of a SKU."""
    sku = get_sku(session, code)
    if data.get("barcode"):
        _check_barcodes(session, [{"code": code, "barcode": data["barcode"]}])
    for field in ("name", "barcode", "active"):
        if field in data and data[field] is not None:
            setattr(sku, field, data[field])
    return sku_view(sku)


def list_skus(session: Session, *, after_code: str | None, limit: int) -> tuple[list[SkuView], str | None]:
    """SKUs in code order after a code, keyset-paged; and the code to go on after (None: no more)."""
    stmt = select(Sku).order_by(Sku.code).limit(limit + 1)
    if after_code is not None:
        stmt = stmt.where(Sku.code > after_code)
    skus = list(session.scalars(stmt))
    page = skus[:limit]
    return [sku_view(s) for s in page], (page[-1].code if len(skus) > limit else None)


# ---------------------------------------------------------------- channels
def upsert_channel(session: Session, data: dict[str, Any]) -> ChannelView:
    """Create or update a channel and the locations that serve it."""
    channel = session.scalar(select(Channel).where(Channel.code == data["code"]))
    if channel is None:
        channel = Channel(code=data["code"])
        session.add(channel)
    channel.name = data["name"]
    channel.kind = data.get("kind", "online")
    ids = location_ids(session, data.get("locations", []), field="locations")
    session.flush()
    session.execute(delete(ChannelLocation).where(ChannelLocation.channel_id == channel.id))
    session.add_all(ChannelLocation(channel_id=channel.id, location_id=i) for i in sorted(ids.values()))
    session.flush()
    session.refresh(channel)
    return channel_view(channel)


def channel_view(channel: Channel) -> ChannelView:
    return ChannelView(
        code=channel.code, name=channel.name, kind=channel.kind, locations=tuple(loc.code for loc in channel.locations)
    )


def get_channel(session: Session, code: str) -> Channel:
    """The channel with this code, or a not-found refusal."""
    channel = session.scalar(select(Channel).where(Channel.code == code))
    if channel is None:
        raise UnknownChannel(f"no channel {code!r}", channel=code)
    return channel


def list_channels(session: Session) -> list[ChannelView]:
    """Every channel, by code, with the locations serving it."""
    return [channel_view(c) for c in session.scalars(select(Channel).order_by(Channel.code))]


def load_postcodes(session: Session, places: Sequence[tuple[str, float, float]]) -> int:
    """Add or move postcodes (code, lat, lon) so ship-to-postcode deliveries can be placed."""
    if not places:
        return 0
    for start in range(0, len(places), 5000):
        chunk = [{"code": c, "lat": lat, "lon": lon} for c, lat, lon in places[start : start + 5000]]
        stmt = insert_for(session, Postcode).values(chunk)
        session.execute(stmt.on_conflict_do_update(index_elements=["code"], set_={
            "lat": stmt.excluded.lat, "lon": stmt.excluded.lon}))  # fmt: skip
    return len(places)
