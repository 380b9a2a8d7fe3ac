"""Stock use cases: post movement batches, read levels, availability and ledger history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, literal, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.db import Retry, after_commit, utcnow
from app.domain import ledger
from app.domain.errors import (
    IdempotencyConflict,
    InvalidInput,
    StockConflict,
    UnknownChannel,
    UnknownSku,
)
from app.domain.geo import haversine_km
from app.domain.ledger import Deltas, Kind
from app.models import Channel, ChannelLocation, Location, Movement, Sku, StockLevel
from app.observability import LEDGER_MOVEMENTS
from app.services import catalog, events, orders
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


@dataclass
class BatchResult:
    applied: int
    duplicates: int
    results: list[dict[str, Any]]
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

    results: list[dict[str, Any]] = []
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
            results.append({"index": i, "status": "duplicate", "movement_ids": [mid]})
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
                if level.incoming < qty:
                    errors.append(
                        {
                            "field": f"movements[{i}].qty",
                            "message": f"{qty} received but only {level.incoming} in transit to "
                            f"{m['location']}; record a receipt for units not sent by transfer",
                        }
                    )
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
        results.append({"index": i, "status": "applied", "movement_ids": []})
    if conflicts:
        raise IdempotencyConflict("a replayed external_ref carries different content", errors=conflicts)
    if errors:
        raise StockConflict("the ledger refuses these movements", errors=errors)

    totals = totals_by_key(legs)
    apply_deltas(session, totals, now)
    try:
        ids = insert_movements(session, legs, now, ids=True)
    except IntegrityError as exc:
        # Another transaction recorded one of these outside facts after our replay check
        # (a different batch naming the same external_ref): run again and it shows as replayed.
        raise Retry("external_ref recorded concurrently") from exc
    events.stock_transitions(session, totals, now)
    # An outside fact may have taken units promised to open fulfilments: move or flag them.
    dropped = [k for k, d in totals.items() if d.on_hand < 0 or d.reserved > 0]
    shortages = shortages_.handle_shortages(session, dropped, policy or orders.Policy(), now) if dropped else []
    # Stock that came back may make good a promise flagged at risk by an earlier shortage.
    shortages_.clear_recovered(session, [k for k, d in totals.items() if d.on_hand > 0 or d.reserved < 0], now)
    by_index = {r["index"]: r for r in results}
    for owner, mid in zip(owners, ids, strict=True):
        by_index[owner]["movement_ids"].append(mid)

    kinds: dict[str, int] = {}
    for leg in legs:
        kinds[str(leg.kind)] = kinds.get(str(leg.kind), 0) + 1
    after_commit(session, lambda: count_movements(kinds))
    applied = sum(1 for r in results if r["status"] == "applied")
    return BatchResult(
        applied=applied, duplicates=len(results) - applied, results=results, shortages=shortages
    )


def count_movements(kinds: dict[str, int]) -> None:
    """Feed the ledger movement counter (called once the movements are committed)."""
    for kind, n in kinds.items():
        LEDGER_MOVEMENTS.labels(kind=kind).inc(n)


# ---------------------------------------------------------------- reads
def _level_out(sku: str, loc: str, on_hand: int, reserved: int, incoming: int,
               override: int | None, default_safety: int) -> dict[str, Any]:  # fmt: skip
    safety = default_safety if override is None else override
    lv = ledger.Level(on_hand, reserved, incoming, safety)
    return {
        "sku": sku,
        "location": loc,
        "on_hand": on_hand,
        "reserved": reserved,
        "incoming": incoming,
        "safety_stock": safety,
        "safety_stock_override": override,
        "available_online": ledger.available(lv, online=True),
        "available_store": ledger.available(lv, online=False),
        "shortage": ledger.shortage(lv),
    }


def list_levels(
    session: Session,
    *,
    sku: str | None,
    location: str | None,
    short_only: bool,
    allowed_locations: frozenset[int] | None,
    after: tuple[int, int] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """Stock levels with their derived figures, keyset-paged by (sku, location)."""
    stmt = (
        select(
            StockLevel.sku_id, StockLevel.location_id, Sku.code, Location.code,
            StockLevel.on_hand, StockLevel.reserved, StockLevel.incoming,
            StockLevel.safety_stock, Location.default_safety_stock,
        )
        .join(Sku, Sku.id == StockLevel.sku_id)
        .join(Location, Location.id == StockLevel.location_id)
        .order_by(StockLevel.sku_id, StockLevel.location_id)
        .limit(limit + 1)
    )  # fmt: skip
    if sku is not None:
        stmt = stmt.where(StockLevel.sku_id == catalog.get_sku(session, sku).id)
    if location is not None:
        stmt = stmt.where(StockLevel.location_id == catalog.get_location(session, location).id)
    if allowed_locations is not None:
        stmt = stmt.where(StockLevel.location_id.in_(allowed_locations))
    if short_only:
        stmt = stmt.where(StockLevel.reserved > StockLevel.on_hand)
    if after is not None:
        stmt = stmt.where(
            tuple_(StockLevel.sku_id, StockLevel.location_id) > tuple_(literal(after[0]), literal(after[1]))
        )
    rows = session.execute(stmt).all()
    page = rows[:limit]
    items = [_level_out(*r[2:]) for r in page]
    nxt = (page[-1][0], page[-1][1]) if len(rows) > limit else None
    return items, nxt


def set_safety_stock(
    session: Session, *, sku: str, location: str, safety_stock: int | None
) -> dict[str, Any]:
    """Override (or clear) the units held back from online channels for one SKU at one location."""
    sku_row = catalog.get_sku(session, sku)
    loc = catalog.get_location(session, location)
    ensure_levels(session, [(sku_row.id, loc.id)])
    level = session.get(StockLevel, (sku_row.id, loc.id), with_for_update=True)
    if level is None:  # ensure_levels just made it; only a concurrent delete could lose it
        raise RuntimeError("stock level vanished")
    level.safety_stock = safety_stock
    session.flush()
    return _level_out(sku, location, level.on_hand, level.reserved, level.incoming,
                      level.safety_stock, loc.default_safety_stock)  # fmt: skip


def availability(
    session: Session,
    *,
    sku_codes: Sequence[str],
    channel: str,
    lat: float | None = None,
    lon: float | None = None,
    location: str | None = None,
) -> list[dict[str, Any]]:
    """Units each active location serving the channel can sell now, per SKU and in total."""
    ch = session.execute(select(Channel.id, Channel.kind).where(Channel.code == channel)).one_or_none()
    if ch is None:
        raise UnknownChannel(f"no channel {channel!r}", channel=channel)
    channel_id, channel_kind = ch
    online = channel_kind == "online"
    lvl = aliased(StockLevel)
    stmt = (
        select(
            Sku.code, Location.code, Location.lat, Location.lon, Location.default_safety_stock,
            lvl.on_hand, lvl.reserved, lvl.incoming, lvl.safety_stock,
        )
        .select_from(Sku)
        .join(ChannelLocation, ChannelLocation.channel_id == channel_id)
        .join(Location, and_(Location.id == ChannelLocation.location_id, Location.active))
        .outerjoin(lvl, and_(lvl.sku_id == Sku.id, lvl.location_id == Location.id))
        .where(Sku.code.in_(list(sku_codes)))
    )  # fmt: skip
    if location is not None:
        stmt = stmt.where(Location.code == location)
    rows = session.execute(stmt).all()
    per_sku: dict[str, list[dict[str, Any]]] = {code: [] for code in sku_codes}
    seen = set()
    for sku, loc, llat, llon, default_safety, on_hand, reserved, incoming, override in rows:
        seen.add(sku)
        level = ledger.Level(on_hand or 0, reserved or 0, incoming or 0,
                             default_safety if override is None else override)  # fmt: skip
        dist = None
        if lat is not None and lon is not None and llat is not None and llon is not None:
            dist = round(haversine_km(lat, lon, llat, llon), 2)
        per_sku[sku].append(
            {
                "location": loc,
                "available": ledger.available(level, online=online),
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "incoming": level.incoming,
                "distance_km": dist,
            }
        )
    missing = [c for c in sku_codes if c not in seen]
    if missing:
        # No row for them: unknown SKUs, or the channel/location has no active location at all.
        known = set(session.scalars(select(Sku.code).where(Sku.code.in_(missing))))
        unknown = [c for c in missing if c not in known]
        if unknown:
            raise UnknownSku(f"unknown SKU(s): {', '.join(unknown[:20])}", unknown=unknown, field="skus")
        if location is not None:
            catalog.get_location(session, location)
    items = []
    for sku in sku_codes:
        locs = per_sku[sku]
        if lat is not None:
            locs.sort(key=lambda r: (r["distance_km"] is None, r["distance_km"] or 0.0, r["location"]))
        else:
            locs.sort(key=lambda r: r["location"])
        items.append({"sku": sku, "total_available": sum(r["available"] for r in locs), "locations": locs})
    return items


def history(
    session: Session,
    *,
    sku: str | None,
    location: str | None,
    kind: str | None,
    allowed_locations: frozenset[int] | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """Ledger movements newest first, keyset-paged by id."""
    stmt = (
        select(Movement, Sku.code, Location.code)
        .join(Sku, Sku.id == Movement.sku_id)
        .join(Location, Location.id == Movement.location_id)
        .order_by(Movement.id.desc())
        .limit(limit + 1)
    )
    if sku is not None:
        stmt = stmt.where(Movement.sku_id == catalog.get_sku(session, sku).id)
    if location is not None:
        stmt = stmt.where(Movement.location_id == catalog.get_location(session, location).id)
    if kind is not None:
        stmt = stmt.where(Movement.kind == kind)
    if allowed_locations is not None:
        stmt = stmt.where(Movement.location_id.in_(allowed_locations))
    if before_id is not None:
        stmt = stmt.where(Movement.id < before_id)
    rows = session.execute(stmt).all()
    page = rows[:limit]
    items = []
    for mv, sku_code, loc_code in page:
        items.append(
            {
                "id": mv.id, "kind": mv.kind, "sku": sku_code, "location": loc_code, "qty": mv.qty,
                "on_hand_delta": mv.on_hand_delta, "reserved_delta": mv.reserved_delta,
                "incoming_delta": mv.incoming_delta, "reason": mv.reason, "source": mv.source,
                "external_ref": mv.external_ref, "occurred_at": mv.occurred_at,
                "recorded_at": mv.recorded_at, "order_id": mv.order_id,
                "fulfilment_id": mv.fulfilment_id, "sync_run_id": mv.sync_run_id, "note": mv.note,
            }
        )  # fmt: skip
    nxt = page[-1][0].id if len(rows) > limit else None
    return items, nxt
