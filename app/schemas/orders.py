"""Orders: placing and quoting, reading and listing, cancelling and returns; fulfilments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from app.schemas.types import (
    MAX_ORDER_LINES,
    BodyLatitude,
    BodyLongitude,
    ChannelCode,
    Cursor,
    Id64,
    LocationCode,
    PageSize,
    PathModel,
    QueryInstant,
    SkuCode,
    Strict,
    Text,
    coordinates_together,
)

# A customer's reference is also a path segment (/customers/{customer_ref}/orders): no '/', no
# control characters, and not '.' or '..' (clients resolve those away before sending).
CUSTOMER_REF_PATTERN = r"^[^/\u0000-\u001f\u007f-\u009f]+$"


def _path_safe(value: str) -> str:
    if value in {".", ".."}:
        raise PydanticCustomError("customer_ref", "'.' and '..' cannot be carried in a path")
    return value


CustomerRef = Annotated[
    str,
    Text(200, pattern=CUSTOMER_REF_PATTERN, message="no '/' or control characters (it is a path segment too)"),
    AfterValidator(_path_safe),
    Field(description="The customer's id in the storefront: no '/' or control characters"),
]


class OrderLineIn(Strict):
    sku: SkuCode
    qty: StrictInt = Field(ge=1, le=10_000)


class ShipDelivery(Strict):
    type: Literal["ship"]
    lat: BodyLatitude | None = None
    lon: BodyLongitude | None = None
    postcode: Annotated[str, Text(16, min_length=2)] | None = None

    @model_validator(mode="after")
    def _placeable(self) -> ShipDelivery:
        coordinates_together(self.lat is not None, self.lon is not None)
        if self.lat is None and not self.postcode:
            raise ValueError("postcode: give coordinates or a postcode")
        return self


class PickupDelivery(Strict):
    type: Literal["pickup"]
    location: LocationCode


class OrderIn(Strict):
    external_id: Annotated[str, Text(100)] | None = Field(None, description="The storefront's own order id")
    channel: ChannelCode = "web"
    customer_ref: CustomerRef | None = None
    customer_name: Annotated[str, Text(200)] | None = Field(None, description="Who collects a pickup (shown at the counter)")
    lines: list[OrderLineIn] = Field(min_length=1, max_length=MAX_ORDER_LINES)
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
    ready_by: datetime | None = Field(
        None, description="A pickup's promised ready time: pick time within opening hours, after any transfer arrives"
    )


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
    promised_at: datetime | None = Field(None, description="A pickup's promised ready time (kept up to date)")
    collected_at: datetime | None = Field(None, description="When the customer collected the pickup")
    locked_until: datetime | None = Field(None, description="Handover refused until then after wrong codes")


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
    customer_name: str | None = None


class OrderPath(PathModel):
    id: Id64


OrderStatus = Literal["allocated", "partially_allocated", "backordered", "completed", "cancelled"]


class CustomerOrderQuery(Strict):
    status: OrderStatus | None = None
    location: LocationCode | None = Field(None, description="Orders with a fulfilment at this location")
    channel: ChannelCode | None = None
    created_from: QueryInstant | None = Field(None, description="Created at or after (with a time zone)")
    created_to: QueryInstant | None = Field(None, description="Created before (exclusive, with a time zone)")
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page")
    limit: PageSize | None = None


class OrderQuery(CustomerOrderQuery):
    customer_ref: CustomerRef | None = None


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class CustomerPath(PathModel):
    customer_ref: CustomerRef


class CancelIn(Strict):
    lines: list[OrderLineIn] | None = Field(
        None, min_length=1, max_length=MAX_ORDER_LINES, description="Omit to cancel everything still open"
    )


class ReturnLineIn(Strict):
    sku: SkuCode
    qty: StrictInt = Field(ge=1, le=10_000)
    resellable: StrictBool = True


class ReturnIn(Strict):
    location: LocationCode
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=MAX_ORDER_LINES)
    # Movement.external_ref is String(200); each line's movement takes this plus ":<line index>".
    external_ref: Annotated[str, Text(150)] | None = None


class FulfilmentPath(PathModel):
    id: Id64
