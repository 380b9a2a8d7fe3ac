"""Request and response schemas: the same models validate requests and generate /api/openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from app.domain.ledger import ADJUSTMENT_REASONS

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
# JSON bodies take numbers and booleans as JSON numbers and booleans: "2" or true for a quantity
# is a client bug to name, not to guess at. Query strings stay lax (they are text by nature).
# Ids are 64-bit in the database: a larger number is a 422 here, not an overflow there.
MAX_ID = 2**63 - 1
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]
BodyLatitude = Annotated[StrictFloat, Field(ge=-90, le=90)]
BodyLongitude = Annotated[StrictFloat, Field(ge=-180, le=180)]


class Strict(BaseModel):
    # Unknown fields are refused so a misspelt field never silently does nothing.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---------------------------------------------------------------- problems
class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code`."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


# ---------------------------------------------------------------- locations
class LocationFields(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    kind: Literal["store", "warehouse"] | None = None
    lat: BodyLatitude | None = None
    lon: BodyLongitude | None = None
    postcode: str | None = Field(None, max_length=16)
    timezone: str | None = Field(None, max_length=64)
    active: StrictBool | None = None
    ships: StrictBool | None = None
    pickup: StrictBool | None = None
    priority: StrictInt | None = Field(None, ge=0, le=1_000_000)
    daily_capacity: StrictInt | None = Field(None, ge=0, description="Shipments per day; null = unlimited")
    pick_minutes: StrictInt | None = Field(None, ge=0, le=7 * 24 * 60)
    pickup_hold_hours: StrictInt | None = Field(None, ge=1, le=24 * 60)
    default_safety_stock: StrictInt | None = Field(None, ge=0)
    channels: list[Code] | None = Field(None, description="Channels this location serves")

    @model_validator(mode="after")
    def _coordinates_together(self) -> LocationFields:
        if len({"lat", "lon"} & self.model_fields_set) == 1:
            raise ValueError("lat and lon are given together")
        return self


class LocationCreate(LocationFields):
    code: Code
    name: str = Field(min_length=1, max_length=200)  # type: ignore[assignment]
    kind: Literal["store", "warehouse"]  # type: ignore[assignment]


class LocationUpdate(LocationFields):
    pass


class LocationBulk(Strict):
    locations: list[LocationCreate] = Field(min_length=1, max_length=1000)


class LocationOut(BaseModel):
    code: str
    name: str
    kind: str
    lat: float | None
    lon: float | None
    postcode: str | None
    timezone: str
    active: bool
    ships: bool
    pickup: bool
    priority: int
    daily_capacity: int | None
    pick_minutes: int
    pickup_hold_hours: int
    default_safety_stock: int
    channels: list[str]


class LocationList(BaseModel):
    items: list[LocationOut]


class LocationPath(BaseModel):
    code: str


# ---------------------------------------------------------------- skus
class SkuIn(Strict):
    code: Code
    name: str = Field(min_length=1, max_length=300)
    barcode: str | None = Field(None, min_length=1, max_length=64)
    active: StrictBool = True


class SkuBulk(Strict):
    skus: list[SkuIn] = Field(min_length=1, max_length=5000)

    @field_validator("skus")
    @classmethod
    def _distinct(cls, skus: list[SkuIn]) -> list[SkuIn]:
        seen: set[str] = set()
        for s in skus:
            if s.code in seen:
                raise ValueError(f"SKU {s.code} appears twice")
            seen.add(s.code)
        return skus


class SkuUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=300)
    barcode: str | None = Field(None, min_length=1, max_length=64)
    active: StrictBool | None = None


class SkuOut(BaseModel):
    code: str
    name: str
    barcode: str | None
    active: bool


class SkuUpsertResult(BaseModel):
    created: int
    updated: int
    items: list[SkuOut]


class SkuPath(BaseModel):
    code: str


class SkuListQuery(Strict):
    cursor: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)


class SkuList(BaseModel):
    items: list[SkuOut]
    next_cursor: str | None


# ---------------------------------------------------------------- channels
class ChannelIn(Strict):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["online", "store"] = "online"
    locations: list[Code] = Field(default_factory=list)


class ChannelOut(BaseModel):
    code: str
    name: str
    kind: str
    locations: list[str]


class ChannelList(BaseModel):
    items: list[ChannelOut]


# ---------------------------------------------------------------- movements
MovementKindIn = Literal["receipt", "sale", "adjustment", "count", "return", "transfer", "transfer_in"]


class MovementIn(Strict):
    kind: MovementKindIn = Field(
        description=(
            "receipt/sale/return/transfer/transfer_in take qty >= 1; adjustment takes a signed "
            "qty != 0 and a reason; count sets on_hand to qty (>= 0)"
        )
    )
    sku: Code
    location: Code
    qty: StrictInt = Field(ge=-1_000_000, le=1_000_000)
    to_location: Code | None = Field(None, description="transfer: the receiving location")
    source: str = Field("api", min_length=1, max_length=64)
    external_ref: str | None = Field(
        None, min_length=1, max_length=200, description="Unique per source: replays count once"
    )
    reason: str | None = Field(None, max_length=64)
    resellable: StrictBool = True
    occurred_at: datetime | None = None
    note: str | None = Field(None, max_length=500)

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
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at: give a time zone (e.g. 2026-01-31T10:00:00Z)")
        return self


class MovementBatch(Strict):
    movements: list[MovementIn] = Field(min_length=1)


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
    sku: str | None = None
    location: str | None = None
    kind: str | None = None
    cursor: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)


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
    sku: str | None = None
    location: str | None = None
    short_only: bool = False
    cursor: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)


class LevelPage(BaseModel):
    items: list[LevelOut]
    next_cursor: str | None


class SafetyStockIn(Strict):
    safety_stock: StrictInt | None = Field(ge=0, description="null = the location's default")


class LevelPath(BaseModel):
    sku: str
    location: str


# ---------------------------------------------------------------- availability
class AvailabilityQuery(Strict):
    skus: str = Field(description="Comma-separated SKU codes", max_length=20_000)
    channel: str = "web"
    lat: Latitude | None = None
    lon: Longitude | None = None
    location: str | None = Field(None, description="Only this location")

    @field_validator("skus")
    @classmethod
    def _split(cls, value: str) -> str:
        codes = [c.strip() for c in value.split(",") if c.strip()]
        if not codes:
            raise ValueError("give at least one SKU code")
        return ",".join(dict.fromkeys(codes))

    @model_validator(mode="after")
    def _coords(self) -> AvailabilityQuery:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon are given together")
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


# ---------------------------------------------------------------- health
class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------- orders
class OrderLineIn(Strict):
    sku: Code
    qty: StrictInt = Field(ge=1, le=10_000)


class ShipDelivery(Strict):
    type: Literal["ship"]
    lat: BodyLatitude | None = None
    lon: BodyLongitude | None = None
    postcode: str | None = Field(None, min_length=2, max_length=16)

    @model_validator(mode="after")
    def _placeable(self) -> ShipDelivery:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat: lat and lon are given together")
        if self.lat is None and not self.postcode:
            raise ValueError("postcode: give coordinates or a postcode")
        return self


class PickupDelivery(Strict):
    type: Literal["pickup"]
    location: Code


class OrderIn(Strict):
    external_id: str | None = Field(
        None, min_length=1, max_length=100, description="The storefront's own order id"
    )
    channel: Code = "web"
    customer_ref: str | None = Field(None, min_length=1, max_length=200)
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    delivery: ShipDelivery | PickupDelivery = Field(discriminator="type")
    allow_split: StrictBool = True
    allow_partial: StrictBool = False


class LineQty(BaseModel):
    sku: str
    qty: int


class RoutingNote(BaseModel):
    location: str
    outcome: str
    reason: str
    distance_km: float | None


class RoutingAllocation(BaseModel):
    location: str
    type: str
    to_location: str | None
    lines: list[LineQty]
    collect_lines: list[LineQty]


class Alternative(BaseModel):
    location: str
    distance_km: float | None


class RoutingOut(BaseModel):
    status: str
    reason: str | None
    explanation: list[RoutingNote]
    allocations: list[RoutingAllocation]
    backordered: list[LineQty]
    alternatives: list[Alternative]


class FulfilmentLineOut(BaseModel):
    sku: str
    qty: int
    reserved: int
    awaiting: int
    done: int
    cancelled: int


class FulfilmentOut(BaseModel):
    id: int
    order_id: int
    location: str
    type: Literal["ship", "pickup", "transfer"]
    status: str
    to_location: str | None
    at_risk: bool
    ready_at: datetime | None = Field(description="When the pickup was marked ready")
    hold_until: datetime | None = Field(description="A ready pickup is held until then")
    lines: list[FulfilmentLineOut]


class OrderLineOut(BaseModel):
    sku: str
    qty: int
    backordered: int
    cancelled: int
    returned: int


class ShipToOut(BaseModel):
    type: Literal["ship"]
    lat: float | None
    lon: float | None
    postcode: str | None


class PickupAtOut(BaseModel):
    type: Literal["pickup"]
    location: str | None


class OrderOut(BaseModel):
    id: int
    external_id: str | None
    status: str
    channel: str | None
    customer_ref: str | None
    delivery: ShipToOut | PickupAtOut = Field(discriminator="type")
    lines: list[OrderLineOut]
    fulfilments: list[FulfilmentOut]
    routing: RoutingOut
    created_at: datetime
    updated_at: datetime


class OrderPath(BaseModel):
    id: DbId


class CustomerOrderQuery(Strict):
    status: Literal["allocated", "partially_allocated", "backordered", "completed", "cancelled"] | None = None
    location: str | None = Field(None, description="Orders with a fulfilment at this location")
    channel: str | None = None
    created_from: AwareDatetime | None = Field(None, description="Created at or after (with a time zone)")
    created_to: AwareDatetime | None = Field(None, description="Created before (exclusive, with a time zone)")
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    limit: int | None = Field(None, ge=1, le=1000)


class OrderQuery(CustomerOrderQuery):
    customer_ref: str | None = None


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class CustomerPath(BaseModel):
    customer_ref: str


class CancelIn(Strict):
    lines: list[OrderLineIn] | None = Field(
        None, min_length=1, max_length=200, description="Omit to cancel everything still open"
    )


class ReturnLineIn(Strict):
    sku: Code
    qty: StrictInt = Field(ge=1, le=10_000)
    resellable: StrictBool = True


class ReturnIn(Strict):
    location: Code
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=200)
    external_ref: str | None = Field(None, min_length=1, max_length=150)


class FulfilmentPath(BaseModel):
    id: DbId


# ---------------------------------------------------------------- webhooks
def _endpoint(url: str | None) -> str | None:
    # A URL the job can post to: http(s) with a host (the pattern alone let "http://" through).
    if url is not None and not urlsplit(url).hostname:
        raise ValueError("give an http(s) URL with a host")
    return url


class WebhookIn(Strict):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    _url = field_validator("url")(_endpoint)
    secret: str = Field(min_length=16, max_length=200)
    event_types: list[str] = Field(min_length=1, description="Event types, or ['*'] for all")


class WebhookUpdate(Strict):
    url: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    _url = field_validator("url")(_endpoint)
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="A new signing secret (rotation); never returned"
    )
    event_types: list[str] | None = Field(None, min_length=1)
    active: StrictBool | None = None


class WebhookOut(BaseModel):
    id: int
    url: str
    event_types: list[str]
    active: bool
    consecutive_failures: int
    disabled_reason: str | None


class WebhookList(BaseModel):
    items: list[WebhookOut]


class WebhookPath(BaseModel):
    id: DbId


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null once delivered or failed"
    )
    delivered_at: datetime | None
    last_error: str | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class EventOut(BaseModel):
    id: int
    type: str
    order_id: int | None
    fulfilment_id: int | None
    payload: dict[str, Any]
    created_at: datetime


class EventQuery(Strict):
    cursor: str | None = Field(None, description="next_cursor of the previous page: where to go on from")
    after: int | None = Field(None, ge=0, le=MAX_ID, description="Start after this event id (when no cursor)")
    type: str | None = None
    limit: int | None = Field(None, ge=1, le=1000)


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(
        description="Give it back as cursor to get what follows (also when this page is empty)"
    )
