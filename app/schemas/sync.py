"""Feeds, runs, discrepancies and quarantine: one feed schema for the YAML file and the ops API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from flask_openapi3 import RawModel
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from app.schemas.types import (
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
)
from app.schemas.webhooks import WebhookUrl

FeedCode = Annotated[
    str, Text(32, pattern=r"^[a-z0-9][a-z0-9_-]*$", message="use lower-case letters, digits, _ and -")
]
EnvVarName = Annotated[
    str, Text(128, pattern=r"^[A-Z_][A-Z0-9_]*$", message="name an environment variable (A-Z, 0-9, _)")
]
OutsideRef = Annotated[str, Text(200)]
MAX_MAPPED = 100_000

# Which roles each connector can take, and the secrets it needs.
ROLES = {
    "square": {"source"},
    "shopify": {"channel"},
    "woocommerce": {"source", "channel"},
    "csv": {"source"},
}
SECRETS = {"square": {"token"}, "shopify": {"token"}, "woocommerce": {"key", "secret"}, "csv": set()}


class FeedSettings(Strict):
    """How often a feed runs and how its differences are treated; every field has a safe default."""

    every_s: StrictInt = Field(
        300, ge=10, le=86_400, description="Seconds between reconcile cycles (sources)"
    )
    push_every_s: StrictInt = Field(
        60, ge=10, le=86_400, description="Seconds between order pull + available push (channels)"
    )
    settle_s: StrictInt = Field(120, ge=0, le=3600, description="A key must be quiet this long around a read")
    overlap_s: StrictInt = Field(
        600, ge=0, le=86_400, description="Change feed re-read window before the watermark"
    )
    auto_apply_limit: StrictInt = Field(
        5, ge=0, le=1_000_000, description="Largest |difference| applied without ops"
    )
    safety_buffer: StrictInt = Field(
        0, ge=0, le=1_000_000, description="Units held back per location when pushing"
    )
    connect_timeout_s: StrictFloat = Field(3.05, ge=0.1, le=60, description="Seconds to connect")
    read_timeout_s: StrictFloat = Field(30.0, ge=0.1, le=300, description="Seconds to wait for an answer")
    attempts: StrictInt = Field(4, ge=1, le=10, description="Tries per HTTP request")
    ineligible_alert_s: StrictInt = Field(
        21_600, ge=60, le=30 * 86_400, description="Report keys deferred this long"
    )
    push_back: StrictBool = Field(
        True, description="Push web orders fulfilled from this source's stock back to it"
    )
    order_intake: StrictBool = Field(True, description="Take the channel's orders in")


class FeedIn(Strict):
    """A feed as configured: connector, where it is, which secrets (by variable name) and mappings."""

    code: FeedCode
    name: Annotated[str, Text(200)]
    role: Literal["source", "channel"]
    connector: Literal["square", "shopify", "woocommerce", "csv"]
    base_url: WebhookUrl | None = Field(
        None, description="Vendor API root (a CSV feed: the file's URL, or none for uploads)"
    )
    channel: ChannelCode | None = Field(None, description="A channel feed's orders come in on this channel")
    credentials: dict[Annotated[str, Text(32)], EnvVarName] = Field(
        default_factory=dict, description="Secret name -> environment variable holding it"
    )
    options: dict[Annotated[str, Text(64)], Any] = Field(
        default_factory=dict, description="Connector options"
    )
    locations: dict[OutsideRef, LocationCode | None] = Field(
        min_length=1,
        description="Outside location ref -> location code (channels: null = the channel's whole stock)",
    )
    items: dict[OutsideRef, SkuCode] = Field(default_factory=dict, description="Outside item ref -> SKU code")
    match_items_by_sku: StrictBool = Field(
        False, description="Unmapped items match a SKU by the vendor's SKU text"
    )
    settings: FeedSettings = Field(default_factory=FeedSettings)  # type: ignore[arg-type]
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _consistent(self) -> FeedIn:
        faults: list[tuple[str, str, str, dict[str, Any]]] = []  # field, type, message, context
        if self.role not in ROLES[self.connector]:
            faults.append(
                (
                    "role",
                    "feed_role",
                    "{connector} cannot be a {role}",
                    {"connector": self.connector, "role": self.role},
                )
            )
        if self.role == "channel" and not self.channel:
            faults.append(
                ("channel", "feed_channel", "a channel feed names the channel its orders come in on", {})
            )
        missing = SECRETS[self.connector] - set(self.credentials)
        if missing:
            faults.append(("credentials", "feed_credentials", "credentials must name the variables for: {names}",
                           {"names": ", ".join(sorted(missing))}))  # fmt: skip
        if self.base_url is None and self.connector != "csv":
            faults.append(
                (
                    "base_url",
                    "feed_url",
                    "base_url is required for {connector}",
                    {"connector": self.connector},
                )
            )
        if sum(v is None for v in self.locations.values()) > 1:
            faults.append(
                (
                    "locations",
                    "feed_locations",
                    "at most one location may stand for the channel's whole stock",
                    {},
                )
            )
        if self.role == "source" and any(v is None for v in self.locations.values()):
            faults.append(
                ("locations", "feed_locations", "a source's locations each map to one location code", {})
            )
        if len(self.items) > MAX_MAPPED:
            faults.append(("items", "feed_items", "at most {n} mapped items", {"n": MAX_MAPPED}))
        if faults:
            raise ValidationError.from_exception_data(
                "FeedIn",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(kind, msg, ctx), loc=(name,), input=getattr(self, name)
                    )
                    for name, kind, msg, ctx in faults
                ],
            )
        return self


class FeedsFile(Strict):
    feeds: list[FeedIn] = Field(max_length=1000)


class FeedPath(PathModel):
    code: FeedCode


class RunOut(BaseModel):
    id: int
    feed: str
    kind: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    counts: dict[str, int]
    error: str | None


class RunDetailOut(RunOut):
    report: dict[str, Any]


class RunList(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class FeedOut(BaseModel):
    code: str
    name: str
    role: str
    connector: str
    base_url: str | None
    channel: str | None
    credentials: dict[str, str] = Field(description="Secret name -> environment variable (never the value)")
    credentials_present: dict[str, bool] = Field(description="Whether each variable is set in this process")
    options: dict[str, Any]
    locations: dict[str, str | None]
    items_mapped: int
    match_items_by_sku: bool
    settings: dict[str, Any]
    enabled: bool
    watermark: datetime | None
    status: str = Field(description="ok | failing | stale | running | never_run | disabled")
    last_run: RunOut | None
    last_good_run_at: datetime | None
    seconds_since_good_run: int | None
    open_discrepancies: int
    open_quarantine: int


class FeedList(BaseModel):
    items: list[FeedOut]


class RunPath(PathModel):
    run_id: Id64


class RunsQuery(Strict):
    feed: FeedCode | None = None
    status: Literal["running", "succeeded", "failed"] | None = None
    cursor: Cursor | None = None
    limit: PageSize = 50


class RunNowIn(Strict):
    kind: Literal["reconcile", "push"] | None = Field(None, description="Default: the feed role's cycle")


class DiscrepancyOut(BaseModel):
    id: int
    feed: str
    run_id: int
    sku: str
    location: str
    vendor_qty: int
    ledger_qty: int
    drift: int
    vendor_time: datetime
    status: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    applied_delta: int | None


class DiscrepancyList(BaseModel):
    items: list[DiscrepancyOut]
    next_cursor: str | None


class DiscrepanciesQuery(Strict):
    feed: FeedCode | None = None
    status: Literal["open", "accepted", "rejected", "superseded", "any"] = Field("open", description="any: every status")
    cursor: Cursor | None = None
    limit: PageSize = 100


class DiscrepancyPath(PathModel):
    discrepancy_id: Id64


class DecisionIn(Strict):
    note: Annotated[str, Text(500)] | None = None


class QuarantineOut(BaseModel):
    id: int
    feed: str
    kind: str
    item_ref: str
    location_ref: str
    reason: str
    raw: dict[str, Any]
    status: str
    seen_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    last_run_id: int | None
    resolved_at: datetime | None
    resolution: str | None


class QuarantineList(BaseModel):
    items: list[QuarantineOut]
    next_cursor: str | None


class QuarantineQuery(Strict):
    feed: FeedCode | None = None
    status: Literal["open", "resolved", "any"] = Field("open", description="any: every status")
    cursor: Cursor | None = None
    limit: PageSize = 100


class QuarantinePath(PathModel):
    quarantine_id: Id64


class ResolveIn(Strict):
    """Map the outside reference (then the next run picks the row up), or dismiss it with a note."""

    sku: SkuCode | None = Field(None, description="Map the item reference to this SKU")
    location: LocationCode | None = Field(None, description="Map the location reference to this location")
    dismiss: StrictBool = False
    note: Annotated[str, Text(500)] | None = None

    @model_validator(mode="after")
    def _one(self) -> ResolveIn:
        if not (self.sku or self.location or self.dismiss):
            raise PydanticCustomError("resolve", "give sku, location or dismiss")
        return self


class InboundOrderOut(BaseModel):
    feed: str
    external_id: str
    status: str
    order_id: int | None
    reason: str | None
    received_at: datetime
    attempts: int


class InboundOrderList(BaseModel):
    items: list[InboundOrderOut]
    next_cursor: str | None


class InboundOrdersQuery(Strict):
    feed: FeedCode | None = None
    status: Literal["placed", "refused"] | None = None
    cursor: Cursor | None = None
    limit: PageSize = 100


class CsvUpload(RawModel):
    """An uploaded stock file: the bytes as the POS exported them."""

    mimetypes: list[str] = ["text/csv"]


class UploadQuery(Strict):
    as_of: QueryInstant | None = Field(
        None,
        description="When the export was taken (with its UTC offset); without it, the upload counts as read now",
    )
