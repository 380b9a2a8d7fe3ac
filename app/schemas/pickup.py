"""Click-and-collect at the counter: a store's queue, one pickup, and the counter's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

from app.schemas.types import MAX_ORDER_LINES, Id64, PageSize, PathModel, SkuCode, Strict, Text

MAX_BINS = 1000  # a store's range, a batch at a time
Tab = Literal["to_pick", "ready", "overdue", "collected_today"]


class PickupLineOut(BaseModel):
    sku: str
    name: str
    bin: str | None = Field(description="Where the SKU is kept in the store, when known")
    qty: int
    reserved: int = Field(description="Held in the store for this pickup")
    awaiting: int = Field(description="Still coming by transfer")
    done: int = Field(description="Handed over")
    cancelled: int


class PickupOut(BaseModel):
    id: int = Field(description="The pickup fulfilment's id")
    order_id: int
    location: str
    status: str
    tab: Tab | None = Field(description="The counter tab it sits in; null once it left the counter")
    customer_ref: str | None
    customer_name: str | None
    at_risk: bool
    promised_at: datetime | None = Field(description="Promised ready time")
    ready_at: datetime | None
    hold_until: datetime | None = Field(description="Held for the customer until then, then it expires")
    collected_at: datetime | None
    locked_until: datetime | None = Field(description="Hand-over refused until then after too many wrong codes")
    tries_left: int = Field(description="Wrong codes left before the lock")
    created_at: datetime
    lines: list[PickupLineOut]


class QueueCounts(BaseModel):
    to_pick: int
    ready: int
    overdue: int
    collected_today: int


class QueueOut(BaseModel):
    location: str
    tab: Tab
    counts: QueueCounts
    items: list[PickupOut]
    total: int = Field(description="Pickups in this tab (items holds at most `limit` of them)")


class QueueQuery(Strict):
    tab: Tab = "to_pick"
    limit: PageSize | None = None


class PickupPath(PathModel):
    id: Id64


class LookupQuery(Strict):
    scan: Annotated[str, Text(64)] = Field(description="An order number, #number, or a scanned pickup barcode")


class ReadyOut(BaseModel):
    pickup: PickupOut
    code: str = Field(description="The pickup code for the customer; it is stored only hashed and not shown again")
    barcode: str = Field(description="What the customer's scannable code holds (it proves the code)")


class CollectLineIn(Strict):
    sku: SkuCode
    qty: StrictInt = Field(ge=0, le=10_000)


class CollectIn(Strict):
    code: Annotated[str, Text(64)] = Field(description="The customer's pickup code, or their scanned pickup barcode")
    lines: list[CollectLineIn] | None = Field(
        None, min_length=1, max_length=MAX_ORDER_LINES,
        description="A partial pickup: what the customer takes; lines left out stay behind and go back to stock",
    )


class NotFoundIn(Strict):
    sku: SkuCode
    qty: StrictInt = Field(1, ge=1, le=10_000)
    reason: Literal["not_found", "damaged"] = "not_found"
    note: Annotated[str, Text(500)] | None = None


class NotFoundOut(BaseModel):
    pickup: PickupOut
    rerouted_to: str | None = Field(description="The location now sending the units, when re-routed")
    cancelled: int = Field(description="Units cancelled when they could not be re-routed")


class BinIn(Strict):
    sku: SkuCode
    bin: Annotated[str, Text(64)] | None = Field(description="A bin or shelf, e.g. A-03; null forgets it")


class BinsIn(Strict):
    bins: list[BinIn] = Field(min_length=1, max_length=MAX_BINS)


class BinsOut(BaseModel):
    location: str
    updated: int
