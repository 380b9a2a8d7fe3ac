"""A pickup's promised ready time: pick time inside the store's opening hours, after any transfer
into the store has arrived. Set when the order is placed and again when a shortage re-routes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import pickup as rules
from app.domain.fulfilment import Status
from app.models import Fulfilment, Location

_ON_THE_WAY = (Status.ALLOCATED.value, Status.PICKING.value, Status.SHIPPED.value)


@dataclass(frozen=True)
class StoreClock:
    """What a store's promises depend on."""

    pick_minutes: int
    opening_hours: rules.OpeningHours | None
    timezone: str
    transfer_hours: int

    def ready_by(self, now: datetime, arrives_at: datetime | None = None) -> datetime:
        return rules.promised_ready(now, self.pick_minutes, self.opening_hours, self.timezone, arrives_at)


def store_clock(session: Session, location_id: int) -> StoreClock:
    loc = session.get(Location, location_id)
    if loc is None:
        raise LookupError(location_id)
    return StoreClock(loc.pick_minutes, loc.opening_hours, loc.timezone, loc.transfer_hours)


def ready_by(session: Session, location_id: int, now: datetime, *, with_transfer: bool) -> datetime:
    """When a pickup placed now at this store will be ready (a transfer first travels to it)."""
    clock = store_clock(session, location_id)
    arrives = now + timedelta(hours=clock.transfer_hours) if with_transfer else None
    return clock.ready_by(now, arrives)


def refresh(session: Session, pickup: Fulfilment, now: datetime) -> datetime | None:
    """Re-promise an open pickup after its sourcing changed: the latest transfer still feeding it
    sets the arrival; a promise never moves earlier than the one the customer was given."""
    if pickup.type != "pickup" or pickup.status not in (Status.ALLOCATED.value, Status.PICKING.value):
        return pickup.promised_at
    clock = store_clock(session, pickup.location_id)
    latest = session.scalar(
        select(Fulfilment.created_at)
        .where(Fulfilment.feeds_fulfilment_id == pickup.id, Fulfilment.status.in_(_ON_THE_WAY))
        .order_by(Fulfilment.created_at.desc())
        .limit(1)
    )
    arrives = latest + timedelta(hours=clock.transfer_hours) if latest is not None else None
    promised = clock.ready_by(pickup.created_at, arrives)
    if pickup.promised_at is None or promised > pickup.promised_at:
        pickup.promised_at = promised
        pickup.updated_at = now
    return pickup.promised_at
