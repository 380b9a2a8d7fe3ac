"""Routing an order against fresh stock: the candidates read, the decision, and its refusals."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from app.db import Raw, utcnow
from app.domain import routing
from app.domain.errors import Forbidden, InsufficientStock, InvalidInput
from app.domain.ledger import free_units, safety_for
from app.services.orders.commands import PickupUnavailable, PlaceOrder, Policy
from app.services.orders.refs import channel_of, place_point, sku_ids
from app.services.orders.views import routing_json
from app.services.pickup import promise

log = logging.getLogger(__name__)


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
            safety = safety_for(override, dsafe)
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
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Zones are validated when given; one stored before that must not stop every order.
        log.warning("location time zone %r unknown; counting its days in UTC", name)
        return ZoneInfo("UTC")


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


def _refuse(decision: routing.RoutingDecision) -> None:
    if decision.reason == "pickup_location_unavailable":
        raise PickupUnavailable(
            "that store does not offer pickup for this channel",
            errors=[{"field": "delivery.location", "message": "not an active pickup store for this channel"}],
            routing=routing_json(decision),
        )
    raise InsufficientStock(
        "no location (or allowed split) can fulfil this order now",
        alternatives=[{"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives],
        routing=routing_json(decision),
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
    channel_id, kind = channel_of(session, cmd.channel)
    if kind != "online" and not cmd.till:
        # A till channel sells without safety stock: only the store side (ops, POS sync) uses it.
        raise Forbidden(
            f"channel {cmd.channel} is a store till channel; storefront orders use an online channel",
            errors=[{"field": "channel", "message": "a store till channel: not for storefront orders"}],
        )
    ctx = Context(channel_id, kind == "online", sku_ids(session, [s for s, _ in cmd.lines]))
    point = place_point(session, cmd.delivery) if cmd.delivery.type == "ship" else (None, None)
    candidates = load_candidates(session, ctx, now, cmd if placing else None)
    if cmd.delivery.type == "pickup" and cmd.delivery.location not in ctx.locations:
        raise InvalidInput(
            "unknown pickup store",
            [{"field": "delivery.location", "message": f"unknown location {cmd.delivery.location!r}"}],
            "unknown_location",
        )
    decision = routing.route(_routing_request(cmd, *point), candidates, policy.routing_policy())
    if cmd.delivery.type == "pickup" and decision.status != "refused" and cmd.delivery.location:
        with_transfer = any(a.type == "transfer" for a in decision.allocations)
        when = promise.ready_by(session, ctx.locations[cmd.delivery.location].id, now, with_transfer=with_transfer)
        decision = dataclasses.replace(decision, ready_by=when)
    return ctx, decision, point


def quote(session: Session, cmd: PlaceOrder, policy: Policy) -> routing.RoutingDecision:
    """The decision placing this order would take now, without reserving anything."""
    _ctx, decision, _ = decide(session, cmd, policy, utcnow())
    return decision


def refuse_after_lost_races(session: Session, cmd: PlaceOrder, policy: Policy) -> NoReturn:
    """Retries spent on lost races: refuse as routing on the stock as it stands now explains it."""
    _ctx, decision, _ = decide(session, cmd, policy, utcnow())
    if decision.status == "refused":
        _refuse(decision)
    raise InsufficientStock(
        "concurrent orders kept taking this stock before it could be reserved; try again",
        alternatives=[{"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives],
        routing=routing_json(decision),
    )
