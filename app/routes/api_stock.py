"""Stock API: movement batches, levels, availability and ledger history."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction
from app.domain.errors import InvalidInput
from app.routes.common import (
    API_PREFIX,
    SECURITY,
    ApiResult,
    check_location_scope,
    cursor_id,
    cursor_ids,
    encode_cursor,
    page_limit,
    principal,
    roles,
    session_factory,
)
from app.schemas import (
    AvailabilityOut,
    AvailabilityQuery,
    LevelOut,
    LevelPage,
    LevelPath,
    LevelQuery,
    MovementBatch,
    MovementBatchOut,
    MovementPage,
    MovementQuery,
    Problem,
    SafetyStockIn,
)
from app.services import catalog, orders, stock

bp = APIBlueprint(
    "api_stock", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="stock")], abp_security=SECURITY
)
ERRORS: dict[int | str, Any] = {401: Problem, 403: Problem, 404: Problem, 409: Problem, 422: Problem}


@bp.post("/stock/movements", responses={201: MovementBatchOut, 200: MovementBatchOut, **ERRORS})
@roles("ops")
def post_movements(body: MovementBatch) -> ApiResult:
    """Apply a batch of stock movements all-or-nothing; replays (same source + external_ref) count once."""
    limit = int(current_app.config["MAX_BATCH_MOVEMENTS"])
    if len(body.movements) > limit:
        raise InvalidInput(
            "batch too large", [{"field": "movements", "message": f"at most {limit} per batch"}]
        )
    rows = [m.model_dump() for m in body.movements]
    key_id = principal().key_id
    policy = orders.policy_from_config(current_app.config)  # type: ignore[arg-type]
    result = transaction(
        session_factory(), lambda s: stock.post_movements(s, rows, api_key_id=key_id, policy=policy)
    )
    out = {
        "applied": result.applied,
        "duplicates": result.duplicates,
        "results": result.results,
        "shortages": result.shortages,
    }
    return out, 201 if result.applied else 200


@bp.get("/stock/movements", responses={200: MovementPage, **ERRORS})
@roles("ops", "staff")
def movement_history(query: MovementQuery) -> ApiResult:
    """Ledger history, newest first, keyset-paged; staff see their own locations."""
    limit = page_limit(query.limit)
    with read_only(session_factory()) as session:
        if query.location is not None:
            check_location_scope(catalog.get_location(session, query.location).id, query.location)
        items, nxt = stock.history(
            session,
            sku=query.sku,
            location=query.location,
            kind=query.kind,
            allowed_locations=principal().scope(),
            before_id=cursor_id(query.cursor),
            limit=limit,
        )
    return {"items": items, "next_cursor": encode_cursor(nxt) if nxt is not None else None}


@bp.get("/stock/levels", responses={200: LevelPage, **ERRORS})
@roles("ops", "staff")
def list_levels(query: LevelQuery) -> ApiResult:
    """Stock levels with available figures and shortages, keyset-paged."""
    limit = page_limit(query.limit)
    after = cursor_ids(query.cursor, 2)
    with read_only(session_factory()) as session:
        if query.location is not None:
            check_location_scope(catalog.get_location(session, query.location).id, query.location)
        items, nxt = stock.list_levels(
            session,
            sku=query.sku,
            location=query.location,
            short_only=query.short_only,
            allowed_locations=principal().scope(),
            after=(after[0], after[1]) if after else None,
            limit=limit,
        )
    return {"items": items, "next_cursor": encode_cursor(list(nxt)) if nxt else None}


@bp.put("/stock/levels/<sku>/<location>/safety-stock", responses={200: LevelOut, **ERRORS})
@roles("ops")
def set_safety_stock(path: LevelPath, body: SafetyStockIn) -> ApiResult:
    """Override the units of one SKU held back from online channels at one location."""
    return transaction(
        session_factory(),
        lambda s: stock.set_safety_stock(
            s, sku=path.sku, location=path.location, safety_stock=body.safety_stock
        ),
    )


@bp.get("/availability", responses={200: AvailabilityOut, **ERRORS})
@roles("storefront", "ops")
def availability(query: AvailabilityQuery) -> ApiResult:
    """Units sellable now per SKU, per location serving the channel and in total."""
    codes = query.sku_codes
    limit = int(current_app.config["MAX_AVAILABILITY_SKUS"])
    if len(codes) > limit:
        raise InvalidInput("too many SKUs", [{"field": "skus", "message": f"at most {limit}"}])
    with read_only(session_factory()) as session:
        items = stock.availability(
            session,
            sku_codes=codes,
            channel=query.channel,
            lat=query.lat,
            lon=query.lon,
            location=query.location,
        )
    return {"channel": query.channel, "items": items}
