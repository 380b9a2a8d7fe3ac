"""Cancelling an order: all of it, or some units of some lines; released units are available again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain import events as ev
from app.domain import fulfilment as lifecycle
from app.domain import fulfilment_lines as units
from app.domain.errors import InvalidInput
from app.domain.fulfilment import Status
from app.models import Fulfilment, OrderLine
from app.services import events
from app.services.ledger import Leg
from app.services.orders.lifecycle import (
    count_cancelled,
    move,
    refresh_order_status,
    release,
    shrink_transfers,
)
from app.services.orders.queries import get_order
from app.services.orders.refs import sku_ids
from app.services.orders.rows import fulfilment_event, give_back, locked_lines, order_row
from app.services.orders.views import OrderView


class _Cancel:
    """One cancellation in progress: the locked order's fulfilments and lines, and what it writes."""

    def __init__(self, session: Session, order_id: int, now: datetime) -> None:
        self.session, self.order_id, self.now = session, order_id, now
        self.order = order_row(session, order_id, lock=True)
        self.fulfilments = list(session.scalars(select(Fulfilment).where(Fulfilment.order_id == order_id)
                                                .order_by(Fulfilment.id).with_for_update()))  # fmt: skip
        self.lines = {
            ln.sku_id: ln for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
        }
        self.legs: list[Leg] = []
        self.events: list[ev.Event] = []

    def open_customer_fulfilments(self) -> list[Fulfilment]:
        # Transfers are cancelled through the pickup they feed, never on their own.
        return [f for f in self.fulfilments if lifecycle.is_open(f.status) and f.type != "transfer"]

    def close(self, f: Fulfilment) -> None:
        self.legs += release(self.session, f, locked_lines(self.session, f.id), self.now)
        f.status, f.updated_at = Status.CANCELLED.value, self.now
        self.events.append(fulfilment_event(f, "fulfilment.cancelled"))

    def everything(self) -> None:
        if not self.open_customer_fulfilments() and not any(ln.backordered for ln in self.lines.values()):
            raise lifecycle.InvalidTransition("nothing left to cancel in this order", order_status=self.order.status)
        for f in self.open_customer_fulfilments():
            count_cancelled(self.session, f, locked_lines(self.session, f.id))
            self.close(f)
        for ln in self.lines.values():
            ln.cancelled += ln.backordered
            ln.backordered = 0
        self.events.append(ev.order_cancelled(self.order_id))

    def some(self, lines: Sequence[tuple[str, int]]) -> None:
        ids = sku_ids(self.session, [s for s, _ in lines])
        errors = []
        for i, (sku, qty) in enumerate(lines):
            ol = self.lines.get(ids[sku])
            if ol is None:
                errors.append({"field": f"lines[{i}].sku", "message": f"{sku} is not in this order"})
                continue
            left = self.units_of_line(ol, qty)
            if left:
                errors.append({"field": f"lines[{i}].qty", "message": f"only {qty - left} of {sku} can still be cancelled"})  # fmt: skip
        if errors:
            raise InvalidInput("cannot cancel those units", errors, "cannot_cancel")
        for f in self.open_customer_fulfilments():
            if all(units.settled(fl) for fl in locked_lines(self.session, f.id)):
                self.close(f)
        self.events.append(ev.lines_cancelled(self.order_id, lines))

    def units_of_line(self, ol: OrderLine, qty: int) -> int:
        """Cancel qty of a line: back-ordered units first, then awaited, then reserved; returns
        what could not be cancelled."""
        from_backorder = min(qty, ol.backordered)
        ol.backordered -= from_backorder
        ol.cancelled += from_backorder
        left = qty - from_backorder
        for f in self.open_customer_fulfilments():
            for fl in locked_lines(self.session, f.id):
                if left == 0:
                    break
                if fl.sku_id != ol.sku_id:
                    continue
                awaited = units.cancel_awaited(fl, left)
                if awaited:
                    more_legs, more_events = shrink_transfers(self.session, f, fl.sku_id, awaited, self.now)
                    self.legs += more_legs
                    self.events += more_events
                reserved = units.cancel_reserved(fl, left - awaited)
                if reserved:
                    self.legs += give_back(f, fl.sku_id, reserved)
                left -= awaited + reserved
        ol.cancelled += qty - from_backorder - left
        return left


def cancel_order(session: Session, order_id: int, lines: Sequence[tuple[str, int]] | None = None) -> OrderView:
    """Cancel a whole order, or some units of some lines; released units return to available."""
    now = utcnow()
    cancel = _Cancel(session, order_id, now)
    if lines is None:
        cancel.everything()
    else:
        cancel.some(lines)
    move(session, cancel.legs, now)
    events.emit(session, cancel.events, now)
    session.flush()
    if refresh_order_status(session, order_id, now) == "cancelled" and lines is not None:
        # The lines cancelled were all that was left: the order itself is now cancelled.
        events.emit(session, [ev.order_cancelled(order_id)], now)
    session.flush()
    session.expire_all()
    return get_order(session, order_id)
