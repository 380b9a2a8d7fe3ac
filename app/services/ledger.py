"""Writing the ledger: movement rows and the stock-level projection, always together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from app.db import Raw, insert_for, is_sqlite, utcnow
from app.db.dialect import keys_in
from app.domain.ledger import Deltas, Kind
from app.models import Movement, StockLevel

Key = tuple[int, int]  # (sku_id, location_id)


@dataclass
class Leg:
    """One movement row to write."""

    kind: Kind
    sku_id: int
    location_id: int
    qty: int
    deltas: Deltas
    source: str = "omnistock"
    external_ref: str | None = None
    leg: int = 0
    reason: str | None = None
    occurred_at: datetime | None = None
    order_id: int | None = None
    fulfilment_id: int | None = None
    sync_run_id: int | None = None
    api_key_id: int | None = None
    note: str | None = None
    vendor_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.sku_id, self.location_id)


@dataclass
class LockedLevel:
    on_hand: int
    reserved: int
    incoming: int
    safety_stock: int | None


def ensure_levels(session: Session, keys: Iterable[Key]) -> None:
    """Create missing stock-level rows (zero) so every later update has a row to lock."""
    rows = [{"sku_id": s, "location_id": loc} for s, loc in sorted(set(keys))]
    if not rows:
        return
    stmt = insert_for(session, StockLevel).on_conflict_do_nothing()
    for start in range(0, len(rows), 2000):
        session.execute(stmt, rows[start : start + 2000])


def lock_levels(session: Session, keys: Iterable[Key]) -> dict[Key, LockedLevel]:
    """Lock the rows in (sku, location) order; a stable order is what prevents deadlocks."""
    wanted = sorted(set(keys))
    out: dict[Key, LockedLevel] = {}
    if not wanted:
        return out
    # A few keys (an order's lines) keep the plain IN list the planner likes best.
    match = (
        tuple_(StockLevel.sku_id, StockLevel.location_id).in_(wanted)
        if len(wanted) <= 50
        else keys_in(session, StockLevel.sku_id, StockLevel.location_id, wanted)
    )
    stmt = (
        select(
            StockLevel.sku_id,
            StockLevel.location_id,
            StockLevel.on_hand,
            StockLevel.reserved,
            StockLevel.incoming,
            StockLevel.safety_stock,
        )
        .where(match)
        .order_by(StockLevel.sku_id, StockLevel.location_id)
        .with_for_update()
    )
    for sku_id, loc_id, on_hand, reserved, incoming, safety in session.execute(stmt):
        out[(sku_id, loc_id)] = LockedLevel(on_hand, reserved, incoming, safety)
    return out


_apply_deltas = (
    update(StockLevel)
    .where(StockLevel.sku_id == bindparam("k_sku"), StockLevel.location_id == bindparam("k_loc"))
    .values(
        on_hand=StockLevel.on_hand + bindparam("d_on_hand"),
        reserved=StockLevel.reserved + bindparam("d_reserved"),
        incoming=StockLevel.incoming + bindparam("d_incoming"),
        updated_at=bindparam("now"),
    )
)


def apply_deltas(session: Session, totals: dict[Key, Deltas], now: datetime) -> None:
    """Add each key's summed deltas to its level, in key order, in one round trip."""
    params = [
        {
            "k_sku": k[0],
            "k_loc": k[1],
            "d_on_hand": d.on_hand,
            "d_reserved": d.reserved,
            "d_incoming": d.incoming,
            "now": now,
        }
        for k, d in sorted(totals.items())
        if not d.is_zero
    ]
    if params:
        session.connection().execute(_apply_deltas, params)


_INSERT_MOVEMENTS = insert(Movement).returning(Movement.id, sort_by_parameter_order=True)
MOVEMENT_COLUMNS = (
    "kind", "sku_id", "location_id", "qty", "on_hand_delta", "reserved_delta", "incoming_delta",
    "reason", "source", "external_ref", "leg", "occurred_at", "recorded_at", "order_id",
    "fulfilment_id", "sync_run_id", "api_key_id", "note", "vendor_at",
)  # fmt: skip


def movement_rows(legs: Sequence[Leg], now: datetime) -> list[tuple[Any, ...]]:
    """The legs as movement rows in MOVEMENT_COLUMNS order."""
    return [
        (str(leg.kind), leg.sku_id, leg.location_id, leg.qty, leg.deltas.on_hand, leg.deltas.reserved,
         leg.deltas.incoming, leg.reason, leg.source, leg.external_ref, leg.leg, leg.occurred_at or now,
         now, leg.order_id, leg.fulfilment_id, leg.sync_run_id, leg.api_key_id, leg.note, leg.vendor_at)
        for leg in legs
    ]  # fmt: skip


def insert_movements(
    session: Session, legs: Sequence[Leg], now: datetime | None = None, *, ids: bool = False
) -> list[int]:
    """Append the movement rows; with ids=True returns their ids in the order given."""
    if not legs:
        return []
    now = now or utcnow()
    if any(leg.kind == Kind.FULFILMENT for leg in legs):
        from app.services.sync import outbound  # a POS that feeds this store is owed the sale

        outbound.capture(session, legs, now)
    if not ids:
        Raw.of(session).insert("movements", MOVEMENT_COLUMNS, movement_rows(legs, now))
        return []
    rows = [dict(zip(MOVEMENT_COLUMNS, row, strict=True)) for row in movement_rows(legs, now)]
    return list(session.connection().execute(_INSERT_MOVEMENTS, rows).scalars())


def totals_by_key(legs: Iterable[Leg]) -> dict[Key, Deltas]:
    """What a set of legs moves, summed per (sku, location)."""
    totals: dict[Key, Deltas] = {}
    for leg in legs:
        totals[leg.key] = totals.get(leg.key, Deltas()) + leg.deltas
    return totals


def record(session: Session, legs: Sequence[Leg], now: datetime | None = None) -> dict[Key, Deltas]:
    """Write movements and move the projection by the same amounts, in one transaction."""
    now = now or utcnow()
    totals = totals_by_key(legs)
    ensure_levels(session, totals)
    apply_deltas(session, totals, now)
    insert_movements(session, legs, now)
    return totals


@dataclass(frozen=True)
class Mismatch:
    sku_id: int
    location_id: int
    projected: Deltas
    from_ledger: Deltas


def _ledger_sums(session: Session) -> dict[Key, Deltas]:
    stmt = select(
        Movement.sku_id,
        Movement.location_id,
        func.sum(Movement.on_hand_delta),
        func.sum(Movement.reserved_delta),
        func.sum(Movement.incoming_delta),
    ).group_by(Movement.sku_id, Movement.location_id)
    return {(s, loc): Deltas(int(a), int(b), int(c)) for s, loc, a, b, c in session.execute(stmt)}


def verify(session: Session) -> list[Mismatch]:
    """Every (SKU, location) whose stock level differs from the sum of its movements."""
    sums = _ledger_sums(session)
    levels = {
        (s, loc): Deltas(a, b, c)
        for s, loc, a, b, c in session.execute(
            select(
                StockLevel.sku_id,
                StockLevel.location_id,
                StockLevel.on_hand,
                StockLevel.reserved,
                StockLevel.incoming,
            )
        )
    }
    out = []
    for key in sorted(sums.keys() | levels.keys()):
        projected = levels.get(key, Deltas())
        expected = sums.get(key, Deltas())
        if projected != expected:
            out.append(Mismatch(key[0], key[1], projected, expected))
    return out


def rebuild(session: Session) -> list[Mismatch]:
    """Set every stock level to the sum of its movements; returns what it repaired."""
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        # Writers wait while the projection is recomputed; readers carry on.
        session.execute(text("LOCK TABLE stock_levels, movements IN SHARE ROW EXCLUSIVE MODE"))
    repaired = verify(session)
    ensure_levels(session, [(m.sku_id, m.location_id) for m in repaired])
    now = utcnow()
    for m in repaired:
        session.execute(
            update(StockLevel)
            .where(StockLevel.sku_id == m.sku_id, StockLevel.location_id == m.location_id)
            .values(
                on_hand=m.from_ledger.on_hand,
                reserved=m.from_ledger.reserved,
                incoming=m.from_ledger.incoming,
                updated_at=now,
            )
        )
    return repaired
