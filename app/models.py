"""Persistence schema. Business rules live in app/domain; these are the tables that hold them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import ColumnElement

from app.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Location(Base):
    """A store or warehouse that holds stock and may ship, offer pickup, or both."""

    __tablename__ = "locations"
    __table_args__ = (
        CheckConstraint("kind IN ('store', 'warehouse')", name="kind_known"),
        CheckConstraint("lat IS NULL OR (lat >= -90 AND lat <= 90)", name="lat_range"),
        CheckConstraint("lon IS NULL OR (lon >= -180 AND lon <= 180)", name="lon_range"),
        CheckConstraint("default_safety_stock >= 0", name="safety_stock_non_negative"),
        CheckConstraint("daily_capacity IS NULL OR daily_capacity >= 0", name="capacity_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    postcode: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    ships: Mapped[bool] = mapped_column(Boolean, server_default=true())
    pickup: Mapped[bool] = mapped_column(Boolean, server_default=false())
    priority: Mapped[int] = mapped_column(Integer, server_default="100")
    daily_capacity: Mapped[int | None] = mapped_column(Integer)
    pick_minutes: Mapped[int] = mapped_column(Integer, server_default="60")
    pickup_hold_hours: Mapped[int] = mapped_column(Integer, server_default="72")
    # Click-and-collect: the reminder goes this many hours before a ready pickup's deadline;
    # opening hours ({"mon": [["09:00", "17:30"]], ...} in the store's zone; null = always open)
    # bound when picking can finish; transfers into the store take transfer_hours on the road.
    pickup_reminder_hours: Mapped[int] = mapped_column(Integer, server_default="24")
    opening_hours: Mapped[dict[str, list[list[str]]] | None] = mapped_column(JSON)
    transfer_hours: Mapped[int] = mapped_column(Integer, server_default="24")
    not_found_policy: Mapped[str] = mapped_column(String(16), server_default="reroute")
    default_safety_stock: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Sku(Base):
    """A sellable item, referred to by its code everywhere outside the database."""

    __tablename__ = "skus"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    barcode: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Channel(Base):
    """A sales channel; online channels hold safety stock back, a store's till does not."""

    __tablename__ = "channels"
    __table_args__ = (CheckConstraint("kind IN ('online', 'store')", name="kind_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), server_default="online")
    locations: Mapped[list[Location]] = relationship(secondary="channel_locations", order_by="Location.code")


class ChannelLocation(Base):
    """Which locations serve (sell into) which channel."""

    __tablename__ = "channel_locations"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)


class StockLevel(Base):
    """Projection of the ledger per (SKU, location), written in the movement's transaction."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        # True invariants only: on_hand may go negative and below reserved when an outside
        # fact (a till sale) says so; the service records it and flags the shortage.
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("incoming >= 0", name="incoming_non_negative"),
        CheckConstraint("safety_stock IS NULL OR safety_stock >= 0", name="safety_non_negative"),
        Index("ix_stock_levels_location_sku", "location_id", "sku_id"),
    )

    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, server_default="0")
    reserved: Mapped[int] = mapped_column(Integer, server_default="0")
    incoming: Mapped[int] = mapped_column(Integer, server_default="0")
    # None: the location's default safety stock applies.
    safety_stock: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Movement(Base):
    """One append-only ledger row; never updated or deleted."""

    __tablename__ = "movements"
    __table_args__ = (
        # Replaying a feed, webhook or API call never counts twice. `leg` numbers the rows
        # one outside fact produces (a transfer leaves here and is expected there).
        UniqueConstraint("source", "external_ref", "leg"),
        Index("ix_movements_sku_location_id", "sku_id", "location_id", "id"),
        Index("ix_movements_location_id", "location_id", "id"),
        Index("ix_movements_order_id", "order_id"),
        Index("ix_movements_source_vendor_at", "source", "vendor_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    # The quantity as the caller gave it (a count's units found, a sale's units sold).
    qty: Mapped[int] = mapped_column(Integer)
    on_hand_delta: Mapped[int] = mapped_column(Integer, server_default="0")
    reserved_delta: Mapped[int] = mapped_column(Integer, server_default="0")
    incoming_delta: Mapped[int] = mapped_column(Integer, server_default="0")
    reason: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    external_ref: Mapped[str | None] = mapped_column(String(200))
    leg: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(BigId)
    fulfilment_id: Mapped[int | None] = mapped_column(BigId)
    sync_run_id: Mapped[int | None] = mapped_column(BigId)
    api_key_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(String(500))
    # The vendor's clock for a fact a feed told us (or a reconcile's snapshot time): what the
    # watermark rule compares, never our own clock.
    vendor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """An API key: only a SHA-256 of its secret is kept; staff keys are scoped to locations."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('storefront', 'staff', 'ops')", name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locations: Mapped[list[Location]] = relationship(secondary="api_key_locations", order_by="Location.code")


class ApiKeyLocation(Base):
    """The locations a staff key may act on."""

    __tablename__ = "api_key_locations"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)


class Postcode(Base):
    """Where a postcode (full or outward part) lies, so a delivery can be placed without coordinates."""

    __tablename__ = "postcodes"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)


class Order(Base):
    """A customer order from one channel; idempotent by key and by the storefront's own id."""

    __tablename__ = "orders"
    __table_args__ = (
        # Keys and the storefront's own ids are unique per channel: storefronts pick them alone.
        UniqueConstraint("channel_id", "idempotency_key"),
        UniqueConstraint("channel_id", "external_id"),
        CheckConstraint("delivery_type IN ('ship', 'pickup')", name="delivery_type_known"),
        Index("ix_orders_customer_ref_id", "customer_ref", "id"),
        Index("ix_orders_status_id", "status", "id"),
        Index("ix_orders_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    # Who collects a pickup: shown at the counter (the reference is for systems, the name for people).
    customer_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24))
    delivery_type: Mapped[str] = mapped_column(String(16))
    ship_lat: Mapped[float | None] = mapped_column(Float)
    ship_lon: Mapped[float | None] = mapped_column(Float)
    ship_postcode: Mapped[str | None] = mapped_column(String(16))
    pickup_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    allow_split: Mapped[bool] = mapped_column(Boolean)
    allow_partial: Mapped[bool] = mapped_column(Boolean)
    routing: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderLine(Base):
    """One SKU of an order: ordered, back-ordered (no stock found) and cancelled units."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "sku_id"),
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint("backordered >= 0 AND cancelled >= 0 AND returned >= 0", name="counts_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    qty: Mapped[int] = mapped_column(Integer)
    backordered: Mapped[int] = mapped_column(Integer, server_default="0")
    cancelled: Mapped[int] = mapped_column(Integer, server_default="0")
    returned: Mapped[int] = mapped_column(Integer, server_default="0")


class Fulfilment(Base):
    """What one location does for one order: ship it, hand it over, or send units to the pickup store."""

    __tablename__ = "fulfilments"
    __table_args__ = (
        CheckConstraint("type IN ('ship', 'pickup', 'transfer')", name="type_known"),
        Index("ix_fulfilments_order_id", "order_id"),
        Index("ix_fulfilments_location_status", "location_id", "status"),
        Index("ix_fulfilments_status_hold_until", "status", "hold_until"),
        # The counter's "collected today" reads one store's collections since midnight.
        Index("ix_fulfilments_location_status_collected", "location_id", "status", "collected_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    # transfer: the pickup store the units travel to, and the pickup fulfilment they feed.
    to_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    feeds_fulfilment_id: Mapped[int | None] = mapped_column(BigId)
    # Set when an outside fact left this location short of what it promised here.
    at_risk: Mapped[bool] = mapped_column(Boolean, server_default=false())
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hold_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Pickup: when it was promised ready, the hash of its pickup code (never the code), wrong
    # tries since the last lock, the lock's end, when the reminder went and when it was collected.
    promised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_tries: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FulfilmentLine(Base):
    """Units of one SKU in a fulfilment: reserved here now, awaiting a transfer, done, or cancelled."""

    __tablename__ = "fulfilment_lines"
    __table_args__ = (
        UniqueConstraint("fulfilment_id", "sku_id"),
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint(
            "reserved >= 0 AND awaiting >= 0 AND done >= 0 AND cancelled >= 0",
            name="counts_non_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fulfilment_id: Mapped[int] = mapped_column(ForeignKey("fulfilments.id", ondelete="CASCADE"))
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    qty: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, server_default="0")
    awaiting: Mapped[int] = mapped_column(Integer, server_default="0")
    done: Mapped[int] = mapped_column(Integer, server_default="0")
    cancelled: Mapped[int] = mapped_column(Integer, server_default="0")


class LocationDayUsage(Base):
    """Shipments a location has taken on one local day, against its daily capacity."""

    __tablename__ = "location_day_usage"

    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, server_default="0")


class WritingTxid(ColumnElement[int]):
    """A column default: the id of the transaction writing the row (0 on SQLite)."""

    inherit_cache = True
    type = BigInteger()


@compiles(WritingTxid)
def _writing_txid(element: WritingTxid, compiler: Any, **kw: Any) -> str:
    # SQLite runs one writer at a time, so its rows commit in id order and id alone orders them.
    return "0"


@compiles(WritingTxid, "postgresql")
def _writing_txid_pg(element: WritingTxid, compiler: Any, **kw: Any) -> str:
    # xid8 has no cast to bigint; via text it is the 64-bit, never-wrapping transaction id.
    return "(pg_current_xact_id()::text)::bigint"


class OutboxEvent(Base):
    """An event for other systems, written in the transaction that caused it; never edited."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_type_id", "type", "id"),
        Index("ix_outbox_events_txid_id", "txid", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigId)
    fulfilment_id: Mapped[int | None] = mapped_column(BigId)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Ids are drawn before commit, so they do not say in which order events became visible;
    # fan-out walks (txid, id) and only below the oldest running transaction (0: before txids).
    txid: Mapped[int] = mapped_column(BigInteger, server_default=WritingTxid())


class WebhookSubscription(Base):
    """An outside endpoint that receives events of the types it asked for, signed with its secret."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # Events after (last_event_txid, last_event_id), in that order, are still to be fanned out.
    last_event_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_event_id: Mapped[int] = mapped_column(BigId, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event owed to one subscription, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"))
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))


class WebhookAttempt(Base):
    """One HTTP attempt at a delivery, as it went."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int] = mapped_column(Integer)


class JobLock(Base):
    """A lease that lets one process at a time, on any machine, run a given job."""

    __tablename__ = "job_locks"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobRun(Base):
    """One run of a scheduled job: when, by whom, how it ended and what it did."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id", "job", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed, skipped
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2000))


# Registers the sync tables on Base.metadata wherever the models are imported.
from app import models_pickup as _models_pickup  # noqa: E402,F401
from app import models_sync as _models_sync  # noqa: E402,F401
