"""Returns: delivered units taken back at a location, restocked when resellable; replays answer once."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain import events as ev
from app.domain.access import Scope
from app.domain.errors import IdempotencyConflict, InvalidInput
from app.domain.ledger import Deltas, Kind
from app.models import Fulfilment, FulfilmentLine, Location, Movement, OrderLine
from app.services import events
from app.services.ledger import Leg
from app.services.orders.lifecycle import move
from app.services.orders.queries import get_order
from app.services.orders.refs import sku_ids
from app.services.orders.rows import order_row
from app.services.orders.views import OrderView


def record_return(
    session: Session, order_id: int, *, location: str, lines: Sequence[tuple[str, int, bool]],
    external_ref: str | None = None, scope: Scope | None = None,
) -> OrderView:  # fmt: skip
    """Put delivered units back at a chosen location (restocked only if resellable); staff only at theirs."""
    now = utcnow()
    order_row(session, order_id, lock=True)
    loc = session.scalar(select(Location).where(Location.code == location))
    if loc is None:
        raise InvalidInput(
            "unknown location",
            [{"field": "location", "message": f"unknown location {location!r}"}],
            "unknown_location",
        )
    if scope is not None:
        scope.require(loc.id, location)
    ids = sku_ids(session, [s for s, _, _ in lines])
    if external_ref is not None:
        # The same return sent again (a retry) answers as the first time; other content under
        # that reference is refused rather than counted.
        sent = sorted((ids[s], loc.id, q, "resellable" if r else "not_resellable") for s, q, r in lines)
        prefix = f"{external_ref}:"
        prior = sorted(
            (sku_id, loc_id, qty, reason) for ref, sku_id, loc_id, qty, reason in session.execute(
                select(Movement.external_ref, Movement.sku_id, Movement.location_id, Movement.qty, Movement.reason)
                .where(Movement.order_id == order_id, Movement.source == "returns",
                       Movement.external_ref.startswith(prefix, autoescape=True))
            ).tuples()
            # Exactly this reference's lines ("ref:0", "ref:1"...), not another's that starts alike.
            if ref is not None and ref[len(prefix):].isdigit()
        )  # fmt: skip
        if prior:
            if prior != sent:
                raise IdempotencyConflict(
                    "a return under this external_ref was recorded with other lines",
                    external_ref=external_ref,
                )
            return get_order(session, order_id)
    delivered: dict[int, int] = {}
    for sku_id, done in session.execute(
        select(FulfilmentLine.sku_id, FulfilmentLine.done)
        .join(Fulfilment, Fulfilment.id == FulfilmentLine.fulfilment_id)
        .where(Fulfilment.order_id == order_id, Fulfilment.type != "transfer")
    ).tuples():  # fmt: skip
        delivered[sku_id] = delivered.get(sku_id, 0) + done
    order_lines = {
        ln.sku_id: ln
        for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order_id).with_for_update())
    }
    errors = []
    legs = []
    for i, (sku, qty, resellable) in enumerate(lines):
        ol = order_lines.get(ids[sku])
        can = delivered.get(ids[sku], 0) - (ol.returned if ol else 0)
        if ol is None or qty > can:
            errors.append(
                {
                    "field": f"lines[{i}].qty",
                    "message": f"{max(can, 0)} of {sku} delivered and not yet returned",
                }
            )
            continue
        ol.returned += qty
        legs.append(Leg(Kind.RETURN, ids[sku], loc.id, qty, Deltas(on_hand=qty if resellable else 0),
                        reason="resellable" if resellable else "not_resellable", order_id=order_id,
                        source="returns" if external_ref else "omnistock",
                        external_ref=f"{external_ref}:{i}" if external_ref else None))  # fmt: skip
    if errors:
        raise InvalidInput("cannot return those units", errors, "cannot_return")
    try:
        move(session, legs, now)
    except exc.IntegrityError as error:
        raise IdempotencyConflict("this return was already recorded", external_ref=external_ref) from error
    events.emit(session, [ev.order_returned(order_id, location, lines)], now)
    session.flush()
    return get_order(session, order_id)
