"""The pickup clock: a ready pickup gets one reminder before its hold deadline, and past the
deadline it expires (a no-show) and its units go back to available stock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import fulfilment as lifecycle
from app.domain.fulfilment import Status
from app.models import Fulfilment, Location, Order
from app.services import events
from app.services.orders.lifecycle import transition
from app.services.orders.rows import fulfilment_event

_READY = Status.READY_FOR_PICKUP.value


@dataclass(frozen=True)
class ClockRun:
    reminded: int
    expired: int


def remind_and_expire(session: Session, now: datetime, *, batch: int = 500) -> ClockRun:
    """Send due reminders, then expire what is past its deadline (a batch of each per call)."""
    return ClockRun(_remind(session, now, batch), _expire(session, now, batch))


def _remind(session: Session, now: datetime, batch: int) -> int:
    sent = 0
    stores = session.execute(
        select(Location.id, Location.code, Location.pickup_reminder_hours).where(Location.pickup_reminder_hours > 0)
    ).tuples().all()  # fmt: skip
    for loc_id, code, hours in stores:
        due = session.execute(
            select(Fulfilment, Order.customer_ref, Order.customer_name)
            .join(Order, Order.id == Fulfilment.order_id)
            .where(Fulfilment.location_id == loc_id, Fulfilment.status == _READY, Fulfilment.reminded_at.is_(None),
                   Fulfilment.hold_until > now, Fulfilment.hold_until <= now + timedelta(hours=hours))
            .order_by(Fulfilment.hold_until, Fulfilment.id)
            .limit(batch - sent)
            # Another runner (or the counter) holding one: it is reminded next time if still due.
            .with_for_update(skip_locked=True, of=Fulfilment)
        ).tuples().all()  # fmt: skip
        for f, customer_ref, customer_name in due:
            f.reminded_at = now
            events.emit(session, [fulfilment_event(f, "fulfilment.pickup_reminder", location=code,
                                                   customer_ref=customer_ref, customer_name=customer_name,
                                                   hold_until=f.hold_until.isoformat() if f.hold_until else None)], now)  # fmt: skip
        sent += len(due)
        if sent >= batch:
            break
    return sent


def _expire(session: Session, now: datetime, batch: int) -> int:
    ids = list(session.scalars(
        select(Fulfilment.id).where(Fulfilment.status == _READY, Fulfilment.hold_until <= now)
        .order_by(Fulfilment.hold_until, Fulfilment.id).limit(batch)
    ))  # fmt: skip
    done = 0
    for fid in ids:
        try:
            with session.begin_nested():
                transition(session, fid, Status.EXPIRED, kind="pickup", now=now)
            done += 1
        except lifecycle.InvalidTransition:
            continue  # collected or cancelled meanwhile
    return done
