"""Moving a fulfilment along its life cycle, with the ledger movements each edge implies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain import events as ev
from app.domain import fulfilment as lifecycle
from app.domain import fulfilment_lines as units
from app.domain.access import Scope
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.models import Fulfilment, FulfilmentLine, Order, OrderLine, Sku
from app.services import events, shortages
from app.services.ledger import Leg, record
from app.services.orders.queries import fulfilments_view
from app.services.orders.rows import (
    free_day_slot,
    fulfilment_event,
    give_back,
    locked_fulfilment,
    locked_lines,
    order_of,
    order_row,
)
from app.services.orders.views import FulfilmentView


def move(session: Session, legs: list[Leg], now: datetime) -> None:
    """Record legs in the ledger, with the stock events they cause."""
    changed = record(session, legs, now)
    events.stock_transitions(session, changed, now)
    # Units given back (a cancel, a return, a transfer received) may make good another promise.
    shortages.clear_recovered(session, [k for k, d in changed.items() if d.on_hand > 0 or d.reserved < 0], now)


def refresh_order_status(session: Session, order_id: int, now: datetime) -> str:
    """Recompute an order's status from its fulfilments and back-ordered units."""
    fs = (
        session.execute(select(Fulfilment.type, Fulfilment.status).where(Fulfilment.order_id == order_id))
        .tuples()
        .all()
    )
    back = sum(
        ln.backordered for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
    )
    status = lifecycle.order_status(list(fs), back)
    session.execute(update(Order).where(Order.id == order_id).values(status=status, updated_at=now))
    return status


# Work an edge does beside the generic moves (issuing a pickup code, say): it sees the locked
# fulfilment and its lines after the move and returns what the edge's event adds to its payload.
EdgeWork = Callable[[Session, Fulfilment, list[FulfilmentLine], datetime], Mapping[str, Any]]


def transition(
    session: Session, fid: int, target: Status, *, scope: Scope | None = None, kind: str | None = None,
    work: EdgeWork | None = None, now: datetime | None = None,
) -> FulfilmentView:  # fmt: skip
    """Move a fulfilment along one edge of its life cycle, with the ledger movements it implies
    (kind: the fulfilment must be of this type, e.g. a pickup for the counter's edges)."""
    now = now or utcnow()
    order = order_row(session, order_of(session, fid), lock=True)
    before = order.status  # refresh_order_status writes by statement: this stays the old status
    f = locked_fulfilment(session, fid)
    if scope is not None:
        # A transfer is received by the store it arrives at, everything else by the location acting.
        scope.require(f.to_location_id if target is Status.RECEIVED else f.location_id)
    if kind is not None and f.type != kind:
        raise lifecycle.InvalidTransition(f"fulfilment {fid} is a {f.type}, not a {kind}", type=f.type)
    lifecycle.check_transition(f.type, f.status, target)
    _refuse_lone_transfer_cancel(session, f, target)
    lines = locked_lines(session, fid)
    if target in (Status.READY_FOR_PICKUP, Status.COLLECTED):
        refuse_while_awaiting(session, lines)
    legs: list[Leg] = []
    if target in (Status.SHIPPED, Status.COLLECTED):
        legs += _hand_over(f, lines)
    elif target is Status.RECEIVED:
        legs += _receive_transfer(session, f, lines)
    elif target in (Status.CANCELLED, Status.EXPIRED):
        if target is Status.CANCELLED:
            count_cancelled(session, f, lines)
        legs += release(session, f, lines, now)
    f.status = target.value
    f.updated_at = now
    move(session, legs, now)
    extra = work(session, f, lines, now) if work is not None else {}
    events.emit(session, [fulfilment_event(f, f"fulfilment.{target.value}", **extra)], now)
    session.flush()
    if refresh_order_status(session, f.order_id, now) == "cancelled" and before != "cancelled":
        events.emit(session, [ev.order_cancelled(f.order_id, fulfilment_id=f.id)], now)
    return fulfilments_view(session, select(Fulfilment).where(Fulfilment.id == fid))[0]


def _refuse_lone_transfer_cancel(session: Session, f: Fulfilment, target: Status) -> None:
    if target is Status.CANCELLED and f.type == "transfer" and f.feeds_fulfilment_id is not None:
        fed = session.get(Fulfilment, f.feeds_fulfilment_id)
        if fed is not None and lifecycle.is_open(fed.status):
            # Cancelling only the transfer would leave the pickup waiting for units that never come.
            raise lifecycle.InvalidTransition(
                "this transfer feeds an open pickup: cancel the order's lines or the pickup instead",
                pickup_fulfilment_id=fed.id,
            )


def refuse_while_awaiting(session: Session, lines: list[FulfilmentLine]) -> None:
    """A pickup is ready (or collected) only with every unit in the store.

    (A ready pickup can await units again: a till sale there re-routed them to a transfer.)
    """
    waiting = {ln.sku_id: ln.awaiting for ln in lines if ln.awaiting}
    if waiting:
        names = dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(waiting))).tuples().all())
        raise lifecycle.InvalidTransition(
            "this pickup still waits for transferred units",
            awaiting=[{"sku": names[i], "qty": q} for i, q in sorted(waiting.items())],
        )


def _hand_over(f: Fulfilment, lines: list[FulfilmentLine]) -> list[Leg]:
    """Shipping and collecting hand the goods over: the reservation becomes a fulfilment (or
    transfer-out) movement."""
    kind = Kind.TRANSFER_OUT if f.type == "transfer" else Kind.FULFILMENT
    legs = []
    for ln in lines:
        qty = units.hand_over(ln)
        if qty:
            legs.append(Leg(kind, ln.sku_id, f.location_id, qty, Deltas(on_hand=-qty, reserved=-qty),
                            order_id=f.order_id, fulfilment_id=f.id))  # fmt: skip
    return legs


def count_cancelled(session: Session, f: Fulfilment, lines: list[FulfilmentLine]) -> None:
    """Units a cancelled pickup or shipment still held count as cancelled on the order's lines."""
    if f.type == "transfer":
        return  # a transfer's units belong to the pickup it feeds, which counts them
    add_cancelled(session, f.order_id, {ln.sku_id: ln.reserved + ln.awaiting for ln in lines if ln.reserved + ln.awaiting})


def add_cancelled(session: Session, order_id: int, units_by_sku: Mapping[int, int]) -> None:
    """These units of the order's lines will not be delivered: they count as cancelled."""
    if not units_by_sku:
        return
    for ol in session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id == order_id, OrderLine.sku_id.in_(units_by_sku))
        .with_for_update()
    ):
        ol.cancelled += units_by_sku[ol.sku_id]


def release(session: Session, f: Fulfilment, lines: list[FulfilmentLine], now: datetime) -> list[Leg]:
    """Legs that give back what an open fulfilment holds: reservations, and expected transfers."""
    legs = []
    for ln in lines:
        held = units.give_up(ln)
        if held:
            legs += give_back(f, ln.sku_id, held)
    if f.type == "pickup":
        # Transfers feeding this pickup have nowhere to go: cancel those not yet on the road.
        for t in session.scalars(
            select(Fulfilment).where(Fulfilment.feeds_fulfilment_id == f.id).with_for_update()
        ):
            if lifecycle.is_open(t.status):
                legs += release(session, t, locked_lines(session, t.id), now)
                t.status = Status.CANCELLED.value
                t.updated_at = now
                events.emit(session, [fulfilment_event(t, "fulfilment.cancelled")], now)
    free_day_slot(session, f)
    return legs


def shrink_transfers(
    session: Session, pickup: Fulfilment, sku_id: int, qty: int, now: datetime
) -> tuple[list[Leg], list[ev.Event]]:
    """Units a pickup no longer awaits: transfers not yet on the road give them back (newest first);
    units already travelling arrive as the store's own stock."""
    legs: list[Leg] = []
    evs: list[ev.Event] = []
    feeding = session.scalars(
        select(Fulfilment).where(Fulfilment.feeds_fulfilment_id == pickup.id,
                                 Fulfilment.status.in_([Status.ALLOCATED.value, Status.PICKING.value]))
        .order_by(Fulfilment.id.desc()).with_for_update()
    ).all()  # fmt: skip
    for t in feeding:
        t_lines = locked_lines(session, t.id)
        for tl in t_lines:
            take = units.cancel_reserved(tl, qty) if tl.sku_id == sku_id else 0
            if take:
                qty -= take
                legs += give_back(t, sku_id, take)
        if all(tl.reserved == 0 for tl in t_lines):
            t.status, t.updated_at = Status.CANCELLED.value, now
            evs.append(fulfilment_event(t, "fulfilment.cancelled"))
        if qty == 0:
            break
    return legs, evs


def _receive_transfer(session: Session, f: Fulfilment, lines: list[FulfilmentLine]) -> list[Leg]:
    """Units arrive at the pickup store: incoming becomes on_hand, reserved for the pickup."""
    if f.to_location_id is None:
        return []
    pickup = session.scalars(
        select(Fulfilment).where(Fulfilment.id == f.feeds_fulfilment_id).with_for_update()
    ).first()
    pickup_lines = {ln.sku_id: ln for ln in locked_lines(session, pickup.id)} if pickup else {}
    legs = []
    for ln in lines:
        if not ln.done:
            continue
        legs.append(Leg(Kind.TRANSFER_IN, ln.sku_id, f.to_location_id, ln.done,
                        Deltas(on_hand=ln.done, incoming=-ln.done), order_id=f.order_id, fulfilment_id=f.id))  # fmt: skip
        target = pickup_lines.get(ln.sku_id)
        if pickup is not None and target is not None and lifecycle.is_open(pickup.status):
            qty = units.arrive(target, ln.done)
            if qty:
                legs.append(Leg(Kind.RESERVATION, ln.sku_id, f.to_location_id, qty, Deltas(reserved=qty),
                                order_id=f.order_id, fulfilment_id=pickup.id))  # fmt: skip
    return legs
