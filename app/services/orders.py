"""Orders: route, reserve without overselling, and move fulfilments through their life cycle."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from sqlalchemy import exc, select, tuple_, update
from sqlalchemy.orm import Session

from app.db import Raw, Retry, utcnow
from app.domain import fulfilment as lifecycle
from app.domain import routing
from app.domain.errors import (
    DomainError,
    Forbidden,
    IdempotencyConflict,
    InsufficientStock,
    InvalidInput,
    NotFound,
)
from app.domain.fulfilment import Status
from app.domain.geo import normal_postcode
from app.domain.ledger import Deltas, Kind, free_units
from app.models import (
    Channel,
    Fulfilment,
    FulfilmentLine,
    Location,
    LocationDayUsage,
    Movement,
    Order,
    OrderLine,
    Postcode,
    Sku,
    StockLevel,
)
from app.services import events
from app.services.ledger import (
    MOVEMENT_COLUMNS,
    Leg,
    apply_deltas,
    ensure_levels,
    insert_movements,
    movement_rows,
    record,
)


class PickupUnavailable(DomainError):
    code = "pickup_location_unavailable"
    kind = "invalid"


class LostRace(Retry, InsufficientStock):
    """Stock or capacity went to a concurrent order between routing and reserving: retried with
    fresh stock; once retries are spent it is the 409 insufficient_stock it amounts to."""


# ---------------------------------------------------------------- commands
@dataclass(frozen=True)
class Delivery:
    type: str  # ship | pickup
    lat: float | None = None
    lon: float | None = None
    postcode: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class PlaceOrder:
    channel: str
    lines: tuple[tuple[str, int], ...]
    delivery: Delivery
    external_id: str | None = None
    customer_ref: str | None = None
    allow_split: bool = True
    allow_partial: bool = False
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """What makes two requests 'the same order' for idempotency."""
        body = {
            "channel": self.channel, "lines": sorted(self.lines), "delivery": self.delivery.__dict__,
            "external_id": self.external_id, "customer_ref": self.customer_ref,
            "allow_split": self.allow_split, "allow_partial": self.allow_partial,
        }  # fmt: skip
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Policy:
    criteria: tuple[routing.Criterion, ...] = routing.DEFAULT_CRITERIA
    max_shipments: int = 3
    pickup_shortfall: str = "transfer"

    def routing_policy(self) -> routing.RoutingPolicy:
        return routing.RoutingPolicy(
            criteria=self.criteria,
            max_shipments=self.max_shipments,
            pickup_shortfall=self.pickup_shortfall,  # type: ignore[arg-type]
        )


def policy_from_config(config: dict[str, Any]) -> Policy:
    """The routing policy as configured (OMNISTOCK_ROUTING_*)."""
    criteria = tuple(c.strip() for c in str(config["ROUTING_CRITERIA"]).split(",") if c.strip())
    unknown = set(criteria) - {"distance", "priority", "capacity", "depth"}
    if unknown:
        raise ValueError(f"unknown routing criteria: {sorted(unknown)}")
    return Policy(
        criteria=criteria,  # type: ignore[arg-type]
        max_shipments=int(config["ROUTING_MAX_SHIPMENTS"]),
        pickup_shortfall=str(config["ROUTING_PICKUP_SHORTFALL"]),
    )


# ---------------------------------------------------------------- reference lookups
class _Ids:
    """Per-process cache of SKU ids (codes never change owner) and channels (short TTL)."""

    def __init__(self) -> None:
        self.skus: dict[str, int] = {}
        self.channels: dict[str, tuple[float, int, str]] = {}
        self.lock = threading.Lock()


_IDS = _Ids()
CHANNEL_TTL_S = 10.0


def _channel(session: Session, code: str) -> tuple[int, str]:
    hit = _IDS.channels.get(code)
    if hit and hit[0] > time.monotonic():
        return hit[1], hit[2]
    row = session.execute(select(Channel.id, Channel.kind).where(Channel.code == code)).one_or_none()
    if row is None:
        raise InvalidInput(
            "unknown channel",
            [{"field": "channel", "message": f"unknown channel {code!r}"}],
            "unknown_channel",
        )
    with _IDS.lock:
        _IDS.channels[code] = (time.monotonic() + CHANNEL_TTL_S, row[0], row[1])
    return row[0], row[1]


def _sku_ids(session: Session, codes: Sequence[str]) -> dict[str, int]:
    missing = [c for c in codes if c not in _IDS.skus]
    if missing:
        found = dict(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_(missing))).tuples().all())
        with _IDS.lock:
            _IDS.skus.update(found)
    unknown = [i for i, c in enumerate(codes) if c not in _IDS.skus]
    if unknown:
        raise InvalidInput(
            "unknown SKU",
            [{"field": f"lines[{i}].sku", "message": f"unknown SKU {codes[i]!r}"} for i in unknown],
            "unknown_sku",
        )
    return {c: _IDS.skus[c] for c in codes}


def place_point(session: Session, delivery: Delivery) -> tuple[float | None, float | None]:
    """Coordinates for a ship-to: given, or looked up from the postcode (full, then outward part)."""
    if delivery.lat is not None and delivery.lon is not None:
        return delivery.lat, delivery.lon
    if delivery.postcode:
        pc = normal_postcode(delivery.postcode)
        tries = [pc, pc.split(" ")[0]] if " " in pc else [pc, pc[:-3].strip() if len(pc) > 4 else pc]
        for code in tries:
            row = session.execute(
                select(Postcode.lat, Postcode.lon).where(Postcode.code == code)
            ).one_or_none()
            if row is not None:
                return row[0], row[1]
        raise InvalidInput(
            "unknown postcode",
            [{"field": "delivery.postcode", "message": f"cannot place postcode {delivery.postcode!r}"}],
            "unknown_postcode",
        )
    return None, None


# ---------------------------------------------------------------- candidates
@dataclass
class _Loc:
    id: int
    code: str
    timezone: str
    daily_capacity: int | None
    default_safety: int


@dataclass
class Context:
    """Everything routing needed, kept to reserve and to answer."""

    channel_id: int
    online: bool
    sku_ids: dict[str, int]
    locations: dict[str, _Loc] = field(default_factory=dict)
    location_by_id: dict[int, _Loc] = field(default_factory=dict)
    days: dict[int, date] = field(default_factory=dict)
    # Read with the candidates when placing: an order already placed under this key or external
    # id (id, request hash), and on PostgreSQL the new order's id and a first fulfilment id.
    prior: tuple[int, str] | None = None
    ids: tuple[int, int] | None = None


# Hot path: one round trip for every location's settings, channel membership, today's
# shipments against capacity (its local day is one of three UTC-adjacent dates) and stock.
# Joins rather than per-row subqueries: those re-ran for every (location, SKU) row.
_CANDIDATES = """
WITH head AS {materialized} (
    SELECT {ids} AS ids,
           (SELECT CAST(o.id AS TEXT) || ' ' || o.request_hash FROM orders o
            WHERE o.channel_id = ? AND (o.idempotency_key = ? OR o.external_id = ?) LIMIT 1) AS prior
)
SELECT l.id, l.code, l.lat, l.lon, l.priority, l.active, l.ships, l.pickup, l.daily_capacity,
       l.timezone, l.default_safety_stock, cl.location_id IS NOT NULL AS serves,
       u.used0, u.used1, u.used2, s.sku_id, s.on_hand, s.reserved, s.safety_stock, head.ids, head.prior
FROM locations l
CROSS JOIN head
LEFT JOIN channel_locations cl ON cl.location_id = l.id AND cl.channel_id = ?
LEFT JOIN (
    SELECT location_id, MAX(CASE WHEN day = ? THEN used END) AS used0,
           MAX(CASE WHEN day = ? THEN used END) AS used1, MAX(CASE WHEN day = ? THEN used END) AS used2
    FROM location_day_usage WHERE day >= ? AND day <= ? GROUP BY location_id
) u ON u.location_id = l.id
LEFT JOIN stock_levels s ON s.location_id = l.id AND s.sku_id IN ({skus})
ORDER BY l.id
"""
# Ids drawn up front let the whole order be written in one statement (see place_order).
_NEXT_IDS = "ARRAY[nextval(pg_get_serial_sequence('orders', 'id')), nextval(pg_get_serial_sequence('fulfilments', 'id'))]"
_MORE_FULFILMENT_IDS = (
    "SELECT nextval(pg_get_serial_sequence('fulfilments', 'id')) FROM generate_series(1, ?)"
)


@lru_cache(maxsize=256)
def _candidates_sql(skus: int, sqlite_: bool, ids: bool) -> str:
    return _CANDIDATES.format(
        skus=", ".join("?" * skus),
        materialized="" if sqlite_ else "MATERIALIZED",
        ids=_NEXT_IDS if ids and not sqlite_ else "NULL",
    )


def load_candidates(
    session: Session, ctx: Context, now: datetime, placing: PlaceOrder | None = None
) -> list[routing.Candidate]:
    """Every location with what it can offer this order now: stock net of reservations and safety.

    When placing, the same read finds an order already placed under the command's key and
    (PostgreSQL) draws the ids the new order will be written with.
    """
    utc_day = now.date()
    days = (utc_day - timedelta(days=1), utc_day, utc_day + timedelta(days=1))
    sku_ids = list(ctx.sku_ids.values())
    raw = Raw.of(session)
    key = placing.idempotency_key if placing else None
    external_id = placing.external_id if placing else None
    rows = raw.execute(
        _candidates_sql(len(sku_ids), raw.sqlite, placing is not None),
        [ctx.channel_id, key, external_id, ctx.channel_id, *days, days[0], days[2], *sku_ids],
    )
    if rows:
        ids, prior = rows[0][-2], rows[0][-1]
        ctx.ids = (int(ids[0]), int(ids[1])) if ids else None
        if prior:
            prior_id, prior_hash = str(prior).split(" ", 1)
            ctx.prior = (int(prior_id), prior_hash)
    code_of = {v: k for k, v in ctx.sku_ids.items()}
    info: dict[int, dict[str, Any]] = {}
    for (lid, code, lat, lon, prio, active, ships, pickup, cap, tz, dsafe, serves, u0, u1, u2,
         sku_id, on_hand, reserved, override, _ids, _prior) in rows:  # fmt: skip
        entry = info.get(lid)
        if entry is None:
            used = 0
            if cap is not None:
                local = now.astimezone(_zone(tz)).date()
                ctx.days[lid] = local
                used = {days[0]: u0, days[1]: u1, days[2]: u2}.get(local) or 0
            entry = info[lid] = {
                "code": code, "lat": lat, "lon": lon, "priority": prio, "active": bool(active),
                "ships": bool(ships), "pickup": bool(pickup), "cap": cap, "tz": tz, "dsafe": dsafe,
                "serves": bool(serves), "stock": {}, "used": used,
            }  # fmt: skip
        if sku_id is not None:
            safety = dsafe if override is None else override
            entry["stock"][code_of[sku_id]] = free_units(on_hand, reserved, safety, online=ctx.online)
    out = []
    for lid, e in info.items():
        ctx.locations[e["code"]] = _Loc(lid, e["code"], e["tz"], e["cap"], e["dsafe"])
        ctx.location_by_id[lid] = ctx.locations[e["code"]]
        out.append(
            routing.Candidate(
                code=e["code"], lat=e["lat"], lon=e["lon"], priority=e["priority"],
                remaining_capacity=None if e["cap"] is None else max(e["cap"] - e["used"], 0),
                stock=e["stock"], active=e["active"], ships=e["ships"], pickup=e["pickup"],
                serves_channel=e["serves"],
            )
        )  # fmt: skip
    return out


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _routing_request(cmd: PlaceOrder, lat: float | None, lon: float | None) -> routing.RoutingRequest:
    delivery: routing.ShipTo | routing.PickupAt
    if cmd.delivery.type == "pickup":
        delivery = routing.PickupAt(str(cmd.delivery.location))
    else:
        delivery = routing.ShipTo(lat, lon)
    return routing.RoutingRequest(
        lines=tuple(routing.Line(s, q) for s, q in cmd.lines),
        delivery=delivery,
        allow_split=cmd.allow_split,
        allow_partial=cmd.allow_partial,
    )


def explain(decision: routing.RoutingDecision) -> dict[str, Any]:
    """The routing decision as the API shows it: outcome, candidates and why each lost."""
    return {
        "status": decision.status,
        "reason": decision.reason,
        "explanation": [
            {"location": n.location, "outcome": n.outcome, "reason": n.reason, "distance_km": n.distance_km}
            for n in decision.explanation
        ],
        "allocations": [
            {
                "location": a.location,
                "type": a.type,
                "to_location": a.to_location,
                "lines": [{"sku": ln.sku, "qty": ln.qty} for ln in a.lines],
                "collect_lines": [{"sku": ln.sku, "qty": ln.qty} for ln in a.collect_lines],
            }
            for a in decision.allocations
        ],
        "backordered": [{"sku": ln.sku, "qty": ln.qty} for ln in decision.backordered],
        "alternatives": [
            {"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives
        ],
    }


def _refuse(decision: routing.RoutingDecision) -> None:
    if decision.reason == "pickup_location_unavailable":
        raise PickupUnavailable(
            "that store does not offer pickup for this channel",
            errors=[{"field": "delivery.location", "message": "not an active pickup store for this channel"}],
            routing=explain(decision),
        )
    raise InsufficientStock(
        "no location (or allowed split) can fulfil this order now",
        alternatives=[{"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives],
        routing=explain(decision),
    )


def _validate(cmd: PlaceOrder) -> None:
    errors = []
    seen: dict[str, int] = {}
    for i, (sku, _qty) in enumerate(cmd.lines):
        if sku in seen:
            errors.append(
                {"field": f"lines[{i}].sku", "message": f"{sku} is already lines[{seen[sku]}]; merge them"}
            )
        seen[sku] = i
    if errors:
        raise InvalidInput("duplicate lines", errors)


def decide(
    session: Session, cmd: PlaceOrder, policy: Policy, now: datetime, *, placing: bool = False
) -> tuple[Context, routing.RoutingDecision, tuple[float | None, float | None]]:
    """Route an order against fresh stock; writes nothing."""
    _validate(cmd)
    channel_id, kind = _channel(session, cmd.channel)
    ctx = Context(channel_id, kind == "online", _sku_ids(session, [s for s, _ in cmd.lines]))
    point = place_point(session, cmd.delivery) if cmd.delivery.type == "ship" else (None, None)
    candidates = load_candidates(session, ctx, now, cmd if placing else None)
    if cmd.delivery.type == "pickup" and cmd.delivery.location not in ctx.locations:
        raise InvalidInput(
            "unknown pickup store",
            [{"field": "delivery.location", "message": f"unknown location {cmd.delivery.location!r}"}],
            "unknown_location",
        )
    decision = routing.route(_routing_request(cmd, *point), candidates, policy.routing_policy())
    return ctx, decision, point


def quote(session: Session, cmd: PlaceOrder, policy: Policy) -> dict[str, Any]:
    """The decision placing this order would take now, without reserving anything."""
    _ctx, decision, _ = decide(session, cmd, policy, utcnow())
    return explain(decision)


def refuse_after_lost_races(session: Session, cmd: PlaceOrder, policy: Policy) -> NoReturn:
    """Retries spent on lost races: refuse as routing on the stock as it stands now explains it."""
    _ctx, decision, _ = decide(session, cmd, policy, utcnow())
    if decision.status == "refused":
        _refuse(decision)
    raise InsufficientStock(
        "concurrent orders kept taking this stock before it could be reserved; try again",
        alternatives=[{"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives],
        routing=explain(decision),
    )


# ---------------------------------------------------------------- reserving
# One statement reserves every line or reports which it could not: a line is reserved only if
# available covers it at that instant (re-checked on the newest row version), and the rows are
# locked first in (sku, location) order, so concurrent orders never oversell and never deadlock.
# The locks are held to commit. RETURNING gives the rows as left, for stock events.
_RESERVE_PG = """
WITH v (sku_id, location_id, qty, online, ds) AS (VALUES {values}),
locked AS (
    SELECT s.sku_id, s.location_id FROM stock_levels s
    JOIN v ON s.sku_id = v.sku_id AND s.location_id = v.location_id
    ORDER BY s.sku_id, s.location_id
    FOR UPDATE OF s
)
UPDATE stock_levels s SET reserved = s.reserved + v.qty, updated_at = ?
FROM v, locked
WHERE s.sku_id = v.sku_id AND s.location_id = v.location_id
  AND locked.sku_id = s.sku_id AND locked.location_id = s.location_id
  AND s.on_hand - s.reserved - v.online * COALESCE(s.safety_stock, v.ds) >= v.qty
RETURNING s.sku_id, s.location_id, s.on_hand, s.reserved, s.safety_stock
"""
# SQLite serialises writers (BEGIN IMMEDIATE), so there is no lock order to keep.
_RESERVE_SQLITE = """
WITH v (sku_id, location_id, qty, online, ds) AS (VALUES {values})
UPDATE stock_levels AS s SET reserved = s.reserved + v.qty, updated_at = ?
FROM v
WHERE s.sku_id = v.sku_id AND s.location_id = v.location_id
  AND s.on_hand - s.reserved - v.online * COALESCE(s.safety_stock, v.ds) >= v.qty
RETURNING sku_id, location_id, on_hand, reserved, safety_stock
"""


@lru_cache(maxsize=128)
def _reserve_sql(sqlite_: bool, n: int) -> str:
    row = "(?, ?, ?, ?, ?)" if sqlite_ else "(" + ", ".join(["CAST(? AS INTEGER)"] * 5) + ")"
    return (_RESERVE_SQLITE if sqlite_ else _RESERVE_PG).format(values=", ".join([row] * n))


@dataclass(frozen=True)
class LevelAfter:
    sku_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int | None


def reserve(
    session: Session,
    ctx: Context,
    wanted: dict[tuple[int, int], int],
    now: datetime,
    inserts: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = (),
) -> list[LevelAfter]:
    """Reserve every (sku, location) qty or none; any shortfall is a lost race. Returns the levels after.

    `inserts` are rows that go with the reservation, written in the same statement where the
    database allows (PostgreSQL): the order's rows travel with its reservation in one message.
    """
    if not wanted:
        return []
    online = 1 if ctx.online else 0
    params: list[Any] = []
    for (sku_id, loc_id), qty in sorted(wanted.items()):
        params += (sku_id, loc_id, qty, online, ctx.location_by_id[loc_id].default_safety)
    params.append(now)
    raw = Raw.of(session)
    rows = [
        LevelAfter(*row)
        for row in raw.execute_together(inserts, _reserve_sql(raw.sqlite, len(wanted)), params)
    ]
    if len(rows) != len(wanted):
        raise LostRace("stock changed between routing and reserving")
    return rows


_TAKE_CAPACITY = """
INSERT INTO location_day_usage (location_id, day, used) VALUES (?, ?, 1)
ON CONFLICT (location_id, day) DO UPDATE SET used = location_day_usage.used + 1
WHERE location_day_usage.used < ?
RETURNING used
"""


def take_capacity(session: Session, ctx: Context, location_ids: Sequence[int]) -> None:
    """Count one shipment against each capacity-limited location's day, or lose the race."""
    raw = Raw.of(session)
    for loc_id in sorted(set(location_ids)):
        loc = ctx.location_by_id[loc_id]
        if loc.daily_capacity is None:
            continue
        if not raw.execute(_TAKE_CAPACITY, [loc_id, ctx.days[loc_id], loc.daily_capacity]):
            raise LostRace(f"{loc.code} reached its daily capacity")


def release_capacity(session: Session, location_id: int, day: date) -> None:
    """Give a cancelled shipment's capacity back to its day."""
    session.execute(
        update(LocationDayUsage)
        .where(
            LocationDayUsage.location_id == location_id,
            LocationDayUsage.day == day,
            LocationDayUsage.used > 0,
        )
        .values(used=LocationDayUsage.used - 1)
    )


# ---------------------------------------------------------------- placing
@dataclass
class Placed:
    order: dict[str, Any]
    replayed: bool


ORDER_COLUMNS = (
    "external_id", "idempotency_key", "request_hash", "channel_id", "customer_ref", "status",
    "delivery_type", "ship_lat", "ship_lon", "ship_postcode", "pickup_location_id", "allow_split",
    "allow_partial", "routing", "created_at", "updated_at",
)  # fmt: skip
ORDER_LINE_COLUMNS = ("order_id", "line_no", "sku_id", "qty", "backordered", "cancelled", "returned")
FULFILMENT_LINE_COLUMNS = ("fulfilment_id", "sku_id", "qty", "reserved", "awaiting", "done", "cancelled")
FULFILMENT_COLUMNS = (
    "order_id", "location_id", "type", "status", "to_location_id", "feeds_fulfilment_id", "at_risk",
    "created_at", "updated_at",
)  # fmt: skip


def _replay(session: Session, prior: tuple[int, str], fingerprint: str) -> Placed:
    prior_id, prior_hash = prior
    if prior_hash != fingerprint:
        raise IdempotencyConflict(
            f"order {prior_id} was placed with this key and a different body", order_id=prior_id
        )
    return Placed(get_order(session, prior_id), replayed=True)


_IDEMPOTENCY_CONSTRAINTS = ("uq_orders_channel_id_idempotency_key", "uq_orders_channel_id_external_id")


def _idempotency_clash(error: exc.IntegrityError) -> bool:
    """The order insert met another order with the same key (placed concurrently)."""
    name = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if name is not None:
        return name in _IDEMPOTENCY_CONSTRAINTS
    text = str(error.orig)  # SQLite names the columns instead
    return (
        "orders.channel_id, orders.idempotency_key" in text or "orders.channel_id, orders.external_id" in text
    )


def place_order(session: Session, cmd: PlaceOrder, policy: Policy, *, now: datetime | None = None) -> Placed:
    """Route and reserve an order in one transaction; the same key returns the same order."""
    try:
        return _place(session, cmd, policy, now or utcnow())
    except exc.IntegrityError as error:
        if _idempotency_clash(error):
            # Another request with this key committed while we routed: run again, and the
            # read at the start finds its order and answers with it.
            raise Retry("an order with this key was placed concurrently") from error
        raise


def _place(session: Session, cmd: PlaceOrder, policy: Policy, now: datetime) -> Placed:
    fingerprint = cmd.fingerprint()
    ctx, decision, point = decide(session, cmd, policy, now, placing=True)
    if ctx.prior is not None:
        # Also when stock has run out since: a replay gets the order that took the last units.
        return _replay(session, ctx.prior, fingerprint)
    if decision.status == "refused":
        _refuse(decision)

    loc_id = {code: loc.id for code, loc in ctx.locations.items()}
    wanted: dict[tuple[int, int], int] = {}
    for alloc in decision.allocations:
        for ln in alloc.lines:
            key = (ctx.sku_ids[ln.sku], loc_id[alloc.location])
            wanted[key] = wanted.get(key, 0) + ln.qty
    backordered = {ln.sku: ln.qty for ln in decision.backordered}
    status = "partially_allocated" if backordered else "allocated"
    if not decision.allocations:
        status = "backordered"
    routing_out = explain(decision)
    raw = Raw.of(session)
    order_row = (
        cmd.external_id, cmd.idempotency_key, fingerprint, ctx.channel_id, cmd.customer_ref, status,
        cmd.delivery.type, point[0], point[1], cmd.delivery.postcode, loc_id.get(cmd.delivery.location or ""),
        cmd.allow_split, cmd.allow_partial, routing_out, now, now,
    )  # fmt: skip
    ordered = sorted(decision.allocations, key=lambda a: (a.type != "pickup", a.location))

    def fulfilment_row(a: routing.Allocation, order_id: int, pickup_fid: int | None) -> tuple[Any, ...]:
        feeds = pickup_fid if a.type == "transfer" else None
        return (order_id, loc_id[a.location], a.type, Status.ALLOCATED.value, loc_id.get(a.to_location or ""),
                feeds, False, now, now)  # fmt: skip

    head: list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = []
    if ctx.ids is not None:
        # PostgreSQL: ids were drawn with the candidates, so the order and its fulfilments are
        # written in the same single statement as everything else below.
        order_id, first_fid = ctx.ids
        fids = [first_fid][: len(ordered)]
        if len(ordered) > 1:
            fids += [int(r[0]) for r in raw.execute(_MORE_FULFILMENT_IDS, [len(ordered) - 1])]
        pickup_fid = fids[0] if ordered and ordered[0].type == "pickup" else None
        head = [
            ("orders", ("id", *ORDER_COLUMNS), [(order_id, *order_row)]),
            ("fulfilments", ("id", *FULFILMENT_COLUMNS),
             [(fid, *fulfilment_row(a, order_id, pickup_fid)) for a, fid in zip(ordered, fids, strict=True)]),
        ]  # fmt: skip
    else:
        order_id = int(raw.insert("orders", ORDER_COLUMNS, [order_row], "RETURNING id")[0][0])
        fids, pickup_fid = [], None
        for a in ordered:  # pickup first, so its transfers can name it
            fids.append(int(raw.insert("fulfilments", FULFILMENT_COLUMNS, [fulfilment_row(a, order_id, pickup_fid)],
                                       "RETURNING id")[0][0]))  # fmt: skip
            if a.type == "pickup":
                pickup_fid = fids[-1]
    line_rows: list[tuple[int, int, int, int, int, int, int]] = []
    legs: list[Leg] = []
    for alloc, fid in zip(ordered, fids, strict=True):
        here = {ln.sku: ln.qty for ln in alloc.lines}
        shown = alloc.collect_lines if alloc.type == "pickup" and alloc.collect_lines else alloc.lines
        for ln in shown:
            reserved_here = here.get(ln.sku, 0)
            line_rows.append((fid, ctx.sku_ids[ln.sku], ln.qty, reserved_here, ln.qty - reserved_here, 0, 0))
        for ln in alloc.lines:
            legs.append(Leg(Kind.RESERVATION, ctx.sku_ids[ln.sku], loc_id[alloc.location], ln.qty,
                            Deltas(reserved=ln.qty), order_id=order_id, fulfilment_id=fid))  # fmt: skip
            if alloc.type == "transfer" and alloc.to_location:
                legs.append(Leg(Kind.TRANSFER_EXPECTED, ctx.sku_ids[ln.sku], loc_id[alloc.to_location], ln.qty,
                                Deltas(incoming=ln.qty), order_id=order_id, fulfilment_id=fid))  # fmt: skip
    incoming: dict[tuple[int, int], Deltas] = {}
    for leg in legs:
        if leg.kind is Kind.TRANSFER_EXPECTED:
            incoming[leg.key] = incoming.get(leg.key, Deltas()) + leg.deltas
    if incoming:
        ensure_levels(session, incoming)
        apply_deltas(session, incoming, now)
    evs: list[dict[str, Any]] = [{"type": "order.created", "order_id": order_id,
                                  "payload": {"order_id": order_id, "external_id": cmd.external_id,
                                              "status": status, "customer_ref": cmd.customer_ref}}]  # fmt: skip
    for alloc, fid in zip(ordered, fids, strict=True):
        evs.append({"type": "fulfilment.allocated", "order_id": order_id, "fulfilment_id": fid,
                    "payload": {"order_id": order_id, "fulfilment_id": fid, "location": alloc.location,
                                "type": alloc.type, "lines": [{"sku": ln.sku, "qty": ln.qty} for ln in alloc.lines]}})  # fmt: skip
    # The rest of the order goes in one round trip: on PostgreSQL all its rows and the
    # reservation are one statement. Reserving comes last: the row locks it takes are held until
    # commit, so nothing should follow it. Any shortfall (stock or a day's capacity) raises, and
    # the unit of work rolls all of it back.
    inserts = [
        *head,
        ("order_lines", ORDER_LINE_COLUMNS, [(order_id, i + 1, ctx.sku_ids[s], q, backordered.get(s, 0), 0, 0)
                                             for i, (s, q) in enumerate(cmd.lines)]),
        ("fulfilment_lines", FULFILMENT_LINE_COLUMNS, line_rows),
        ("movements", MOVEMENT_COLUMNS, movement_rows(legs, now)),
        ("outbox_events", events.OUTBOX_COLUMNS, events.outbox_rows(evs, now)),
    ]  # fmt: skip
    take_capacity(session, ctx, [loc_id[a.location] for a in decision.allocations if a.type == "ship"])
    if wanted:
        after = reserve(session, ctx, wanted, now, inserts)
    else:
        after = []
        for table, columns, rows in inserts:
            raw.insert(table, columns, rows)
    levels_after = [
        events.LevelRow(a.sku_id, a.location_id, a.on_hand, a.reserved, a.safety_stock,
                        ctx.location_by_id[a.location_id].default_safety)
        for a in after
    ]  # fmt: skip
    events.stock_transitions(
        session, {k: Deltas(reserved=q) for k, q in wanted.items()}, now, after=levels_after
    )

    fulfilments_out = []
    for alloc, fid in zip(ordered, fids, strict=True):
        here = {ln.sku: ln.qty for ln in alloc.lines}
        shown = alloc.collect_lines if alloc.type == "pickup" and alloc.collect_lines else alloc.lines
        fulfilments_out.append({
            "id": fid, "order_id": order_id, "location": alloc.location, "type": alloc.type,
            "status": "allocated", "to_location": alloc.to_location, "at_risk": False,
            "ready_at": None, "hold_until": None,
            "lines": [{"sku": ln.sku, "qty": ln.qty, "reserved": here.get(ln.sku, 0),
                       "awaiting": ln.qty - here.get(ln.sku, 0), "done": 0, "cancelled": 0} for ln in shown],
        })  # fmt: skip
    order_out = {
        "id": order_id, "external_id": cmd.external_id, "status": status, "channel": cmd.channel,
        "customer_ref": cmd.customer_ref,
        "delivery": _delivery_out(cmd.delivery.type, point[0], point[1], cmd.delivery.postcode, cmd.delivery.location),
        "lines": [{"sku": s, "qty": q, "backordered": backordered.get(s, 0), "cancelled": 0, "returned": 0}
                  for s, q in cmd.lines],
        "fulfilments": fulfilments_out, "routing": routing_out,
        "created_at": now, "updated_at": now,
    }  # fmt: skip
    return Placed(order_out, replayed=False)


def _delivery_out(
    kind: str, lat: float | None, lon: float | None, postcode: str | None, location: str | None
) -> dict[str, Any]:
    if kind == "pickup":
        return {"type": "pickup", "location": location}
    return {"type": "ship", "lat": lat, "lon": lon, "postcode": postcode}


# ---------------------------------------------------------------- reading
def get_order(session: Session, order_id: int) -> dict[str, Any]:
    """One order with its lines, fulfilments and routing explanation."""
    return orders_out(session, [_order_row(session, order_id)])[0]


def _order_row(session: Session, order_id: int, *, lock: bool = False) -> Order:
    stmt = select(Order).where(Order.id == order_id)
    if lock:
        stmt = stmt.with_for_update()
    order = session.scalars(stmt).first()
    if order is None:
        raise NotFound(f"no order {order_id}", order_id=order_id)
    return order


def orders_out(session: Session, orders: Sequence[Order]) -> list[dict[str, Any]]:
    """Serialise orders with their lines and fulfilments in three queries, whatever the count."""
    if not orders:
        return []
    ids = [o.id for o in orders]
    skus = {}
    lines: dict[int, list[dict[str, Any]]] = {}
    for ln, code in session.execute(
        select(OrderLine, Sku.code).join(Sku, Sku.id == OrderLine.sku_id)
        .where(OrderLine.order_id.in_(ids)).order_by(OrderLine.order_id, OrderLine.line_no)
    ).tuples():  # fmt: skip
        skus[ln.sku_id] = code
        lines.setdefault(ln.order_id, []).append(
            {
                "sku": code,
                "qty": ln.qty,
                "backordered": ln.backordered,
                "cancelled": ln.cancelled,
                "returned": ln.returned,
            }
        )
    locs = dict(session.execute(select(Location.id, Location.code)).tuples().all())
    chans = dict(session.execute(select(Channel.id, Channel.code)).tuples().all())
    fuls: dict[int, list[dict[str, Any]]] = {}
    by_fid: dict[int, dict[str, Any]] = {}
    for f in session.scalars(select(Fulfilment).where(Fulfilment.order_id.in_(ids)).order_by(Fulfilment.id)):
        out = fulfilment_out(f, locs, [])
        by_fid[f.id] = out
        fuls.setdefault(f.order_id, []).append(out)
    if by_fid:
        for fl, code in session.execute(
            select(FulfilmentLine, Sku.code).join(Sku, Sku.id == FulfilmentLine.sku_id)
            .where(FulfilmentLine.fulfilment_id.in_(list(by_fid))).order_by(FulfilmentLine.id)
        ).tuples():  # fmt: skip
            by_fid[fl.fulfilment_id]["lines"].append(_fline_out(fl, code))
    return [
        {
            "id": o.id, "external_id": o.external_id, "status": o.status, "channel": chans.get(o.channel_id),
            "customer_ref": o.customer_ref,
            "delivery": _delivery_out(o.delivery_type, o.ship_lat, o.ship_lon, o.ship_postcode,
                                      locs.get(o.pickup_location_id or -1)),
            "lines": lines.get(o.id, []), "fulfilments": fuls.get(o.id, []), "routing": o.routing,
            "created_at": o.created_at, "updated_at": o.updated_at,
        }
        for o in orders
    ]  # fmt: skip


def _fline_out(fl: FulfilmentLine, code: str) -> dict[str, Any]:
    return {"sku": code, "qty": fl.qty, "reserved": fl.reserved, "awaiting": fl.awaiting,
            "done": fl.done, "cancelled": fl.cancelled}  # fmt: skip


def fulfilment_out(f: Fulfilment, locs: dict[int, str], lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f.id, "order_id": f.order_id, "location": locs.get(f.location_id), "type": f.type,
        "status": f.status, "to_location": locs.get(f.to_location_id or -1), "at_risk": f.at_risk,
        "ready_at": f.ready_at, "hold_until": f.hold_until, "lines": lines,
    }  # fmt: skip


@dataclass(frozen=True)
class OrderFilter:
    status: str | None = None
    location: str | None = None
    channel: str | None = None
    customer_ref: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    allowed_locations: frozenset[int] | None = None


def list_orders(
    session: Session, flt: OrderFilter, *, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Orders newest first with filters, keyset-paged by id."""
    stmt = select(Order).order_by(Order.id.desc()).limit(limit + 1)
    if flt.status:
        stmt = stmt.where(Order.status == flt.status)
    if flt.channel:
        stmt = stmt.where(
            Order.channel_id == select(Channel.id).where(Channel.code == flt.channel).scalar_subquery()
        )
    if flt.customer_ref:
        stmt = stmt.where(Order.customer_ref == flt.customer_ref)
    if flt.created_from:
        stmt = stmt.where(Order.created_at >= flt.created_from)
    if flt.created_to:
        stmt = stmt.where(Order.created_at < flt.created_to)
    if flt.location or flt.allowed_locations is not None:
        sub = select(Fulfilment.order_id).where(Fulfilment.order_id == Order.id)
        if flt.location:
            sub = sub.where(
                Fulfilment.location_id
                == select(Location.id).where(Location.code == flt.location).scalar_subquery()
            )
        if flt.allowed_locations is not None:
            sub = sub.where(Fulfilment.location_id.in_(flt.allowed_locations))
        stmt = stmt.where(sub.exists())
    if before_id is not None:
        stmt = stmt.where(Order.id < before_id)
    rows = list(session.scalars(stmt))
    page = rows[:limit]
    return orders_out(session, page), (page[-1].id if len(rows) > limit else None)


# ---------------------------------------------------------------- life cycle
def _fulfilment(session: Session, fid: int) -> Fulfilment:
    f = session.scalars(select(Fulfilment).where(Fulfilment.id == fid).with_for_update()).first()
    if f is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    return f


def _lines(session: Session, fid: int) -> list[FulfilmentLine]:
    return list(session.scalars(select(FulfilmentLine).where(FulfilmentLine.fulfilment_id == fid)
                                .order_by(FulfilmentLine.sku_id).with_for_update()))  # fmt: skip


def _move(session: Session, legs: list[Leg], now: datetime) -> None:
    changed = record(session, legs, now)
    events.stock_transitions(session, changed, now)
    # Units given back (a cancel, a return, a transfer received) may make good another promise.
    clear_recovered(session, [k for k, d in changed.items() if d.on_hand > 0 or d.reserved < 0], now)


def _event(f: Fulfilment, type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "order_id": f.order_id, "fulfilment_id": f.id,
            "payload": {"order_id": f.order_id, "fulfilment_id": f.id, "status": f.status, **extra}}  # fmt: skip


def refresh_order_status(session: Session, order_id: int, now: datetime) -> str:
    """Recompute an order's status from its fulfilments and back-ordered units."""
    fs = (
        session.execute(select(Fulfilment.type, Fulfilment.status).where(Fulfilment.order_id == order_id))
        .tuples()
        .all()
    )
    back = sum(
        ln.backordered for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
    )
    status = lifecycle.order_status(list(fs), back)
    session.execute(update(Order).where(Order.id == order_id).values(status=status, updated_at=now))
    return status


def transition(
    session: Session, fid: int, target: Status, *, scope: frozenset[int] | None = None
) -> dict[str, Any]:
    """Move a fulfilment along one edge of its life cycle, with the ledger movements it implies."""
    now = utcnow()
    order = _order_row(session, _peek_order(session, fid), lock=True)
    before = order.status  # refresh_order_status writes by statement: this stays the old status
    f = _fulfilment(session, fid)
    # A transfer is received by the store it arrives at, everything else by the location acting.
    _check_scope(f, scope, at=f.to_location_id if target is Status.RECEIVED else None)
    lifecycle.check_transition(f.type, f.status, target)
    if target is Status.CANCELLED and f.type == "transfer" and f.feeds_fulfilment_id is not None:
        fed = session.get(Fulfilment, f.feeds_fulfilment_id)
        if fed is not None and lifecycle.is_open(fed.status):
            # Cancelling only the transfer would leave the pickup waiting for units that never come.
            raise lifecycle.InvalidTransition(
                "this transfer feeds an open pickup: cancel the order's lines or the pickup instead",
                pickup_fulfilment_id=fed.id,
            )
    lines = _lines(session, fid)
    legs: list[Leg] = []
    evs: list[dict[str, Any]] = []
    if target in (Status.READY_FOR_PICKUP, Status.COLLECTED) and any(ln.awaiting for ln in lines):
        # (A ready pickup can await units again: a till sale there re-routed them to a transfer.)
        waiting = {ln.sku_id: ln.awaiting for ln in lines if ln.awaiting}
        names = dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(waiting))).tuples().all())
        raise lifecycle.InvalidTransition(
            "this pickup still waits for transferred units",
            awaiting=[{"sku": names[i], "qty": q} for i, q in sorted(waiting.items())],
        )
    if target in (Status.SHIPPED, Status.COLLECTED):
        # Both hand the goods over: the reservation becomes a fulfilment (or transfer-out) movement.
        kind = Kind.TRANSFER_OUT if f.type == "transfer" else Kind.FULFILMENT
        for ln in lines:
            if ln.reserved:
                legs.append(Leg(kind, ln.sku_id, f.location_id, ln.reserved,
                                Deltas(on_hand=-ln.reserved, reserved=-ln.reserved),
                                order_id=f.order_id, fulfilment_id=f.id))  # fmt: skip
                ln.done, ln.reserved = ln.done + ln.reserved, 0
    elif target is Status.RECEIVED:
        legs += _receive_transfer(session, f, lines)
    elif target in (Status.CANCELLED, Status.EXPIRED):
        if target is Status.CANCELLED:
            _count_cancelled(session, f, lines)
        legs += _release(session, f, lines, now)
    f.status = target.value
    f.updated_at = now
    _move(session, legs, now)
    evs.append(_event(f, f"fulfilment.{target.value}"))
    events.emit(session, evs, now)
    session.flush()
    if refresh_order_status(session, f.order_id, now) == "cancelled" and before != "cancelled":
        events.emit(session, [{"type": "order.cancelled", "order_id": f.order_id,
                               "payload": {"order_id": f.order_id, "fulfilment_id": f.id}}], now)  # fmt: skip
    locs = dict(session.execute(select(Location.id, Location.code)).tuples().all())
    codes = dict(
        session.execute(select(Sku.id, Sku.code).where(Sku.id.in_([ln.sku_id for ln in lines])))
        .tuples()
        .all()
    )
    return fulfilment_out(f, locs, [_fline_out(ln, codes[ln.sku_id]) for ln in lines])


def _count_cancelled(session: Session, f: Fulfilment, lines: list[FulfilmentLine]) -> None:
    """Units a cancelled pickup or shipment still held count as cancelled on the order's lines."""
    if f.type == "transfer":
        return  # a transfer's units belong to the pickup it feeds, which counts them
    held = {ln.sku_id: ln.reserved + ln.awaiting for ln in lines if ln.reserved + ln.awaiting}
    if not held:
        return
    for ol in session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id == f.order_id, OrderLine.sku_id.in_(held))
        .with_for_update()
    ):
        ol.cancelled += held[ol.sku_id]


def _check_scope(f: Fulfilment, scope: frozenset[int] | None, *, at: int | None = None) -> None:
    """Staff act only on fulfilments at their own locations (`at`: where this step happens)."""
    if scope is not None and (f.location_id if at is None else at) not in scope:
        raise Forbidden("this key is not for that location")


def _peek_order(session: Session, fid: int) -> int:
    oid = session.scalar(select(Fulfilment.order_id).where(Fulfilment.id == fid))
    if oid is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    return int(oid)


def _give_back(f: Fulfilment, sku_id: int, qty: int, reason: str | None = None) -> list[Leg]:
    """Legs that give back qty a fulfilment reserved: released where it was held, and for a
    transfer no longer expected at the store it was going to."""
    legs = [Leg(Kind.RELEASE, sku_id, f.location_id, qty, Deltas(reserved=-qty), order_id=f.order_id,
                fulfilment_id=f.id, reason=reason)]  # fmt: skip
    if f.type == "transfer" and f.to_location_id is not None:
        legs.append(Leg(Kind.TRANSFER_CANCELLED, sku_id, f.to_location_id, qty, Deltas(incoming=-qty),
                        order_id=f.order_id, fulfilment_id=f.id, reason=reason))  # fmt: skip
    return legs


def _free_day_slot(session: Session, f: Fulfilment) -> None:
    """A shipment that will not leave gives its slot in the day's capacity back (once picking
    started, the day's work was spent)."""
    if f.type != "ship" or f.status != Status.ALLOCATED.value:
        return
    loc = session.get(Location, f.location_id)
    if loc is not None and loc.daily_capacity is not None:
        release_capacity(session, f.location_id, f.created_at.astimezone(ZoneInfo(loc.timezone)).date())


def _release(session: Session, f: Fulfilment, lines: list[FulfilmentLine], now: datetime) -> list[Leg]:
    """Legs that give back what an open fulfilment holds: reservations, and expected transfers."""
    legs = []
    for ln in lines:
        if ln.reserved:
            legs += _give_back(f, ln.sku_id, ln.reserved)
        ln.cancelled += ln.reserved + ln.awaiting
        ln.reserved = 0
        ln.awaiting = 0
    if f.type == "pickup":
        # Transfers feeding this pickup have nowhere to go: cancel those not yet on the road.
        for t in session.scalars(
            select(Fulfilment).where(Fulfilment.feeds_fulfilment_id == f.id).with_for_update()
        ):
            if lifecycle.is_open(t.status):
                legs += _release(session, t, _lines(session, t.id), now)
                t.status = Status.CANCELLED.value
                t.updated_at = now
                events.emit(session, [_event(t, "fulfilment.cancelled")], now)
    _free_day_slot(session, f)
    return legs


def _shrink_transfers(
    session: Session, pickup: Fulfilment, sku_id: int, qty: int, now: datetime
) -> tuple[list[Leg], list[dict[str, Any]]]:
    """Units a pickup no longer awaits: transfers not yet on the road give them back (newest first);
    units already travelling arrive as the store's own stock."""
    legs: list[Leg] = []
    evs: list[dict[str, Any]] = []
    feeding = session.scalars(
        select(Fulfilment).where(Fulfilment.feeds_fulfilment_id == pickup.id,
                                 Fulfilment.status.in_([Status.ALLOCATED.value, Status.PICKING.value]))
        .order_by(Fulfilment.id.desc()).with_for_update()
    ).all()  # fmt: skip
    for t in feeding:
        t_lines = _lines(session, t.id)
        for tl in t_lines:
            take = min(qty, tl.reserved) if tl.sku_id == sku_id else 0
            if not take:
                continue
            tl.reserved -= take
            tl.cancelled += take
            qty -= take
            legs += _give_back(t, sku_id, take)
        if all(tl.reserved == 0 for tl in t_lines):
            t.status, t.updated_at = Status.CANCELLED.value, now
            evs.append(_event(t, "fulfilment.cancelled"))
        if qty == 0:
            break
    return legs, evs


def _receive_transfer(session: Session, f: Fulfilment, lines: list[FulfilmentLine]) -> list[Leg]:
    """Units arrive at the pickup store: incoming becomes on_hand, reserved for the pickup."""
    if f.to_location_id is None:
        return []
    pickup = session.scalars(
        select(Fulfilment).where(Fulfilment.id == f.feeds_fulfilment_id).with_for_update()
    ).first()
    pickup_lines = {ln.sku_id: ln for ln in _lines(session, pickup.id)} if pickup else {}
    legs = []
    for ln in lines:
        if not ln.done:
            continue
        legs.append(Leg(Kind.TRANSFER_IN, ln.sku_id, f.to_location_id, ln.done, Deltas(on_hand=ln.done, incoming=-ln.done),
                        order_id=f.order_id, fulfilment_id=f.id))  # fmt: skip
        target = pickup_lines.get(ln.sku_id)
        if pickup is not None and target is not None and lifecycle.is_open(pickup.status):
            qty = min(ln.done, target.awaiting)
            if qty:
                legs.append(Leg(Kind.RESERVATION, ln.sku_id, f.to_location_id, qty, Deltas(reserved=qty),
                                order_id=f.order_id, fulfilment_id=pickup.id))  # fmt: skip
                target.awaiting -= qty
                target.reserved += qty
    return legs


def cancel_order(
    session: Session, order_id: int, lines: Sequence[tuple[str, int]] | None = None
) -> dict[str, Any]:
    """Cancel a whole order, or some units of some lines; released units return to available."""
    now = utcnow()
    order = _order_row(session, order_id, lock=True)
    fuls = list(session.scalars(select(Fulfilment).where(Fulfilment.order_id == order_id)
                                .order_by(Fulfilment.id).with_for_update()))  # fmt: skip
    order_lines = {
        ln.sku_id: ln for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
    }
    legs: list[Leg] = []
    evs: list[dict[str, Any]] = []
    if lines is None:
        if not any(lifecycle.is_open(f.status) for f in fuls) and not any(
            ln.backordered for ln in order_lines.values()
        ):
            raise lifecycle.InvalidTransition(
                "nothing left to cancel in this order", order_status=order.status
            )
        for f in fuls:
            if lifecycle.is_open(f.status) and f.type != "transfer":
                f_lines = _lines(session, f.id)
                _count_cancelled(session, f, f_lines)
                legs += _release(session, f, f_lines, now)
                f.status, f.updated_at = Status.CANCELLED.value, now
                evs.append(_event(f, "fulfilment.cancelled"))
        for ln in order_lines.values():
            ln.cancelled += ln.backordered
            ln.backordered = 0
        evs.append({"type": "order.cancelled", "order_id": order_id, "payload": {"order_id": order_id}})
    else:
        ids = _sku_ids(session, [s for s, _ in lines])
        errors = []
        for i, (sku, qty) in enumerate(lines):
            ol = order_lines.get(ids[sku])
            if ol is None:
                errors.append({"field": f"lines[{i}].sku", "message": f"{sku} is not in this order"})
                continue
            left = qty
            take = min(left, ol.backordered)
            ol.backordered -= take
            ol.cancelled += take
            left -= take
            for f in fuls:
                if left == 0 or not lifecycle.is_open(f.status) or f.type == "transfer":
                    continue
                for fl in _lines(session, f.id):
                    if fl.sku_id != ids[sku] or left == 0:
                        continue
                    from_awaiting = min(left, fl.awaiting)
                    fl.awaiting -= from_awaiting
                    fl.cancelled += from_awaiting
                    left -= from_awaiting
                    if from_awaiting:
                        more_legs, more_evs = _shrink_transfers(session, f, fl.sku_id, from_awaiting, now)
                        legs += more_legs
                        evs += more_evs
                    from_reserved = min(left, fl.reserved)
                    if from_reserved:
                        fl.reserved -= from_reserved
                        fl.cancelled += from_reserved
                        left -= from_reserved
                        legs += _give_back(f, fl.sku_id, from_reserved)
            ol.cancelled += qty - left - take
            if left:
                errors.append(
                    {
                        "field": f"lines[{i}].qty",
                        "message": f"only {qty - left} of {sku} can still be cancelled",
                    }
                )
        if errors:
            raise InvalidInput("cannot cancel those units", errors, "cannot_cancel")
        for f in fuls:
            if lifecycle.is_open(f.status) and f.type != "transfer":
                fl_all = _lines(session, f.id)
                if all(fl.reserved == 0 and fl.awaiting == 0 for fl in fl_all):
                    legs += _release(session, f, fl_all, now)
                    f.status, f.updated_at = Status.CANCELLED.value, now
                    evs.append(_event(f, "fulfilment.cancelled"))
        evs.append({"type": "order.lines_cancelled", "order_id": order_id,
                    "payload": {"order_id": order_id, "lines": [{"sku": s, "qty": q} for s, q in lines]}})  # fmt: skip
    _move(session, legs, now)
    events.emit(session, evs, now)
    session.flush()
    if refresh_order_status(session, order_id, now) == "cancelled" and lines is not None:
        # The lines cancelled were all that was left: the order itself is now cancelled.
        events.emit(session, [{"type": "order.cancelled", "order_id": order_id,
                               "payload": {"order_id": order_id}}], now)  # fmt: skip
    session.flush()
    session.expire_all()
    return get_order(session, order_id)


# ---------------------------------------------------------------- returns
def record_return(
    session: Session, order_id: int, *, location: str, lines: Sequence[tuple[str, int, bool]],
    external_ref: str | None = None, scope: frozenset[int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Put delivered units back at a chosen location (restocked only if resellable); staff only at theirs."""
    now = utcnow()
    _order_row(session, order_id, lock=True)
    loc = session.scalar(select(Location).where(Location.code == location))
    if loc is None:
        raise InvalidInput(
            "unknown location",
            [{"field": "location", "message": f"unknown location {location!r}"}],
            "unknown_location",
        )
    if scope is not None and loc.id not in scope:
        raise Forbidden(f"this key is not for location {location}", location=location)
    ids = _sku_ids(session, [s for s, _, _ in lines])
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
        _move(session, legs, now)
    except exc.IntegrityError as error:
        raise IdempotencyConflict("this return was already recorded", external_ref=external_ref) from error
    events.emit(session, [{"type": "order.returned", "order_id": order_id,
                           "payload": {"order_id": order_id, "location": location,
                                       "lines": [{"sku": s, "qty": q, "resellable": r} for s, q, r in lines]}}], now)  # fmt: skip
    session.flush()
    return get_order(session, order_id)


# ---------------------------------------------------------------- shortages
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
        .where(tuple_(FulfilmentLine.sku_id, Fulfilment.location_id).in_(list(keys)), FulfilmentLine.reserved > 0,
               Fulfilment.status.in_([s.value for s in lifecycle.OPEN]))
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
) -> list[dict[str, Any]]:
    """After an outside fact: where on_hand no longer covers reserved, move the newest promises
    elsewhere if stock allows, else flag them at risk; every affected fulfilment gets an event."""
    short = session.execute(
        select(StockLevel.sku_id, StockLevel.location_id, StockLevel.on_hand, StockLevel.reserved)
        .where(tuple_in(keys), StockLevel.reserved > StockLevel.on_hand)
        .order_by(StockLevel.sku_id, StockLevel.location_id)
    ).all()
    report = []
    for sku_id, loc_id, on_hand, reserved in short:
        gap = reserved - max(on_hand, 0)
        affected = session.execute(
            select(Fulfilment, FulfilmentLine)
            .join(FulfilmentLine, FulfilmentLine.fulfilment_id == Fulfilment.id)
            .where(Fulfilment.location_id == loc_id, FulfilmentLine.sku_id == sku_id, FulfilmentLine.reserved > 0,
                   Fulfilment.status.in_([s.value for s in lifecycle.OPEN]))
            .order_by(Fulfilment.id.desc())
            .with_for_update()
        ).tuples().all()  # fmt: skip
        for f, fl in affected:
            if gap <= 0:
                break
            qty = min(gap, fl.reserved)
            gap -= qty
            moved_to = _reroute(session, f, fl, qty, policy, now)
            if moved_to is None:
                f.at_risk = True
                if f.type == "transfer" and f.feeds_fulfilment_id is not None:
                    # The pickup this transfer feeds will not be complete on time either.
                    fed = session.get(Fulfilment, f.feeds_fulfilment_id, with_for_update=True)
                    if fed is not None and lifecycle.is_open(fed.status):
                        fed.at_risk = True
            report.append({"fulfilment_id": f.id, "order_id": f.order_id, "sku_id": sku_id,
                           "location_id": loc_id, "qty": qty, "rerouted_to": moved_to})  # fmt: skip
            events.emit(session, [_event(f, "fulfilment.shortage", qty=qty, rerouted_to=moved_to,
                                         at_risk=moved_to is None)], now)  # fmt: skip
    if report:  # codes for the answer, one read each
        sku_ids, loc_ids = {r["sku_id"] for r in report}, {r["location_id"] for r in report}
        skus = dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(sku_ids))).tuples().all())
        locs = dict(
            session.execute(select(Location.id, Location.code).where(Location.id.in_(loc_ids))).tuples().all()
        )
        for r in report:
            r["sku"], r["location"] = skus[r["sku_id"]], locs[r.pop("location_id")]
    return report


def clear_recovered(session: Session, keys: Sequence[tuple[int, int]], now: datetime) -> list[int]:
    """Fulfilments flagged at risk whose location again holds every unit they reserve lose the flag
    (and so does a pickup flagged for a short transfer, once that transfer and the pickup are whole)."""
    locs = sorted({loc for _sku, loc in keys})
    if not locs:
        return []
    # SKIP LOCKED: this runs holding stock rows, and order changes lock fulfilments before stock;
    # waiting here could deadlock. A flag skipped now clears with a later movement.
    flagged = list(session.scalars(
        select(Fulfilment).where(Fulfilment.location_id.in_(locs), Fulfilment.at_risk,
                                 Fulfilment.status.in_([s.value for s in lifecycle.OPEN]))
        .order_by(Fulfilment.id).with_for_update(skip_locked=True)
    ))  # fmt: skip
    cleared = []
    for f in flagged:
        if _covered(session, f):
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
               StockLevel.reserved > StockLevel.on_hand)
    )  # fmt: skip
    feeding_at_risk = select(Fulfilment.id).where(
        Fulfilment.feeds_fulfilment_id == f.id,
        Fulfilment.at_risk,
        Fulfilment.status.in_([s.value for s in lifecycle.OPEN]),
    )
    return session.scalar(select(short_line.exists() | feeding_at_risk.exists())) is False


def tuple_in(keys: Sequence[tuple[int, int]]) -> Any:
    return tuple_(StockLevel.sku_id, StockLevel.location_id).in_(list(keys))


def _reroute(
    session: Session, f: Fulfilment, fl: FulfilmentLine, qty: int, policy: Policy, now: datetime
) -> str | None:
    """Try to take qty of one line from elsewhere; returns the new location code, or None."""
    order = _order_row(session, f.order_id)
    sku_code = session.scalar(select(Sku.code).where(Sku.id == fl.sku_id))
    channel_code = session.scalar(select(Channel.code).where(Channel.id == order.channel_id))
    if sku_code is None or channel_code is None:
        return None
    ctx = Context(order.channel_id, _channel(session, channel_code)[1] == "online", {sku_code: fl.sku_id})
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
    if f.type in ("pickup", "transfer"):
        request = routing.RoutingRequest((routing.Line(sku_code, qty),), routing.PickupAt(own), True, False)
    else:
        request = routing.RoutingRequest(
            (routing.Line(sku_code, qty),), routing.ShipTo(order.ship_lat, order.ship_lon), False, False
        )
    decision = routing.route(request, usable, policy.routing_policy())
    sources = [a for a in decision.allocations if a.lines and a.location != own]
    if decision.status != "allocated" or len(sources) != 1:
        return None
    target = sources[0]
    target_id = ctx.locations[target.location].id
    new_type = "ship" if f.type == "ship" else "transfer"
    feeds = f.id if f.type == "pickup" else f.feeds_fulfilment_id
    existing = session.scalars(select(Fulfilment).where(
        Fulfilment.order_id == f.order_id, Fulfilment.location_id == target_id, Fulfilment.type == new_type,
        Fulfilment.status == "allocated", Fulfilment.feeds_fulfilment_id.is_(None) if feeds is None
        else Fulfilment.feeds_fulfilment_id == feeds).with_for_update()).first()  # fmt: skip
    try:
        with session.begin_nested():
            reserve(session, ctx, {(fl.sku_id, target_id): qty}, now)
            if new_type == "ship" and existing is None:
                take_capacity(session, ctx, [target_id])  # a new shipment counts against the day
    except LostRace:
        return None
    legs = _give_back(f, fl.sku_id, qty, reason="shortage")
    fl.reserved -= qty
    if f.type == "pickup":
        # The pickup still happens here; the units now come by transfer.
        fl.awaiting += qty
        to_loc: int | None = f.location_id
    elif f.type == "transfer":
        # The pickup keeps waiting for these units; another location sends them instead.
        fl.cancelled += qty
        to_loc = f.to_location_id
    else:
        fl.cancelled += qty
        to_loc = None
    if existing is None:
        existing = Fulfilment(order_id=f.order_id, location_id=target_id, type=new_type, status="allocated",
                              to_location_id=to_loc, feeds_fulfilment_id=feeds,
                              at_risk=False, created_at=now, updated_at=now)  # fmt: skip
        session.add(existing)
        session.flush()
    line = session.scalars(select(FulfilmentLine).where(FulfilmentLine.fulfilment_id == existing.id,
                                                        FulfilmentLine.sku_id == fl.sku_id).with_for_update()).first()  # fmt: skip
    if line is None:
        session.add(
            FulfilmentLine(
                fulfilment_id=existing.id,
                sku_id=fl.sku_id,
                qty=qty,
                reserved=qty,
                awaiting=0,
                done=0,
                cancelled=0,
            )
        )
    else:
        line.qty += qty
        line.reserved += qty
    legs.append(Leg(Kind.RESERVATION, fl.sku_id, target_id, qty, Deltas(reserved=qty), order_id=f.order_id,
                    fulfilment_id=existing.id, reason="shortage"))  # fmt: skip
    if new_type == "transfer":
        legs.append(Leg(Kind.TRANSFER_EXPECTED, fl.sku_id, anchor_id, qty, Deltas(incoming=qty),
                        order_id=f.order_id, fulfilment_id=existing.id, reason="shortage"))  # fmt: skip
    # The new location's reserved was already raised by reserve(): record that leg without applying it again.
    changed = record(session, [leg for leg in legs if leg.kind is not Kind.RESERVATION], now)
    insert_movements(session, [leg for leg in legs if leg.kind is Kind.RESERVATION], now)
    changed[(fl.sku_id, target_id)] = changed.get((fl.sku_id, target_id), Deltas()) + Deltas(reserved=qty)
    events.stock_transitions(session, changed, now)
    if all(x.reserved == 0 and x.awaiting == 0 for x in _lines(session, f.id)) and f.type != "pickup":
        _free_day_slot(session, f)
        f.status, f.updated_at = Status.CANCELLED.value, now
        events.emit(session, [_event(f, "fulfilment.cancelled", reason="shortage")], now)
    events.emit(session, [{"type": "fulfilment.allocated", "order_id": f.order_id, "fulfilment_id": existing.id,
                           "payload": {"order_id": f.order_id, "fulfilment_id": existing.id, "location": target.location,
                                       "type": new_type, "lines": [{"sku": sku_code, "qty": qty}], "reason": "shortage"}}], now)  # fmt: skip
    return target.location


def get_fulfilment(session: Session, fid: int, *, scope: frozenset[int] | None = None) -> dict[str, Any]:
    """One fulfilment with its lines; staff only for their own locations."""
    f = session.get(Fulfilment, fid)
    if f is None:
        raise NotFound(f"no fulfilment {fid}", fulfilment_id=fid)
    _check_scope(f, scope)
    locs = dict(session.execute(select(Location.id, Location.code)).tuples().all())
    rows = session.execute(
        select(FulfilmentLine, Sku.code).join(Sku, Sku.id == FulfilmentLine.sku_id)
        .where(FulfilmentLine.fulfilment_id == fid).order_by(FulfilmentLine.id)
    ).tuples().all()  # fmt: skip
    return fulfilment_out(f, locs, [_fline_out(fl, code) for fl, code in rows])
