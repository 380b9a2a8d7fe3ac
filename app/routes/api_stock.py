"""Stock API: movement batches, levels, availability and ledger history."""

from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction
from app.domain.errors import InvalidInput
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
    SafetyStockIn,
)
from app.services import orders, stock, stock_reads
from app.web import session_factory
from app.web.auth import principal, roles
from app.web.openapi import API_PREFIX, SECURITY
from app.web.pagination import cursor_id, cursor_ids, encode_cursor, page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond, respond_page

bp = APIBlueprint(
    "api_stock", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="stock")], abp_security=SECURITY
)


@bp.post("/stock/movements", responses={201: MovementBatchOut, 200: MovementBatchOut, **WRITE_PROBLEMS})
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
    return respond(MovementBatchOut, result, 201 if result.applied else 200)


@bp.get("/stock/movements", responses={200: MovementPage, **READ_PROBLEMS})
@roles("ops", "staff")
def movement_history(query: MovementQuery) -> ApiResult:
    """Ledger history, newest first, keyset-paged; staff see their own locations."""
    with read_only(session_factory()) as session:
        items, nxt = stock_reads.history(
            session, sku=query.sku, location=query.location, kind=query.kind, scope=principal().scope(),
            before_id=cursor_id(query.cursor), limit=page_limit(query.limit),
        )  # fmt: skip
    return respond_page(MovementPage, items, encode_cursor(nxt) if nxt is not None else None)


@bp.get("/stock/levels", responses={200: LevelPage, **READ_PROBLEMS})
@roles("ops", "staff")
def list_levels(query: LevelQuery) -> ApiResult:
    """Stock levels with available figures and shortages, keyset-paged; staff see their own locations."""
    after = cursor_ids(query.cursor, 2)
    with read_only(session_factory()) as session:
        items, nxt = stock_reads.list_levels(
            session, sku=query.sku, location=query.location, short_only=query.short_only,
            scope=principal().scope(), after=(after[0], after[1]) if after else None, limit=page_limit(query.limit),
        )  # fmt: skip
    return respond_page(LevelPage, items, encode_cursor(list(nxt)) if nxt else None)


@bp.put("/stock/levels/<sku>/<location>/safety-stock", responses={200: LevelOut, **WRITE_PROBLEMS})
@roles("ops")
def set_safety_stock(path: LevelPath, body: SafetyStockIn) -> ApiResult:
    """Override the units of one SKU held back from online channels at one location."""
    level = transaction(
        session_factory(),
        lambda s: stock.set_safety_stock(
            s, sku=path.sku, location=path.location, safety_stock=body.safety_stock
        ),
    )
    return respond(LevelOut, level)


@bp.get("/availability", responses={200: AvailabilityOut, **READ_PROBLEMS})
@roles("storefront", "ops")
def availability(query: AvailabilityQuery) -> ApiResult:
    """Units sellable now per SKU, per location serving the channel and in total."""
    codes = query.sku_codes
    limit = int(current_app.config["MAX_AVAILABILITY_SKUS"])
    if len(codes) > limit:
        raise InvalidInput("too many SKUs", [{"field": "skus", "message": f"at most {limit}"}])
    with read_only(session_factory()) as session:
        found = stock_reads.availability(
            session,
            sku_codes=codes,
            channel=query.channel,
            lat=query.lat,
            lon=query.lon,
            location=query.location,
        )
    return respond(AvailabilityOut, found)
