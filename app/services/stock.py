"""Stock use cases: post movement batches, read levels, availability and ledger history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import Retry, after_commit, utcnow
from app.domain import ledger
from app.domain.errors import (
    IdempotencyConflict,
    InvalidInput,
    StockConflict,
)
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.models import Fulfilment, FulfilmentLine, Location, Movement, Sku, StockLevel
from app.observability import LEDGER_MOVEMENTS
from app.services import catalog, events, orders, stock_reads
from app.services import shortages as shortages_
from app.services.ledger import Leg, apply_deltas, ensure_levels, insert_movements, lock_levels, totals_by_key

# The first leg's stored kind for each kind the API accepts; idempotent replays compare on it.
FIRST_LEG_KIND = {
    "receipt": Kind.RECEIPT,
    "sale": Kind.SALE,
    "adjustment": Kind.ADJUSTMENT,
    "count": Kind.COUNT_ADJUSTMENT,
    "return": Kind.RETURN,
    "transfer": Kind.TRANSFER_OUT,
    "transfer_in": Kind.TRANSFER_IN,
}


@dataclass(slots=True)
class MovementResult:
    """What became of one movement of a batch: applied (with its ledger rows) or a replay."""

    index: int
    status: str  # applied | duplicate
    movement_ids: list[int]


@dataclass
class BatchResult:
    applied: int
    duplicates: int
    results: list[MovementResult]
    shortages: list[shortages_.Shortage]


def _resolve(session: Session, movements: Sequence[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    sku_codes = {m["sku"] for m in movements}
    loc_codes = {m["location"] for m in movements} | {
        m["to_location"] for m in movements if m.get("to_location")
    }
    skus = dict(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_(sku_codes))).tuples().all())
    locs = dict(
        session.execute(select(Location.code, Location.id).where(Location.code.in_(loc_codes))).tuples().all()
    )
    errors = []
    for i, m in enumerate(movements):
        if m["sku"] not in skus:
            errors.append({"field": f"movements[{i}].sku", "message": f"unknown SKU {m['sku']!r}"})
        for f in ("location", "to_location"):
            if m.get(f) and m[f] not in locs:
                errors.append({"field": f"movements[{i}].{f}", "message": f"unknown location {m[f]!r}"})
    if errors:
        raise InvalidInput(
            f"{len(errors)} movement(s) name unknown SKUs or locations", errors, "unknown_reference"
        )
    return skus, locs


def _check_batch_duplicates(movements: Sequence[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], int] = {}
    errors = []
    for i, m in enumerate(movements):
        if m.get("external_ref") is None:
            continue
        key = (m["source"], m["external_ref"])
        if key in seen:
            errors.append(
                {
                    "field": f"movements[{i}].external_ref",
                    "message": f"same source and external_ref as movements[{seen[key]}]",
                }
            )
        seen[key] = i
    if errors:
        raise InvalidInput("a batch names each outside fact once", errors)


def _existing(
    session: Session, movements: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], tuple[int, str, int, int, int]]:
    refs = sorted({(m["source"], m["external_ref"]) for m in movements if m.get("external_ref")})
    found: dict[tuple[str, str], tuple[int, str, int, int, int]] = {}
    for start in range(0, len(refs), 400):
        part = refs[start : start + 400]
        rows = session.execute(
            select(
                Movement.source, Movement.external_ref, Movement.id, Movement.kind,
                Movement.sku_id, Movement.location_id, Movement.qty,
            ).where(tuple_(Movement.source, Movement.external_ref).in_(part), Movement.leg == 0)
        )  # fmt: skip
        for source, ref, mid, kind, sku_id, loc_id, qty in rows:
            found[(source, ref)] = (mid, kind, sku_id, loc_id, qty)
    return found


# A transfer holds its units at the sender until shipped (reserved), then carries them (done).
_TRAVELLING = (Status.ALLOCATED.value, Status.PICKING.value, Status.SHIPPED.value)


def earmarked_incoming(session: Session, keys: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Incoming units an order's transfer brings to a store (allocated, picked or on the road, not
    yet received), by (SKU, destination): they are the pickup's, never free stock."""
    if not keys:
        return {}
    rows = session.execute(
        select(FulfilmentLine.sku_id, Fulfilment.to_location_id,
               func.sum(FulfilmentLine.reserved + FulfilmentLine.done))
        .join(Fulfilment, Fulfilment.id == FulfilmentLine.fulfilment_id)
        .where(Fulfilment.type == "transfer", Fulfilment.status.in_(_TRAVELLING),
               tuple_(FulfilmentLine.sku_id, Fulfilment.to_location_id).in_(sorted(keys)))
        .group_by(FulfilmentLine.sku_id, Fulfilment.to_location_id)
    ).tuples()  # fmt: skip
    return {(sku_id, loc_id): int(n or 0) for sku_id, loc_id, n in rows if loc_id is not None}


def _transfer_in_refusal(qty: int, incoming: int, earmarked: int, location: str) -> str:
    if not earmarked:
        return (f"{qty} received but only {incoming} in transit to {location}; "
                "record a receipt for units not sent by transfer")  # fmt: skip
    return (f"{qty} received but only {max(incoming - earmarked, 0)} of the {incoming} in transit to "
            f"{location} were sent by a stock transfer; the other {earmarked} come by an order's transfer "
            "for a pickup, which is received through that fulfilment")  # fmt: skip


_TAKING = frozenset({"sale", "count", "transfer"})  # kinds that can lower on_hand (and adjustment < 0)


def post_movements(
    session: Session,
    movements: Sequence[dict[str, Any]],
    *,
    api_key_id: int | None = None,
    now: datetime | None = None,
    policy: orders.Policy | None = None,
) -> BatchResult:
    """Apply a batch of outside stock facts all-or-nothing; a replayed fact is not counted again."""
    now = now or utcnow()
    skus, locs = _resolve(session, movements)
    _check_batch_duplicates(movements)

    def key(m: dict[str, Any], loc_field: str = "location") -> tuple[int, int]:
        return (skus[m["sku"]], locs[m[loc_field]])

    keys = {key(m) for m in movements} | {key(m, "to_location") for m in movements if m["kind"] == "transfer"}
    ensure_levels(session, keys)
    # Facts that take stock may leave promises short: their orders are locked before stock.
    taking = {
        key(m) for m in movements if m["kind"] in _TAKING or (m["kind"] == "adjustment" and m["qty"] < 0)
    }
    shortages_.lock_promises(session, sorted(taking))
    # Lock before the replay check: a concurrent copy of this batch then waits for our commit
    # and sees our rows as duplicates instead of racing us to the unique constraint.
    levels = lock_levels(session, keys)
    existing = _existing(session, movements)
    earmarked = earmarked_incoming(session, {key(m) for m in movements if m["kind"] == "transfer_in"})

    results: list[MovementResult] = []
    legs: list[Leg] = []
    owners: list[int] = []  # index of the movement each leg belongs to
    errors: list[dict[str, str]] = []
    conflicts: list[dict[str, str]] = []
    for i, m in enumerate(movements):
        k = key(m)
        prior = existing.get((m["source"], m["external_ref"])) if m.get("external_ref") else None
        if prior is not None:
            mid, kind, sku_id, loc_id, qty = prior
            if (kind, sku_id, loc_id, qty) != (str(FIRST_LEG_KIND[m["kind"]]), k[0], k[1], m["qty"]):
                conflicts.append(
                    {
                        "field": f"movements[{i}].external_ref",
                        "message": f"{m['source']}/{m['external_ref']} was recorded as movement "
                        f"{mid} with different content",
                    }
                )
            results.append(MovementResult(i, "duplicate", [mid]))
            continue
        common = {
            "source": m["source"],
            "external_ref": m.get("external_ref"),
            "occurred_at": m.get("occurred_at") or now,
            "api_key_id": api_key_id,
            "note": m.get("note"),
        }
        level = levels[k]
        qty = m["qty"]
        new_legs: list[Leg] = []
        match m["kind"]:
            case "receipt" | "sale":
                kind = Kind(m["kind"])
                new_legs.append(
                    Leg(kind, *k, qty, ledger.deltas_for(kind, qty), reason=m.get("reason"), **common)
                )
            case "adjustment":
                new_legs.append(
                    Leg(
                        Kind.ADJUSTMENT,
                        *k,
                        qty,
                        ledger.deltas_for(Kind.ADJUSTMENT, qty),
                        reason=m["reason"],
                        **common,
                    )
                )
            case "count":
                # A count is absolute: its delta is against the level as locked now.
                d = Deltas(on_hand=qty - level.on_hand)
                new_legs.append(
                    Leg(Kind.COUNT_ADJUSTMENT, *k, qty, d, reason=m.get("reason") or "count", **common)
                )
            case "return":
                resellable = m.get("resellable", True)
                new_legs.append(
                    Leg(
                        Kind.RETURN,
                        *k,
                        qty,
                        ledger.deltas_for(Kind.RETURN, qty, resellable=resellable),
                        reason=m.get("reason") or ("resellable" if resellable else "not_resellable"),
                        **common,
                    )
                )
            case "transfer":
                to = key(m, "to_location")
                new_legs.append(
                    Leg(
                        Kind.TRANSFER_OUT,
                        *k,
                        qty,
                        ledger.deltas_for(Kind.TRANSFER_OUT, qty),
                        reason=m.get("reason"),
                        **common,
                    )
                )
                new_legs.append(
                    Leg(
                        Kind.TRANSFER_EXPECTED,
                        *to,
                        qty,
                        ledger.deltas_for(Kind.TRANSFER_EXPECTED, qty),
                        leg=1,
                        reason=m.get("reason"),
                        **common,
                    )
                )
            case "transfer_in":
                # Units an order's transfer brings are the pickup's: only that transfer receives them.
                free = level.incoming - earmarked.get(k, 0)
                if free < qty:
                    errors.append({"field": f"movements[{i}].qty", "message": _transfer_in_refusal(
                        qty, level.incoming, earmarked.get(k, 0), m["location"])})  # fmt: skip
                new_legs.append(
                    Leg(
                        Kind.TRANSFER_IN,
                        *k,
                        qty,
                        ledger.deltas_for(Kind.TRANSFER_IN, qty),
                        reason=m.get("reason"),
                        **common,
                    )
                )
        for leg in new_legs:
            lv = levels[leg.key]
            lv.on_hand += leg.deltas.on_hand
            lv.reserved += leg.deltas.reserved
            lv.incoming += leg.deltas.incoming
            legs.append(leg)
            owners.append(i)
        results.append(MovementResult(i, "applied", []))
    if conflicts:
        raise IdempotencyConflict("a replayed external_ref carries different content", errors=conflicts)
    if errors:
        raise StockConflict("the ledger refuses these movements", errors=errors)

    try:
        ids, shortages = book(session, legs, now, policy)
    except IntegrityError as exc:
        # Another transaction recorded one of these outside facts after our replay check
        # (a different batch naming the same external_ref): run again and it shows as replayed.
        raise Retry("external_ref recorded concurrently") from exc
    by_index = {r.index: r for r in results}
    for owner, mid in zip(owners, ids, strict=True):
        by_index[owner].movement_ids.append(mid)

    applied = sum(1 for r in results if r.status == "applied")
    return BatchResult(
        applied=applied, duplicates=len(results) - applied, results=results, shortages=shortages
    )


def book(
    session: Session,
    legs: Sequence[Leg],
    now: datetime,
    policy: orders.Policy | None = None,
    *,
    ids: bool = True,
) -> tuple[list[int], list[shortages_.Shortage]]:
    """Write outside facts on locked levels: projection, movements, stock events, then what they do
    to promises (moved or flagged when short, unflagged when whole again). Returns the movement ids."""
    totals = totals_by_key(legs)
    apply_deltas(session, totals, now)
    movement_ids = insert_movements(session, legs, now, ids=ids)
    events.stock_transitions(session, totals, now)
    dropped = [k for k, d in totals.items() if d.on_hand < 0 or d.reserved > 0]
    shortages = (
        shortages_.handle_shortages(session, dropped, policy or orders.Policy(), now) if dropped else []
    )
    shortages_.clear_recovered(
        session, [k for k, d in totals.items() if d.on_hand > 0 or d.reserved < 0], now
    )
    kinds: dict[str, int] = {}
    for leg in legs:
        kinds[str(leg.kind)] = kinds.get(str(leg.kind), 0) + 1
    after_commit(session, lambda: count_movements(kinds))
    return movement_ids, shortages


def count_movements(kinds: dict[str, int]) -> None:
    """Feed the ledger movement counter (called once the movements are committed)."""
    for kind, n in kinds.items():
        LEDGER_MOVEMENTS.labels(kind=kind).inc(n)


# ---------------------------------------------------------------- reads


def set_safety_stock(
    session: Session, *, sku: str, location: str, safety_stock: int | None
) -> stock_reads.LevelView:
    """Override (or clear) the units held back from online channels for one SKU at one location."""
    sku_row = catalog.get_sku(session, sku)
    loc = catalog.get_location(session, location)
    ensure_levels(session, [(sku_row.id, loc.id)])
    level = session.get(StockLevel, (sku_row.id, loc.id), with_for_update=True)
    if level is None:  # ensure_levels just made it; only a concurrent delete could lose it
        raise RuntimeError("stock level vanished")
    level.safety_stock = safety_stock
    session.flush()
    return stock_reads.level_view(sku, location, level.on_hand, level.reserved, level.incoming,
                                  level.safety_stock, loc.default_safety_stock)  # fmt: skip
