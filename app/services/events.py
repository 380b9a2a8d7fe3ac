"""The outbox: events written in the transaction that caused them, delivered later by a job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from app.db import Raw, utcnow
from app.db.dialect import keys_in
from app.domain import ledger
from app.domain.events import EVENT_TYPES as EVENT_TYPES  # the catalogue is the domain's
from app.domain.events import ORDER_EVENTS as ORDER_EVENTS
from app.domain.events import STOCK_EVENTS as STOCK_EVENTS
from app.domain.events import Event, stock_crossed
from app.domain.ledger import Deltas
from app.models import Channel, ChannelLocation, Location, Sku, StockLevel

OUTBOX_COLUMNS = ("type", "order_id", "fulfilment_id", "payload", "created_at")


def outbox_rows(events: Iterable[Event], now: datetime) -> list[tuple[Any, ...]]:
    """Events as outbox rows in OUTBOX_COLUMNS order."""
    return [(e.type, e.order_id, e.fulfilment_id, dict(e.payload), now) for e in events]


def emit(session: Session, events: Iterable[Event], now: datetime | None = None) -> None:
    """Append events to the outbox, in the caller's transaction."""
    Raw.of(session).insert("outbox_events", OUTBOX_COLUMNS, outbox_rows(events, now or utcnow()))


@dataclass(frozen=True)
class LevelRow:
    """A stock level as a transaction left it, with its location's default safety stock."""

    sku_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int | None
    default_safety: int


def _levels_after(session: Session, keys: Sequence[tuple[int, int]]) -> list[LevelRow]:
    stmt = (
        select(
            StockLevel.sku_id, StockLevel.location_id, StockLevel.on_hand, StockLevel.reserved,
            StockLevel.safety_stock, Location.default_safety_stock,
        )
        .join(Location, Location.id == StockLevel.location_id)
        .where(
            tuple_(StockLevel.sku_id, StockLevel.location_id).in_(sorted(keys))
            if len(keys) <= 50
            else keys_in(session, StockLevel.sku_id, StockLevel.location_id, keys)
        )
    )  # fmt: skip
    return [LevelRow(*row) for row in session.execute(stmt)]


def stock_transitions(
    session: Session,
    changed: Mapping[tuple[int, int], Deltas],
    now: datetime | None = None,
    *,
    emit_now: bool = True,
    after: Sequence[LevelRow] | None = None,
) -> list[Event]:
    """Emit out_of_stock / back_in_stock where this transaction moved availability across zero.

    Emits them (or, with emit_now=False, returns them for the caller to emit with its own).
    Called after the levels were updated in this transaction: the rows are locked by our own
    update, so after-minus-deltas is exactly the state before it, whatever else runs concurrently.
    `after` saves the read when the caller already has the rows as left (from RETURNING).
    """
    keys = [k for k, d in changed.items() if d.on_hand or d.reserved]
    if not keys:
        return []
    if after is None:
        # Exactly the keys moved: an IN over skus and one over locations read their cross product.
        after = _levels_after(session, keys)
    crossings: list[tuple[int, int, str, int]] = []  # sku, loc, kind ("online"/"store"), available
    for row in after:
        d = changed.get((row.sku_id, row.location_id))
        if d is None:
            continue
        safety = ledger.safety_for(row.safety_stock, row.default_safety)
        level_after = ledger.Level(row.on_hand, row.reserved, 0, safety)
        before = ledger.Level(row.on_hand - d.on_hand, row.reserved - d.reserved, 0, safety)
        for kind, online in (("online", True), ("store", False)):
            was, now_ = ledger.available(before, online=online), ledger.available(level_after, online=online)
            if (was > 0) != (now_ > 0):
                crossings.append((row.sku_id, row.location_id, kind, now_))
    if not crossings:
        return []
    serving = session.execute(
        select(ChannelLocation.location_id, Channel.code, Channel.kind, Location.code)
        .join(Channel, Channel.id == ChannelLocation.channel_id)
        .join(Location, Location.id == ChannelLocation.location_id)
        .where(ChannelLocation.location_id.in_({c[1] for c in crossings}))
    ).all()
    sku_codes = dict(
        session.execute(select(Sku.id, Sku.code).where(Sku.id.in_({c[0] for c in crossings}))).tuples().all()
    )
    events: list[Event] = []
    for sku_id, loc_id, kind, available in crossings:
        for serving_loc, channel, channel_kind, loc_code in serving:
            if serving_loc != loc_id or channel_kind != kind:
                continue
            events.append(stock_crossed(sku_codes[sku_id], loc_code, channel, available))
    if emit_now:
        emit(session, events, now)
    return events
