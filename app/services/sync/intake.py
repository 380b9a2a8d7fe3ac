"""Order intake: a channel's orders become orders of that channel, routed and reserved like any other.

Idempotent by the shop's order id; an order that cannot be served is recorded with the reason
(and reported), never lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.domain.errors import DomainError
from app.models import Channel, Location, Sku
from app.models_sync import Feed, InboundOrder
from app.services import orders
from app.services.sync.feeds import FeedMap
from app.sync.base import IncomingOrder


def _known(session: Session, feed_id: int, external_id: str) -> InboundOrder | None:
    return session.get(InboundOrder, (feed_id, external_id))


def _command(session: Session, feed: Feed, fmap: FeedMap, order: IncomingOrder) -> orders.PlaceOrder | str:
    """The order as a PlaceOrder, or the reason it cannot be one."""
    if order.problem:
        return order.problem
    channel = session.get(Channel, feed.channel_id) if feed.channel_id else None
    if channel is None:
        return "the feed has no channel"
    codes = dict(session.execute(select(Sku.id, Sku.code)).tuples().all()) if order.lines else {}
    lines: dict[str, int] = {}
    for i, line in enumerate(order.lines):
        sku_id = fmap.sku_id(line.item_ref or "", line.sku) if line.item_ref else None
        if sku_id is None and line.sku and fmap.by_sku is not None:
            sku_id = fmap.by_sku.get(line.sku)
        if sku_id is None and line.sku:
            sku_id = session.scalar(select(Sku.id).where(Sku.code == line.sku))
        if sku_id is None:
            return f"line {i + 1}: item {line.item_ref or line.sku!r} is not mapped to a SKU"
        if line.qty <= 0:
            return f"line {i + 1}: quantity {line.qty} is not positive"
        code = codes[sku_id]
        lines[code] = lines.get(code, 0) + line.qty
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
    ext = order.external_id[:100]
    return orders.PlaceOrder(
        channel=channel.code, lines=tuple(sorted(lines.items())), delivery=delivery, external_id=ext,
        customer_ref=(order.customer_ref or None) and str(order.customer_ref)[:200],
        idempotency_key=f"{feed.code}:{ext}",
    )  # fmt: skip


def take(
    factory: sessionmaker[Session],
    feed_id: int,
    fmap: FeedMap,
    order: IncomingOrder,
    policy: orders.Policy,
    attempts: int = 3,
) -> str:
    """Place one incoming order (or record why not); returns placed | duplicate | refused."""

    def prepare(session: Session) -> orders.PlaceOrder | str | None:
        known = _known(session, feed_id, order.external_id)
        if known is not None and known.status == "placed":
            return None
        feed = session.get(Feed, feed_id)
        assert feed is not None  # noqa: S101 - the run holds the feed
        return _command(session, feed, fmap, order)

    cmd = transaction(factory, prepare)
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
    raw: dict[str, Any] = _safe(order.raw)

    def record(session: Session) -> None:
        row = _known(session, feed_id, order.external_id)
        if row is None:
            session.add(
                InboundOrder(
                    feed_id=feed_id, external_id=order.external_id[:100], status="placed" if order_id else "refused",
                    order_id=order_id, reason=reason and reason[:1000], raw=raw, received_at=now, attempts=1,
                )
            )  # fmt: skip
        else:
            row.attempts += 1
            row.status, row.order_id, row.reason, row.raw = (
                ("placed" if order_id else "refused"),
                order_id,
                reason,
                raw,
            )

    transaction(factory, record)
    return "placed" if order_id else "refused"


def _safe(raw: Any) -> dict[str, Any]:
    import orjson

    try:
        out = orjson.loads(orjson.dumps(raw, default=str))
        return out if isinstance(out, dict) else {"value": out}
    except (TypeError, ValueError):
        return {"repr": repr(raw)[:2000]}


def received_at(row: InboundOrder) -> datetime:
    return row.received_at
