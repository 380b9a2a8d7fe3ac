"""Reference data API: locations, SKUs and channels (ops)."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, unit_of_work
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
    SkuBulk,
    SkuList,
    SkuListQuery,
    SkuOut,
    SkuPath,
    SkuUpdate,
    SkuUpsertResult,
)
from app.services import catalog
from app.web import session_factory
from app.web.auth import roles
from app.web.openapi import API_PREFIX, SECURITY
from app.web.pagination import cursor_text, encode_cursor, page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond, respond_page

bp = APIBlueprint(
    "api_catalog", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="catalog")], abp_security=SECURITY
)


@bp.post("/locations", responses={201: LocationOut, **WRITE_PROBLEMS})
@roles("ops")
def create_location(body: LocationCreate) -> ApiResult:
    """Create a store or warehouse."""
    with unit_of_work(session_factory()) as session:
        location = catalog.add_location(session, body.model_dump(exclude_unset=True) | {"code": body.code})
    return respond(LocationOut, location, 201)


@bp.put("/locations", responses={200: LocationList, **WRITE_PROBLEMS})
@roles("ops")
def upsert_locations(body: LocationBulk) -> ApiResult:
    """Create or update many locations by code, all or nothing."""
    with unit_of_work(session_factory()) as session:
        rows = [loc.model_dump(exclude_unset=True) | {"code": loc.code} for loc in body.locations]
        locations = catalog.upsert_locations(session, rows)
    return respond(LocationList, {"items": locations})


@bp.get("/locations", responses={200: LocationList, **READ_PROBLEMS})
@roles("ops", "storefront", "staff")
def list_locations() -> ApiResult:
    """Every location with its routing and pickup settings."""
    with read_only(session_factory()) as session:
        return respond(LocationList, {"items": catalog.list_locations(session)})


@bp.get("/locations/<code>", responses={200: LocationOut, **READ_PROBLEMS})
@roles("ops", "storefront", "staff")
def get_location(path: LocationPath) -> ApiResult:
    """One location."""
    with read_only(session_factory()) as session:
        return respond(LocationOut, catalog.show_location(session, path.code))


@bp.patch("/locations/<code>", responses={200: LocationOut, **WRITE_PROBLEMS})
@roles("ops")
def update_location(path: LocationPath, body: LocationUpdate) -> ApiResult:
    """Change some settings of a location."""
    with unit_of_work(session_factory()) as session:
        location = catalog.update_location(session, path.code, body.model_dump(exclude_unset=True))
    return respond(LocationOut, location)


@bp.post("/skus", responses={201: SkuUpsertResult, 200: SkuUpsertResult, **WRITE_PROBLEMS})
@roles("ops")
def upsert_skus(body: SkuBulk) -> ApiResult:
    """Create or update SKUs by code, all or nothing: 201 if any was created, 200 if all existed."""
    with unit_of_work(session_factory()) as session:
        saved = catalog.save_skus(session, [s.model_dump() for s in body.skus])
    return respond(SkuUpsertResult, saved, 201 if saved.created else 200)


@bp.get("/skus", responses={200: SkuList, **READ_PROBLEMS})
@roles("ops", "storefront", "staff")
def list_skus(query: SkuListQuery) -> ApiResult:
    """SKUs in code order, keyset-paged."""
    limit = page_limit(query.limit)
    with read_only(session_factory()) as session:
        skus, nxt = catalog.list_skus(session, after_code=cursor_text(query.cursor), limit=limit)
    return respond_page(SkuList, skus, encode_cursor(nxt) if nxt is not None else None)


@bp.get("/skus/<code>", responses={200: SkuOut, **READ_PROBLEMS})
@roles("ops", "storefront", "staff")
def get_sku(path: SkuPath) -> ApiResult:
    """One SKU."""
    with read_only(session_factory()) as session:
        return respond(SkuOut, catalog.show_sku(session, path.code))


@bp.patch("/skus/<code>", responses={200: SkuOut, **WRITE_PROBLEMS})
@roles("ops")
def update_sku(path: SkuPath, body: SkuUpdate) -> ApiResult:
    """Change a SKU's name, barcode or active flag."""
    with unit_of_work(session_factory()) as session:
        sku = catalog.update_sku(session, path.code, body.model_dump(exclude_unset=True))
    return respond(SkuOut, sku)


@bp.put("/channels", responses={200: ChannelOut, **WRITE_PROBLEMS})
@roles("ops")
def upsert_channel(body: ChannelIn) -> ApiResult:
    """Create or update a channel and the locations serving it."""
    with unit_of_work(session_factory()) as session:
        channel = catalog.upsert_channel(session, body.model_dump())
    return respond(ChannelOut, channel)


@bp.get("/channels", responses={200: ChannelList, **READ_PROBLEMS})
@roles("ops", "storefront", "staff")
def list_channels() -> ApiResult:
    """Every channel and the locations serving it."""
    with read_only(session_factory()) as session:
        return respond(ChannelList, {"items": catalog.list_channels(session)})
