"""Row-level steps every order change shares: locking rows, giving units back, moving the ledger."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import events as ev
from app.domain.errors import NotFound
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.models import Fulfilment, FulfilmentLine, Location, Order
from app.services.ledger import Leg
from app.services.orders import reservations


def order_row(session: Session, order_id: int, *, lock: bool = False) -> Order:
    """The order, locked for update when asked; 404 when there is none."""
    stmt = select(Order).where(Order.id == order_id)
    if lock:
        stmt = stmt.with_for_update()
    order = session.scalars(stmt).first()
    if order is None:
        raise NotFound(f"no order {order_id}", order_id=order_id)
    return order


def locked_fulfilment(session: Session, fid: int) -> Fulfilment:
    f = session.scalars(select(Fulfilment).where(Fulfilment.id == fid).with_for_update()).first()
    if f is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    return f


def locked_lines(session: Session, fid: int) -> list[FulfilmentLine]:
    """A fulfilment's lines, locked in SKU order (the order every change takes them in)."""
    return list(session.scalars(select(FulfilmentLine).where(FulfilmentLine.fulfilment_id == fid)
                                .order_by(FulfilmentLine.sku_id).with_for_update()))  # fmt: skip


def order_of(session: Session, fid: int) -> int:
    """The order a fulfilment belongs to (read before locking the order first)."""
    oid = session.scalar(select(Fulfilment.order_id).where(Fulfilment.id == fid))
    if oid is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    return int(oid)


def fulfilment_event(f: Fulfilment, type_: str, **extra: Any) -> ev.Event:
    return ev.fulfilment_event(type_, f.id, f.order_id, f.status, **extra)


def give_back(f: Fulfilment, sku_id: int, qty: int, reason: str | None = None) -> list[Leg]:
    """Legs that give back qty a fulfilment reserved: released where it was held, and for a
    transfer no longer expected at the store it was going to."""
    legs = [Leg(Kind.RELEASE, sku_id, f.location_id, qty, Deltas(reserved=-qty), order_id=f.order_id,
                fulfilment_id=f.id, reason=reason)]  # fmt: skip
    if f.type == "transfer" and f.to_location_id is not None:
        legs.append(Leg(Kind.TRANSFER_CANCELLED, sku_id, f.to_location_id, qty, Deltas(incoming=-qty),
                        order_id=f.order_id, fulfilment_id=f.id, reason=reason))  # fmt: skip
    return legs


def free_day_slot(session: Session, f: Fulfilment) -> None:
    """A shipment that will not leave gives its slot in the day's capacity back (once picking
    started, the day's work was spent)."""
    if f.type != "ship" or f.status != Status.ALLOCATED.value:
        return
    loc = session.get(Location, f.location_id)
    if loc is not None and loc.daily_capacity is not None:
        day = f.created_at.astimezone(ZoneInfo(loc.timezone)).date()
        reservations.release_capacity(session, f.location_id, day)
