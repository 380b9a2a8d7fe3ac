"""Sync persistence: feeds, their mappings, runs, quarantine, discrepancies and the inboxes.

Secrets are never stored: a feed names the environment variables that hold them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow
from app.models import BigId


class Feed(Base):
    """One outside system with a role: a source (on-hand converges to it) or a channel (we push to it)."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # source | channel
    connector: Mapped[str] = mapped_column(String(32))  # square | shopify | woocommerce | csv
    base_url: Mapped[str] = mapped_column(String(2000))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    # name -> environment variable holding the secret (never the secret itself)
    credentials: Mapped[dict[str, str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # Vendor-clock coverage of the change feed committed so far (the watermark rule's W).
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    orders_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Running totals for the metrics (runs by outcome, rows, adjustments, discrepancies), kept
    # in the database so every app process on every machine reports the same figures.
    totals: Mapped[dict[str, int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class FeedLocation(Base):
    """An outside location reference and the ledger location it is (None: the channel's whole stock)."""

    __tablename__ = "feed_locations"
    __table_args__ = (Index("ix_feed_locations_location", "location_id"),)

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    location_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))


class FeedItem(Base):
    """An outside item reference and the SKU it is."""

    __tablename__ = "feed_items"
    __table_args__ = (Index("ix_feed_items_sku", "feed_id", "sku_id"),)

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    item_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))


class SyncRun(Base):
    """One run of a feed: what it saw, what it did, how it ended."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_feed_id", "feed_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # reconcile | push
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual | webhook | cli
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2000))


class Quarantine(Base):
    """A row a feed sent that could not be used, with its raw payload, until ops resolve it."""

    __tablename__ = "sync_quarantine"
    __table_args__ = (
        UniqueConstraint("feed_id", "kind", "item_ref", "location_ref"),
        Index("ix_sync_quarantine_status", "feed_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    # unknown_item | unknown_location | untracked | bad_row | unmapped_line
    kind: Mapped[str] = mapped_column(String(32))
    item_ref: Mapped[str] = mapped_column(String(200))
    location_ref: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    seen_count: Mapped[int] = mapped_column(Integer, server_default="1")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_run_id: Mapped[int | None] = mapped_column(BigId)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(500))


class Discrepancy(Base):
    """A difference larger than the feed's auto-apply limit, waiting for ops to accept or reject."""

    __tablename__ = "sync_discrepancies"
    __table_args__ = (Index("ix_sync_discrepancies_status", "feed_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(BigId)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    vendor_qty: Mapped[int] = mapped_column(Integer)
    ledger_qty: Mapped[int] = mapped_column(Integer)
    drift: Mapped[int] = mapped_column(Integer)
    vendor_time: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # open | accepted | rejected | superseded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(500))
    applied_delta: Mapped[int | None] = mapped_column(Integer)


class KeyState(Base):
    """Per-key memory between runs: deferred since when, and a first strike awaiting its second."""

    __tablename__ = "sync_key_state"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    sku_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ineligible_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    strike_drift: Mapped[int | None] = mapped_column(Integer)
    strike_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Outbound(Base):
    """A ledger fact owed to a source (a web order fulfilled from its stock), until the vendor acks it."""

    __tablename__ = "sync_outbound"
    __table_args__ = (Index("ix_sync_outbound_status", "feed_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    sku_id: Mapped[int] = mapped_column(Integer)
    location_id: Mapped[int] = mapped_column(Integer)
    delta: Mapped[int] = mapped_column(Integer)
    fulfilment_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(16))  # pending | acked | rejected
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    vendor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(500))


class PushedLevel(Base):
    """What we last pushed to a channel for an item at one of its locations."""

    __tablename__ = "sync_pushed"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    item_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    location_ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    target: Mapped[int] = mapped_column(Integer)
    pushed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundOrder(Base):
    """A channel's order as it came in, and what became of it: placed, or refused with the reason."""

    __tablename__ = "sync_orders"
    __table_args__ = (Index("ix_sync_orders_status", "feed_id", "status"),)

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # placed | refused
    order_id: Mapped[int | None] = mapped_column(BigId)
    reason: Mapped[str | None] = mapped_column(String(1000))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, server_default="1")


class WebhookReceipt(Base):
    """A vendor webhook delivery already taken: a redelivery is dropped."""

    __tablename__ = "sync_webhook_receipts"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None until a run of the feed has started after it (the hint has been acted on).
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
