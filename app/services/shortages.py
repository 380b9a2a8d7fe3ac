"""Shortages: an outside fact left a location with on_hand < reserved. The newest promises there
are re-routed where stock allows, otherwise flagged at risk; the flag clears once the location is
whole again. Stock movements and reconciliation both come through here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import rules
from app.db.dialect import keys_in
from app.domain import events as ev
from app.domain import fulfilment as lifecycle
from app.domain import fulfilment_lines as units
from app.domain import ledger, routing
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.models import Channel, Fulfilment, FulfilmentLine, Location, Order, Sku, StockLevel
from app.services import events
from app.services.ledger import Leg, insert_movements, record
from app.services.orders import reservations
from app.services.orders.candidates import Context, load_candidates
from app.services.orders.commands import LostRace, Policy
from app.services.orders.refs import channel_of
from app.services.orders.rows import free_day_slot, give_back, locked_lines, order_row
from app.services.pickup import promise

_OPEN = [s.value for s in lifecycle.OPEN]


@dataclass(frozen=True, slots=True)
class Shortage:
    """One open fulfilment a fact left short: re-routed (to a location) or flagged at risk."""

    fulfilment_id: int
    order_id: int
    sku_id: int
    sku: str
    location: str
    qty: int
    rerouted_to: str | None


def lock_promises(session: Session, keys: Sequence[tuple[int, int]]) -> None:
    """Before an outside fact takes stock at these (sku, location)s: lock the orders, then the
    open fulfilments, that hold reservations there, in id order.

    Order changes lock order, fulfilments, then stock; shortage handling runs after the fact has
    locked stock. Taking the same locks first here keeps one order everywhere (no deadlock).
    """
    if not keys:
        return
    held = session.execute(
        select(Fulfilment.order_id, Fulfilment.id)
        .join(FulfilmentLine, FulfilmentLine.fulfilment_id == Fulfilment.id)
        .where(keys_in(session, FulfilmentLine.sku_id, Fulfilment.location_id, keys), FulfilmentLine.reserved > 0,
               Fulfilment.status.in_(_OPEN))
    ).tuples().all()  # fmt: skip
    if not held:
        return
    order_ids = sorted({oid for oid, _ in held})
    session.execute(
        select(Order.id).where(Order.id.in_(order_ids)).order_by(Order.id).with_for_update()
    ).all()
    # Every fulfilment of those orders (a short transfer's pickup too), as cancel_order takes them.
    session.execute(
        select(Fulfilment.id)
        .where(Fulfilment.order_id.in_(order_ids))
        .order_by(Fulfilment.id)
        .with_for_update()
    ).all()


def handle_shortages(
    session: Session, keys: Sequence[tuple[int, int]], policy: Policy, now: datetime
) -> list[Shortage]:
    """After an outside fact: where on_hand no longer covers reserved, move the newest promises
    elsewhere if stock allows, else flag them at risk; every affected fulfilment gets an event."""
    short = session.execute(
        select(StockLevel.sku_id, StockLevel.location_id, StockLevel.on_hand, StockLevel.reserved)
        .where(keys_in(session, StockLevel.sku_id, StockLevel.location_id, keys), rules.is_short(StockLevel.on_hand, StockLevel.reserved))
        .order_by(StockLevel.sku_id, StockLevel.location_id)
    ).all()  # fmt: skip
    found: list[tuple[Fulfilment, int, int, int, str | None]] = []
    for sku_id, loc_id, on_hand, reserved in short:
        gap = ledger.shortage(ledger.Level(on_hand, reserved))
        affected = session.execute(
            select(Fulfilment, FulfilmentLine)
            .join(FulfilmentLine, FulfilmentLine.fulfilment_id == Fulfilment.id)
            .where(Fulfilment.location_id == loc_id, FulfilmentLine.sku_id == sku_id, FulfilmentLine.reserved > 0,
                   Fulfilment.status.in_(_OPEN))
            .order_by(Fulfilment.id.desc())
            .with_for_update()
        ).tuples().all()  # fmt: skip
        for f, fl in affected:
            if gap <= 0:
                break
            qty = min(gap, fl.reserved)
            gap -= qty
            moved_to = reroute(session, f, fl, qty, policy, now)
            if moved_to is None:
                _flag(session, f)
            found.append((f, sku_id, loc_id, qty, moved_to))
            events.emit(session, [ev.fulfilment_event("fulfilment.shortage", f.id, f.order_id, f.status, qty=qty,
                                                      rerouted_to=moved_to, at_risk=moved_to is None)], now)  # fmt: skip
    return _report(session, found)


def _flag(session: Session, f: Fulfilment) -> None:
    f.at_risk = True
    if f.type == "transfer" and f.feeds_fulfilment_id is not None:
        # The pickup this transfer feeds will not be complete on time either.
        fed = session.get(Fulfilment, f.feeds_fulfilment_id, with_for_update=True)
        if fed is not None and lifecycle.is_open(fed.status):
            fed.at_risk = True


def _report(session: Session, found: list[tuple[Fulfilment, int, int, int, str | None]]) -> list[Shortage]:
    if not found:
        return []
    # Codes for the answer, one read each.
    skus = dict(
        session.execute(select(Sku.id, Sku.code).where(Sku.id.in_({x[1] for x in found}))).tuples().all()
    )
    locs = dict(
        session.execute(select(Location.id, Location.code).where(Location.id.in_({x[2] for x in found})))
        .tuples().all()
    )  # fmt: skip
    return [Shortage(f.id, f.order_id, sku_id, skus[sku_id], locs[loc_id], qty, moved_to)
            for f, sku_id, loc_id, qty, moved_to in found]  # fmt: skip


def clear_recovered(session: Session, keys: Sequence[tuple[int, int]], now: datetime) -> list[int]:
    """Fulfilments flagged at risk whose location again holds every unit they reserve lose the flag
    (and so does a pickup flagged for a short transfer, once that transfer and the pickup are whole)."""
    locs = sorted({loc for _sku, loc in keys})
    if not locs:
        return []
    # SKIP LOCKED: this runs holding stock rows, and order changes lock fulfilments before stock;
    # waiting here could deadlock. A flag skipped now clears with a later movement.
    flagged = list(session.scalars(
        select(Fulfilment).where(Fulfilment.location_id.in_(locs), Fulfilment.at_risk, Fulfilment.status.in_(_OPEN))
        .order_by(Fulfilment.id).with_for_update(skip_locked=True)
    ))  # fmt: skip
    cleared = []
    for f in flagged:
        if not _covered(session, f):
            continue
        f.at_risk, f.updated_at = False, now
        cleared.append(f.id)
        fed = (
            session.scalars(
                select(Fulfilment)
                .where(Fulfilment.id == f.feeds_fulfilment_id)
                .with_for_update(skip_locked=True)
            ).first()
            if f.feeds_fulfilment_id
            else None
        )
        if fed is not None and fed.at_risk and lifecycle.is_open(fed.status) and _covered(session, fed):
            fed.at_risk, fed.updated_at = False, now
            cleared.append(fed.id)
    return cleared


def _covered(session: Session, f: Fulfilment) -> bool:
    """Its location holds what it reserves for every line, and no transfer feeding it is at risk."""
    short_line = (
        select(FulfilmentLine.id)
        .join(StockLevel, (StockLevel.sku_id == FulfilmentLine.sku_id) & (StockLevel.location_id == f.location_id))
        .where(FulfilmentLine.fulfilment_id == f.id, FulfilmentLine.reserved > 0,
               rules.is_short(StockLevel.on_hand, StockLevel.reserved))
    )  # fmt: skip
    feeding_at_risk = select(Fulfilment.id).where(
        Fulfilment.feeds_fulfilment_id == f.id, Fulfilment.at_risk, Fulfilment.status.in_(_OPEN)
    )
    return session.scalar(select(short_line.exists() | feeding_at_risk.exists())) is False


@dataclass(frozen=True)
class _Source:
    location: str
    location_id: int
    anchor_id: int  # where the customer's units must end up (the pickup store, or the shipment's origin)
    ctx: Context


def reroute(
    session: Session, f: Fulfilment, fl: FulfilmentLine, qty: int, policy: Policy, now: datetime
) -> str | None:
    """Try to take qty of one line from elsewhere; returns the new location code, or None.
    A pickup re-sourced by transfer (or one whose transfer is) gets a later promise."""
    source = _choose_source(session, f, fl, qty, policy, now)
    if source is None:
        return None
    new_type = "ship" if f.type == "ship" else "transfer"
    feeds = f.id if f.type == "pickup" else f.feeds_fulfilment_id
    existing = session.scalars(select(Fulfilment).where(
        Fulfilment.order_id == f.order_id, Fulfilment.location_id == source.location_id, Fulfilment.type == new_type,
        Fulfilment.status == "allocated", Fulfilment.feeds_fulfilment_id.is_(None) if feeds is None
        else Fulfilment.feeds_fulfilment_id == feeds).with_for_update()).first()  # fmt: skip
    try:
        with session.begin_nested():
            reservations.reserve(session, source.ctx, {(fl.sku_id, source.location_id): qty}, now)
            if new_type == "ship" and existing is None:
                reservations.take_capacity(session, source.ctx, [source.location_id])  # a new shipment counts
    except LostRace:
        return None
    legs = give_back(f, fl.sku_id, qty, reason="shortage")
    # A pickup still happens here and now awaits the units by transfer; a short transfer's pickup
    # keeps waiting while another location sends them; a shipment simply no longer holds them.
    units.source_elsewhere(fl, qty, still_awaited=f.type == "pickup")
    if existing is None:
        to_loc = f.location_id if f.type == "pickup" else (f.to_location_id if f.type == "transfer" else None)
        existing = Fulfilment(order_id=f.order_id, location_id=source.location_id, type=new_type, status="allocated",
                              to_location_id=to_loc, feeds_fulfilment_id=feeds,
                              at_risk=False, created_at=now, updated_at=now)  # fmt: skip
        session.add(existing)
        session.flush()
    line = session.scalars(select(FulfilmentLine).where(FulfilmentLine.fulfilment_id == existing.id,
                                                        FulfilmentLine.sku_id == fl.sku_id).with_for_update()).first()  # fmt: skip
    if line is None:
        session.add(FulfilmentLine(fulfilment_id=existing.id, sku_id=fl.sku_id, qty=qty, reserved=qty, awaiting=0,
                                   done=0, cancelled=0))  # fmt: skip
    else:
        units.add(line, qty)
    reserved_leg = Leg(Kind.RESERVATION, fl.sku_id, source.location_id, qty, Deltas(reserved=qty),
                       order_id=f.order_id, fulfilment_id=existing.id, reason="shortage")  # fmt: skip
    if new_type == "transfer":
        legs.append(Leg(Kind.TRANSFER_EXPECTED, fl.sku_id, source.anchor_id, qty, Deltas(incoming=qty),
                        order_id=f.order_id, fulfilment_id=existing.id, reason="shortage"))  # fmt: skip
    # The new location's reserved was already raised by reserve(): record that leg without applying it again.
    changed = record(session, legs, now)
    insert_movements(session, [reserved_leg], now)
    key = (fl.sku_id, source.location_id)
    changed[key] = changed.get(key, Deltas()) + Deltas(reserved=qty)
    events.stock_transitions(session, changed, now)
    if f.type != "pickup" and all(units.settled(x) for x in locked_lines(session, f.id)):
        free_day_slot(session, f)
        f.status, f.updated_at = Status.CANCELLED.value, now
        events.emit(session, [ev.fulfilment_event("fulfilment.cancelled", f.id, f.order_id, f.status,
                                                  reason="shortage")], now)  # fmt: skip
    fed = f if f.type == "pickup" else session.get(Fulfilment, f.feeds_fulfilment_id) if feeds else None
    if fed is not None:
        promise.refresh(session, fed, now)
    sku_code = session.scalar(select(Sku.code).where(Sku.id == fl.sku_id)) or ""
    events.emit(session, [ev.fulfilment_allocated(f.order_id, existing.id, source.location, new_type,
                                                  [(sku_code, qty)], reason="shortage")], now)  # fmt: skip
    return source.location


def _choose_source(
    session: Session, f: Fulfilment, fl: FulfilmentLine, qty: int, policy: Policy, now: datetime
) -> _Source | None:
    """The one other location routing would now take qty of this line from, if any."""
    order = order_row(session, f.order_id)
    sku_code = session.scalar(select(Sku.code).where(Sku.id == fl.sku_id))
    channel_code = session.scalar(select(Channel.code).where(Channel.id == order.channel_id))
    if sku_code is None or channel_code is None:
        return None
    ctx = Context(order.channel_id, channel_of(session, channel_code)[1] == "online", {sku_code: fl.sku_id})
    candidates = load_candidates(session, ctx, now)
    taken = {row[0] for row in session.execute(
        select(Fulfilment.location_id).where(Fulfilment.order_id == order.id, Fulfilment.status != "allocated")
    ).all()}  # fmt: skip
    # A short transfer is re-sourced for the pickup it feeds: route as that pickup would.
    anchor_id = f.to_location_id if f.type == "transfer" and f.to_location_id is not None else f.location_id
    own = next(code for code, loc in ctx.locations.items() if loc.id == anchor_id)
    usable = [
        routing.Candidate(**{**c.__dict__, "stock": {sku_code: 0}})
        if c.code == own or ctx.locations[c.code].id in taken or ctx.locations[c.code].id == f.location_id
        else c
        for c in candidates
    ]
    line = (routing.Line(sku_code, qty),)
    if f.type in ("pickup", "transfer"):
        request = routing.RoutingRequest(line, routing.PickupAt(own), True, False)
    else:
        request = routing.RoutingRequest(line, routing.ShipTo(order.ship_lat, order.ship_lon), False, False)
    decision = routing.route(request, usable, policy.routing_policy())
    sources = [a for a in decision.allocations if a.lines and a.location != own]
    if decision.status != "allocated" or len(sources) != 1:
        return None
    return _Source(sources[0].location, ctx.locations[sources[0].location].id, anchor_id, ctx)
