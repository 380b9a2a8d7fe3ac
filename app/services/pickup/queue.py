"""The counter's view: a store's pickups by tab with counts, one pickup in detail, and what a
scanner's input opens. Staff see only their own stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.domain import pickup as rules
from app.domain.access import Scope
from app.domain.errors import NotFound
from app.domain.fulfilment import Status
from app.models import Fulfilment, FulfilmentLine, Location, Order, Sku
from app.models_pickup import SkuBin

_TO_PICK = (Status.ALLOCATED.value, Status.PICKING.value)
_READY = Status.READY_FOR_PICKUP.value


@dataclass(frozen=True, slots=True)
class PickupLineView:
    sku: str
    name: str
    bin: str | None
    qty: int
    reserved: int
    awaiting: int
    done: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class PickupView:
    """A pickup as the counter sees it."""

    id: int
    order_id: int
    location: str
    status: str
    tab: str | None
    customer_ref: str | None
    customer_name: str | None
    at_risk: bool
    promised_at: datetime | None
    ready_at: datetime | None
    hold_until: datetime | None
    collected_at: datetime | None
    locked_until: datetime | None
    tries_left: int
    created_at: datetime
    lines: Sequence[PickupLineView]


@dataclass(frozen=True, slots=True)
class QueueCountsView:
    to_pick: int
    ready: int
    overdue: int
    collected_today: int


@dataclass(frozen=True, slots=True)
class QueueView:
    location: str
    tab: str
    counts: QueueCountsView
    items: Sequence[PickupView]
    total: int


def _tab_filter(tab: rules.Tab, now: datetime, day_start: datetime) -> ColumnElement[bool]:
    late_pick = and_(Fulfilment.status.in_(_TO_PICK), Fulfilment.promised_at < now)
    late_ready = and_(Fulfilment.status == _READY, Fulfilment.hold_until <= now)
    match tab:
        case rules.Tab.TO_PICK:
            return and_(Fulfilment.status.in_(_TO_PICK), or_(Fulfilment.promised_at.is_(None), Fulfilment.promised_at >= now))
        case rules.Tab.READY:
            return and_(Fulfilment.status == _READY, or_(Fulfilment.hold_until.is_(None), Fulfilment.hold_until > now))
        case rules.Tab.OVERDUE:
            return or_(late_pick, late_ready)
        case rules.Tab.COLLECTED_TODAY:
            return and_(Fulfilment.status == Status.COLLECTED.value, Fulfilment.collected_at >= day_start)


def store_of(session: Session, code: str, scope: Scope | None) -> Location:
    loc = session.scalars(select(Location).where(Location.code == code)).first()
    if loc is None:
        raise NotFound(f"no location {code}", location=code)
    if scope is not None:
        scope.require(loc.id, code)
    return loc


def queue(
    session: Session, location: str | Location, tab: rules.Tab, now: datetime, *, scope: Scope | None = None,
    max_tries: int = 5, limit: int = 200,
) -> QueueView:  # fmt: skip
    """One tab of a store's pickups (oldest promise first) and every tab's count."""
    # A store the caller already looked up (and checked against its scope) is not read again.
    loc = location if isinstance(location, Location) else store_of(session, location, scope)
    day_start = rules.local_day_start(now, loc.timezone)
    base = and_(Fulfilment.location_id == loc.id, Fulfilment.type == "pickup")
    # Open pickups and today's collections only: the store's whole history is never read to count.
    on_counter = or_(Fulfilment.status.in_([*_TO_PICK, _READY]),
                     and_(Fulfilment.status == Status.COLLECTED.value, Fulfilment.collected_at >= day_start))  # fmt: skip
    counted = session.execute(
        select(*[func.count(case((_tab_filter(t, now, day_start), 1))) for t in rules.Tab]).where(base, on_counter)
    ).one()
    counts = {t.value: int(n) for t, n in zip(rules.Tab, counted, strict=True)}
    order_by = {
        rules.Tab.TO_PICK: (Fulfilment.promised_at, Fulfilment.id),
        rules.Tab.READY: (Fulfilment.hold_until, Fulfilment.id),
        rules.Tab.OVERDUE: (func.coalesce(Fulfilment.hold_until, Fulfilment.promised_at), Fulfilment.id),
        rules.Tab.COLLECTED_TODAY: (Fulfilment.collected_at.desc(), Fulfilment.id),
    }[tab]
    found = list(session.scalars(
        select(Fulfilment).where(base, _tab_filter(tab, now, day_start)).order_by(*order_by).limit(limit)
    ))  # fmt: skip
    items = _views(session, found, loc, now, day_start, max_tries)
    return QueueView(loc.code, tab.value, QueueCountsView(**counts), items, counts[tab.value])


def _views(
    session: Session, found: list[Fulfilment], loc: Location, now: datetime, day_start: datetime, max_tries: int
) -> list[PickupView]:
    if not found:
        return []
    ids = [f.id for f in found]
    who = {oid: (ref, name) for oid, ref, name in session.execute(
        select(Order.id, Order.customer_ref, Order.customer_name).where(Order.id.in_({f.order_id for f in found}))
    ).tuples()}  # fmt: skip
    lines: dict[int, list[PickupLineView]] = {}
    for fl, code, name, bin_ in session.execute(
        select(FulfilmentLine, Sku.code, Sku.name, SkuBin.bin)
        .join(Sku, Sku.id == FulfilmentLine.sku_id)
        .outerjoin(SkuBin, and_(SkuBin.sku_id == FulfilmentLine.sku_id, SkuBin.location_id == loc.id))
        .where(FulfilmentLine.fulfilment_id.in_(ids))
        .order_by(FulfilmentLine.fulfilment_id, SkuBin.bin, Sku.code)
    ).tuples():  # fmt: skip
        lines.setdefault(fl.fulfilment_id, []).append(
            PickupLineView(code, name, bin_, fl.qty, fl.reserved, fl.awaiting, fl.done, fl.cancelled)
        )
    return [
        PickupView(
            id=f.id, order_id=f.order_id, location=loc.code, status=f.status,
            tab=_tab(f, now, day_start), customer_ref=who[f.order_id][0],
            customer_name=who[f.order_id][1], at_risk=f.at_risk, promised_at=f.promised_at,
            ready_at=f.ready_at, hold_until=f.hold_until, collected_at=f.collected_at,
            locked_until=f.locked_until if rules.is_locked(f.locked_until, now) else None,
            tries_left=max_tries - f.code_tries, created_at=f.created_at, lines=lines.get(f.id, []),
        )
        for f in found
    ]


def _tab(f: Fulfilment, now: datetime, day_start: datetime) -> str | None:
    tab = rules.tab_of(f.status, f.promised_at, f.hold_until, f.collected_at, now, day_start)
    return tab.value if tab else None


def pickup(session: Session, fid: int, now: datetime, *, scope: Scope | None = None, max_tries: int = 5) -> PickupView:
    """One pickup with its lines, bins and customer; staff only at their own stores."""
    f = session.get(Fulfilment, fid)
    if f is None or f.type != "pickup":
        raise NotFound(f"no pickup {fid}", fulfilment_id=fid)
    if scope is not None:
        scope.require(f.location_id)
    loc = session.get_one(Location, f.location_id)
    return _views(session, [f], loc, now, rules.local_day_start(now, loc.timezone), max_tries)[0]


def find(session: Session, raw: str, *, scope: Scope | None = None) -> int:
    """The pickup a scanner's input names: a pickup barcode, or an order number with a pickup at
    the caller's stores; 404 when none (another store's pickup is not found either)."""
    scanned = rules.parse_scan(raw)
    if scanned is None:
        raise NotFound("not an order number or pickup code", scanned=raw[:64])
    stmt = select(Fulfilment.id, Fulfilment.location_id).where(Fulfilment.type == "pickup")
    if scanned.fulfilment_id is not None:
        stmt = stmt.where(Fulfilment.id == scanned.fulfilment_id)
    else:
        stmt = stmt.where(Fulfilment.order_id == scanned.order_id)
    for fid, loc_id in session.execute(stmt.order_by(Fulfilment.id)).tuples():
        if scope is None or loc_id in scope:
            return int(fid)
    raise NotFound(f"no pickup {raw.strip()[:64]} at your store", scanned=raw[:64])

