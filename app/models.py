"""Persistence schema. Business rules live in app/domain; these are the tables that hold them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.orm import Mapped, mapped_column, relationship

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


__all__ = [
    "ApiKey",
    "ApiKeyLocation",
    "Channel",
    "ChannelLocation",
    "Location",
    "Movement",
    "Sku",
    "StockLevel",
]
