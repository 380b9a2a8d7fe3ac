"""Stock: movement batches and ledger history, stock levels and availability."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.domain.ledger import ADJUSTMENT_REASONS
from app.schemas.types import (
    CODE_PATTERN,
    MAX_AVAILABILITY_SKUS,
    MAX_BATCH_MOVEMENTS,
    ChannelCode,
    Code,
    Count,
    Cursor,
    EventTime,
    Latitude,
    LocationCode,
    Longitude,
    PageSize,
    PathModel,
    SkuCode,
    Strict,
    Text,
    coordinates_together,
)

# ---------------------------------------------------------------- movements
MovementKindIn = Literal["receipt", "sale", "adjustment", "count", "return", "transfer", "transfer_in"]


class MovementIn(Strict):
    kind: MovementKindIn = Field(
        description=(
            "receipt/sale/return/transfer/transfer_in take qty >= 1; adjustment takes a signed "
            "qty != 0 and a reason; count sets on_hand to qty (>= 0)"
        )
    )
    sku: SkuCode
    location: LocationCode
    qty: StrictInt = Field(ge=-1_000_000, le=1_000_000)
    to_location: LocationCode | None = Field(None, description="transfer: the receiving location")
    source: Annotated[str, Text(64)] = "api"
    external_ref: Annotated[str, Text(200)] | None = Field(
        None, description="Unique per source: replays count once"
    )
    reason: Annotated[str, Text(64)] | None = None
    resellable: StrictBool = True
    occurred_at: EventTime | None = None
    note: Annotated[str, Text(500)] | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> MovementIn:
        if self.kind == "adjustment":
            if self.qty == 0:
                raise ValueError("qty: an adjustment moves at least one unit (signed, not 0)")
            if self.reason not in ADJUSTMENT_REASONS:
                raise ValueError(
                    f"reason: an adjustment needs one of {', '.join(sorted(ADJUSTMENT_REASONS))}"
                )
        elif self.kind == "count":
            if self.qty < 0:
                raise ValueError("qty: a count is the units found, >= 0")
        elif self.qty < 1:
            raise ValueError(f"qty: a {self.kind} moves at least one unit")
        if self.kind == "transfer":
            if not self.to_location:
                raise ValueError("to_location: a transfer needs the receiving location")
            if self.to_location == self.location:
                raise ValueError("to_location: a transfer goes to another location")
        elif self.to_location is not None:
            raise ValueError(f"to_location: only a transfer has one, not a {self.kind}")
        return self


class MovementBatch(Strict):
    movements: list[MovementIn] = Field(min_length=1, max_length=MAX_BATCH_MOVEMENTS)


class MovementResult(BaseModel):
    index: int
    status: Literal["applied", "duplicate"]
    movement_ids: list[int]


class ShortageOut(BaseModel):
    fulfilment_id: int
    order_id: int
    sku_id: int
    sku: str
    location: str
    qty: int
    rerouted_to: str | None


class MovementBatchOut(BaseModel):
    applied: int
    duplicates: int
    results: list[MovementResult]
    shortages: list[ShortageOut] = Field(
        default_factory=list,
        description="Open fulfilments this batch left short: re-routed or flagged at risk",
    )


class MovementOut(BaseModel):
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


class MovementQuery(Strict):
    sku: SkuCode | None = None
    location: LocationCode | None = None
    kind: Annotated[str, Code(32)] | None = None  # Movement.kind is String(32)
    cursor: Cursor | None = None
    limit: PageSize | None = None


class MovementPage(BaseModel):
    items: list[MovementOut]
    next_cursor: str | None


# ---------------------------------------------------------------- stock levels
class LevelOut(BaseModel):
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


class LevelQuery(Strict):
    sku: SkuCode | None = None
    location: LocationCode | None = None
    short_only: bool = False
    cursor: Cursor | None = None
    limit: PageSize | None = None


class LevelPage(BaseModel):
    items: list[LevelOut]
    next_cursor: str | None


class SafetyStockIn(Strict):
    safety_stock: Count | None = Field(description="null = the location's default")


class LevelPath(PathModel):
    sku: SkuCode
    location: LocationCode


# ---------------------------------------------------------------- availability
# A comma list of SKU codes (Sku.code is String(64)), at most MAX_AVAILABILITY_SKUS of them.
_SKU_CODE_LENGTH = 64
_CODE = re.compile(CODE_PATTERN)
_SKU_LIST_MAX_LENGTH = MAX_AVAILABILITY_SKUS * (_SKU_CODE_LENGTH + 1) - 1


def _sku_codes(value: str) -> str:
    codes = list(dict.fromkeys(c.strip() for c in value.split(",") if c.strip()))
    if not codes:
        raise PydanticCustomError("sku_list", "give at least one SKU code")
    if len(codes) > MAX_AVAILABILITY_SKUS:
        raise PydanticCustomError("sku_list", f"at most {MAX_AVAILABILITY_SKUS} SKU codes")
    for code in codes:
        if len(code) > _SKU_CODE_LENGTH or _CODE.fullmatch(code) is None:
            raise PydanticCustomError("sku_list", "'{code}' is not a SKU code", {"code": code[:80]})
    return ",".join(codes)


class AvailabilityQuery(Strict):
    skus: Annotated[str, Text(_SKU_LIST_MAX_LENGTH)] = Field(
        description=f"Comma-separated SKU codes, at most {MAX_AVAILABILITY_SKUS}"
    )
    channel: ChannelCode = "web"
    lat: Latitude | None = None
    lon: Longitude | None = None
    location: LocationCode | None = Field(None, description="Only this location")

    _split = field_validator("skus")(_sku_codes)

    @model_validator(mode="after")
    def _coords(self) -> AvailabilityQuery:
        coordinates_together(self.lat is not None, self.lon is not None)
        return self

    @property
    def sku_codes(self) -> list[str]:
        return self.skus.split(",")


class LocationAvailability(BaseModel):
    location: str
    available: int
    on_hand: int
    reserved: int
    incoming: int
    distance_km: float | None


class SkuAvailability(BaseModel):
    sku: str
    total_available: int
    locations: list[LocationAvailability]


class AvailabilityOut(BaseModel):
    channel: str
    items: list[SkuAvailability]
