"""Reading orders and fulfilments as read models: one order, filtered pages, one fulfilment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.access import Scope
from app.domain.errors import NotFound
from app.models import Channel, Fulfilment, FulfilmentLine, Location, Order, OrderLine, Sku
from app.services.orders.rows import order_row
from app.services.orders.views import (
    FulfilmentLineView,
    FulfilmentView,
    OrderLineView,
    OrderView,
    delivery_view,
    routing_from_json,
    visible_to,
)


def get_order(session: Session, order_id: int, *, scope: Scope | None = None) -> OrderView:
    """One order with its lines, fulfilments and routing; staff see only their locations' part."""
    order = orders_view(session, [order_row(session, order_id)])[0]
    if scope is None:
        return order
    scope.require_any(
        {f.location_id for f in session.scalars(select(Fulfilment).where(Fulfilment.order_id == order_id))},
        what="this order has nothing at your locations",
    )
    return visible_to(order, scope.codes)


def orders_view(session: Session, orders: Sequence[Order]) -> list[OrderView]:
    """Orders with their lines and fulfilments in a fixed number of queries, whatever the count."""
    if not orders:
        return []
    ids = [o.id for o in orders]
    lines: dict[int, list[OrderLineView]] = {}
    for ln, code in session.execute(
        select(OrderLine, Sku.code).join(Sku, Sku.id == OrderLine.sku_id)
        .where(OrderLine.order_id.in_(ids)).order_by(OrderLine.order_id, OrderLine.line_no)
    ).tuples():  # fmt: skip
        lines.setdefault(ln.order_id, []).append(
            OrderLineView(code, ln.qty, ln.backordered, ln.cancelled, ln.returned)
        )
    locs = location_codes(session)
    chans = dict(session.execute(select(Channel.id, Channel.code)).tuples().all())
    fulfilments = fulfilments_view(session, select(Fulfilment).where(Fulfilment.order_id.in_(ids)), locs)
    by_order: dict[int, list[FulfilmentView]] = {}
    for f in fulfilments:
        by_order.setdefault(f.order_id, []).append(f)
    return [
        OrderView(
            id=o.id, external_id=o.external_id, status=o.status, channel=chans.get(o.channel_id),
            customer_ref=o.customer_ref, customer_name=o.customer_name,
            delivery=delivery_view(o.delivery_type, o.ship_lat, o.ship_lon, o.ship_postcode,
                                   locs.get(o.pickup_location_id or -1)),
            lines=lines.get(o.id, []), fulfilments=by_order.get(o.id, []), routing=routing_from_json(o.routing),
            created_at=o.created_at, updated_at=o.updated_at,
        )
        for o in orders
    ]  # fmt: skip


def location_codes(session: Session) -> dict[int, str]:
    """Every location's code by id (a few hundred rows at most)."""
    return dict(session.execute(select(Location.id, Location.code)).tuples().all())


def fulfilments_view(
    session: Session, stmt: object, locs: dict[int, str] | None = None
) -> list[FulfilmentView]:
    """The fulfilments a select(Fulfilment) finds, in id order, with their lines (two queries)."""
    found = list(session.scalars(stmt.order_by(Fulfilment.id)))  # type: ignore[attr-defined]
    if not found:
        return []
    locs = location_codes(session) if locs is None else locs
    lines: dict[int, list[FulfilmentLineView]] = {}
    for fl, code in session.execute(
        select(FulfilmentLine, Sku.code).join(Sku, Sku.id == FulfilmentLine.sku_id)
        .where(FulfilmentLine.fulfilment_id.in_([f.id for f in found])).order_by(FulfilmentLine.id)
    ).tuples():  # fmt: skip
        lines.setdefault(fl.fulfilment_id, []).append(line_view(fl, code))
    return [fulfilment_view(f, locs, lines.get(f.id, [])) for f in found]


def line_view(fl: FulfilmentLine, code: str) -> FulfilmentLineView:
    return FulfilmentLineView(code, fl.qty, fl.reserved, fl.awaiting, fl.done, fl.cancelled)


def fulfilment_view(
    f: Fulfilment, locs: dict[int, str], lines: Sequence[FulfilmentLineView]
) -> FulfilmentView:
    return FulfilmentView(
        id=f.id, order_id=f.order_id, location=locs[f.location_id], type=f.type, status=f.status,
        to_location=locs.get(f.to_location_id or -1), at_risk=f.at_risk, ready_at=f.ready_at,
        hold_until=f.hold_until, lines=lines, promised_at=f.promised_at, collected_at=f.collected_at,
        locked_until=f.locked_until,
    )  # fmt: skip


@dataclass(frozen=True)
class OrderFilter:
    status: str | None = None
    location: str | None = None
    channel: str | None = None
    customer_ref: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def list_orders(
    session: Session, flt: OrderFilter, *, before_id: int | None, limit: int, scope: Scope | None = None
) -> tuple[list[OrderView], int | None]:
    """Orders newest first with filters, keyset-paged by id; staff see only their locations' part."""
    stmt = select(Order).order_by(Order.id.desc()).limit(limit + 1)
    if flt.status:
        stmt = stmt.where(Order.status == flt.status)
    if flt.channel:
        stmt = stmt.where(
            Order.channel_id == select(Channel.id).where(Channel.code == flt.channel).scalar_subquery()
        )
    if flt.customer_ref:
        stmt = stmt.where(Order.customer_ref == flt.customer_ref)
    if flt.created_from:
        stmt = stmt.where(Order.created_at >= flt.created_from)
    if flt.created_to:
        stmt = stmt.where(Order.created_at < flt.created_to)
    if flt.location or scope is not None:
        sub = select(Fulfilment.order_id).where(Fulfilment.order_id == Order.id)
        if flt.location:
            location_id = session.scalar(select(Location.id).where(Location.code == flt.location))
            if scope is not None and location_id is not None:
                scope.require(location_id, flt.location)
            sub = sub.where(Fulfilment.location_id == location_id)
        if scope is not None:
            sub = sub.where(Fulfilment.location_id.in_(scope.location_ids))
        stmt = stmt.where(sub.exists())
    if before_id is not None:
        stmt = stmt.where(Order.id < before_id)
    rows = list(session.scalars(stmt))
    page = rows[:limit]
    views = orders_view(session, page)
    if scope is not None:
        views = [visible_to(v, scope.codes) for v in views]
    return views, (page[-1].id if len(rows) > limit else None)


def get_fulfilment(session: Session, fid: int, *, scope: Scope | None = None) -> FulfilmentView:
    """One fulfilment with its lines; staff only for their own locations (a transfer: either end,
    as its destination's staff receive it)."""
    f = session.get(Fulfilment, fid)
    if f is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    if scope is not None:
        scope.require_any(
            [f.location_id, *([f.to_location_id] if f.to_location_id else [])],
            "you may not see that fulfilment",
        )
    return fulfilments_view(session, select(Fulfilment).where(Fulfilment.id == fid))[0]
