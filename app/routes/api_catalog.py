"""Reference data API: locations, SKUs and channels (ops)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, unit_of_work
from app.models import Channel, Location, Sku
from app.routes.common import (
    API_PREFIX,
    SECURITY,
    ApiResult,
    cursor_text,
    encode_cursor,
    page_limit,
    roles,
    session_factory,
)
from app.schemas import (
    ChannelIn,
    ChannelList,
    ChannelOut,
    LocationBulk,
    LocationCreate,
    LocationList,
    LocationOut,
    LocationPath,
    LocationUpdate,
    Problem,
    SkuBulk,
    SkuList,
    SkuListQuery,
    SkuOut,
    SkuPath,
    SkuUpdate,
    SkuUpsertResult,
)
from app.services import catalog

bp = APIBlueprint(
    "api_catalog", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="catalog")], abp_security=SECURITY
)
ERRORS: dict[int | str, Any] = {401: Problem, 403: Problem, 404: Problem, 409: Problem, 422: Problem}


def location_out(location: Location, channels: list[str]) -> dict[str, Any]:
    return {
        "code": location.code, "name": location.name, "kind": location.kind,
        "lat": location.lat, "lon": location.lon, "postcode": location.postcode,
        "timezone": location.timezone, "active": location.active, "ships": location.ships,
        "pickup": location.pickup, "priority": location.priority,
        "daily_capacity": location.daily_capacity, "pick_minutes": location.pick_minutes,
        "pickup_hold_hours": location.pickup_hold_hours,
        "default_safety_stock": location.default_safety_stock, "channels": channels,
    }  # fmt: skip


def sku_out(sku: Sku) -> dict[str, Any]:
    return {"code": sku.code, "name": sku.name, "barcode": sku.barcode, "active": sku.active}


def channel_out(channel: Channel) -> dict[str, Any]:
    return {
        "code": channel.code,
        "name": channel.name,
        "kind": channel.kind,
        "locations": [loc.code for loc in channel.locations],
    }


def _locations_out(session: Any, locations: list[Location]) -> list[dict[str, Any]]:
    chans = catalog.location_channels(session, [loc.id for loc in locations])
    return [location_out(loc, chans.get(loc.id, [])) for loc in locations]


@bp.post("/locations", responses={201: LocationOut, **ERRORS})
@roles("ops")
def create_location(body: LocationCreate) -> ApiResult:
    """Create a store or warehouse."""
    with unit_of_work(session_factory()) as session:
        location = catalog.create_location(session, body.model_dump(exclude_unset=True) | {"code": body.code})
        out = _locations_out(session, [location])[0]
    return out, 201


@bp.put("/locations", responses={200: LocationList, **ERRORS})
@roles("ops")
def upsert_locations(body: LocationBulk) -> ApiResult:
    """Create or update many locations by code, all or nothing."""
    with unit_of_work(session_factory()) as session:
        rows = [loc.model_dump(exclude_unset=True) | {"code": loc.code} for loc in body.locations]
        out = _locations_out(session, catalog.upsert_locations(session, rows))
    return {"items": out}


@bp.get("/locations", responses={200: LocationList, **ERRORS})
@roles("ops", "storefront", "staff")
def list_locations() -> ApiResult:
    """Every location with its routing and pickup settings."""
    with read_only(session_factory()) as session:
        return {"items": _locations_out(session, catalog.list_locations(session))}


@bp.get("/locations/<code>", responses={200: LocationOut, **ERRORS})
@roles("ops", "storefront", "staff")
def get_location(path: LocationPath) -> ApiResult:
    """One location."""
    with read_only(session_factory()) as session:
        return _locations_out(session, [catalog.get_location(session, path.code)])[0]


@bp.patch("/locations/<code>", responses={200: LocationOut, **ERRORS})
@roles("ops")
def update_location(path: LocationPath, body: LocationUpdate) -> ApiResult:
    """Change some settings of a location."""
    with unit_of_work(session_factory()) as session:
        location = catalog.update_location(session, path.code, body.model_dump(exclude_unset=True))
        return _locations_out(session, [location])[0]


@bp.post("/skus", responses={201: SkuUpsertResult, **ERRORS})
@roles("ops")
def upsert_skus(body: SkuBulk) -> ApiResult:
    """Create or update SKUs by code, all or nothing."""
    with unit_of_work(session_factory()) as session:
        skus, created = catalog.upsert_skus(session, [s.model_dump() for s in body.skus])
        out = {"created": created, "updated": len(skus) - created, "items": [sku_out(s) for s in skus]}
    return out, 201 if created else 200


@bp.get("/skus", responses={200: SkuList, **ERRORS})
@roles("ops", "storefront", "staff")
def list_skus(query: SkuListQuery) -> ApiResult:
    """SKUs in code order, keyset-paged."""
    limit = page_limit(query.limit)
    with read_only(session_factory()) as session:
        skus = catalog.list_skus(session, after_code=cursor_text(query.cursor), limit=limit + 1)
    page = skus[:limit]
    nxt = encode_cursor(page[-1].code) if len(skus) > limit else None
    return {"items": [sku_out(s) for s in page], "next_cursor": nxt}


@bp.get("/skus/<code>", responses={200: SkuOut, **ERRORS})
@roles("ops", "storefront", "staff")
def get_sku(path: SkuPath) -> ApiResult:
    """One SKU."""
    with read_only(session_factory()) as session:
        return sku_out(catalog.get_sku(session, path.code))


@bp.patch("/skus/<code>", responses={200: SkuOut, **ERRORS})
@roles("ops")
def update_sku(path: SkuPath, body: SkuUpdate) -> ApiResult:
    """Change a SKU's name, barcode or active flag."""
    with unit_of_work(session_factory()) as session:
        return sku_out(catalog.update_sku(session, path.code, body.model_dump(exclude_unset=True)))


@bp.put("/channels", responses={200: ChannelOut, **ERRORS})
@roles("ops")
def upsert_channel(body: ChannelIn) -> ApiResult:
    """Create or update a channel and the locations serving it."""
    with unit_of_work(session_factory()) as session:
        return channel_out(catalog.upsert_channel(session, body.model_dump()))


@bp.get("/channels", responses={200: ChannelList, **ERRORS})
@roles("ops", "storefront", "staff")
def list_channels() -> ApiResult:
    """Every channel and the locations serving it."""
    with read_only(session_factory()) as session:
        return {"items": [channel_out(c) for c in catalog.list_channels(session)]}
