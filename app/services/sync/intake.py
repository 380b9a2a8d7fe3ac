"""Order intake: a channel's orders become orders of that channel, routed and reserved like any other.

Idempotent by the shop's order id; an order that cannot be served is recorded with the reason
(and reported), never lost.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.domain.errors import DomainError
from app.models import Channel, Location, Sku
from app.models_sync import Feed, InboundOrder
from app.services import orders
from app.services.sync.feeds import FeedMap
from app.services.sync.quarantine import json_safe
from app.sync.base import IncomingOrder


def _known(session: Session, feed_id: int, external_id: str) -> InboundOrder | None:
    return session.get(InboundOrder, (feed_id, external_id))


def _command(
    session: Session, feed: Feed, fmap: FeedMap, order: IncomingOrder, ext: str
) -> orders.PlaceOrder | str:
    """The order as a PlaceOrder, or the reason it cannot be one."""
    if order.problem:
        return order.problem
    channel = session.get(Channel, feed.channel_id) if feed.channel_id else None
    if channel is None:
        return "the feed has no channel"
    by_id: dict[int, int] = {}
    for i, line in enumerate(order.lines):
        # Only the feed's mapping names our SKU: a shop SKU text that happens to equal one of our
        # codes is a match only when the feed opted into matching by SKU (match_items_by_sku).
        sku_id = fmap.sku_id(line.item_ref, line.sku) if line.item_ref else None
        if sku_id is None and line.sku and fmap.by_sku is not None:
            sku_id = fmap.by_sku.get(line.sku)
        if sku_id is None:
            return f"line {i + 1}: item {line.item_ref or line.sku!r} is not mapped to a SKU"
        if line.qty <= 0:
            return f"line {i + 1}: quantity {line.qty} is not positive"
        by_id[sku_id] = by_id.get(sku_id, 0) + line.qty
    codes = dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(by_id))).tuples().all())
    lines = {codes[sku_id]: qty for sku_id, qty in by_id.items()}
    if not lines:
        return "the order has no lines"
    d = order.delivery
    if d.get("type") == "pickup":
        loc_id = fmap.locations.get(str(d.get("location_ref")))
        if loc_id is None:
            return f"pickup location {d.get('location_ref')!r} is not mapped"
        loc_code = session.scalar(select(Location.code).where(Location.id == loc_id))
        delivery = orders.Delivery(type="pickup", location=loc_code)
    else:
        lat, lon = d.get("lat"), d.get("lon")
        if lat is not None and lon is not None:
            delivery = orders.Delivery(type="ship", lat=float(lat), lon=float(lon))
        elif d.get("postcode"):
            delivery = orders.Delivery(type="ship", postcode=str(d["postcode"]).strip().upper()[:16])
        else:
            return "the order has neither a pickup store nor a delivery address we can place"
    return orders.PlaceOrder(
        channel=channel.code, lines=tuple(sorted(lines.items())), delivery=delivery, external_id=ext,
        customer_ref=(order.customer_ref or None) and str(order.customer_ref)[:200],
        idempotency_key=f"{feed.code}:{ext}",
    )  # fmt: skip


def external_key(order: IncomingOrder) -> str:
    """The key an order is kept under: the shop's id, or (unreadable id) a digest of what came,
    so two unreadable orders are two rows rather than one overwriting the other."""
    if order.external_id:
        return order.external_id[:100]
    digest = hashlib.sha256(orjson.dumps(order.raw, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"unreadable:{digest[:64]}"


def take(
    factory: sessionmaker[Session],
    feed_id: int,
    fmap: FeedMap,
    order: IncomingOrder,
    policy: orders.Policy,
    attempts: int = 3,
) -> str:
    """Place one incoming order (or record why not); returns placed | duplicate | refused |
    still_refused (refused before: tried again, since a mapping or stock may have come since)."""
    ext = external_key(order)

    def prepare(session: Session) -> tuple[orders.PlaceOrder | str | None, bool]:
        known = _known(session, feed_id, ext)
        if known is not None and known.status == "placed":
            return None, True
        feed = session.get(Feed, feed_id)
        assert feed is not None  # noqa: S101 - the run holds the feed
        return _command(session, feed, fmap, order, ext), known is not None

    cmd, seen = transaction(factory, prepare)
    if cmd is None:
        return "duplicate"
    order_id: int | None = None
    reason: str | None = None
    if isinstance(cmd, str):
        reason = cmd
    else:
        try:
            placed = orders.place(factory, cmd, policy, attempts=attempts)
            order_id = placed.order.id
        except DomainError as refused:
            reason = f"{refused.code}: {refused.message}"
    now = utcnow()
    raw: dict[str, Any] = json_safe(order.raw)
    status = "placed" if order_id else "refused"
    reason = reason and reason[:1000]

    def record(session: Session) -> None:
        row = _known(session, feed_id, ext)
        if row is None:
            session.add(
                InboundOrder(
                    feed_id=feed_id, external_id=ext, status=status, order_id=order_id, reason=reason,
                    raw=raw, received_at=now, attempts=1,
                )
            )  # fmt: skip
        else:
            row.attempts += 1
            row.status, row.order_id, row.reason, row.raw = status, order_id, reason, raw

    transaction(factory, record)
    # A refusal is counted once per order, not once per run that sees it again.
    return "still_refused" if status == "refused" and seen else status
