"""Read models of orders and fulfilments: what every surface (API, pages, events) shows of them.

Services return these; the API serialises them only through its *Out schemas. The routing part of
an order is the domain's own RoutingDecision (placed now, or rebuilt from what was stored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.domain import routing


@dataclass(frozen=True, slots=True)
class FulfilmentLineView:
    sku: str
    qty: int
    reserved: int
    awaiting: int
    done: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class FulfilmentView:
    id: int
    order_id: int
    location: str
    type: str
    status: str
    to_location: str | None
    at_risk: bool
    ready_at: datetime | None
    hold_until: datetime | None
    lines: Sequence[FulfilmentLineView]
    promised_at: datetime | None = None
    collected_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderLineView:
    sku: str
    qty: int
    backordered: int
    cancelled: int
    returned: int


@dataclass(frozen=True, slots=True)
class ShipToView:
    lat: float | None
    lon: float | None
    postcode: str | None
    type: Literal["ship"] = "ship"


@dataclass(frozen=True, slots=True)
class PickupAtView:
    location: str | None
    type: Literal["pickup"] = "pickup"


@dataclass(frozen=True, slots=True)
class OrderView:
    id: int
    external_id: str | None
    status: str
    channel: str | None
    customer_ref: str | None
    delivery: ShipToView | PickupAtView
    lines: Sequence[OrderLineView]
    fulfilments: Sequence[FulfilmentView]
    routing: routing.RoutingDecision
    created_at: datetime
    updated_at: datetime
    customer_name: str | None = None


def delivery_view(
    kind: str, lat: float | None, lon: float | None, postcode: str | None, location: str | None
) -> ShipToView | PickupAtView:
    """Where the order goes: a pickup store, or a ship-to point (and the postcode it came from)."""
    if kind == "pickup":
        return PickupAtView(location)
    return ShipToView(lat, lon, postcode)


def visible_to(order: OrderView, location_codes: frozenset[str] | None) -> OrderView:
    """The order as staff of some locations see it: only the fulfilments at their locations (and
    transfers arriving there), and only what routing said about those locations."""
    if location_codes is None:
        return order
    mine = [f for f in order.fulfilments if f.location in location_codes or f.to_location in location_codes]
    r = order.routing
    seen = dataclasses.replace(
        r,
        allocations=tuple(a for a in r.allocations if a.location in location_codes),
        explanation=tuple(n for n in r.explanation if n.location in location_codes),
        alternatives=tuple(a for a in r.alternatives if a.location in location_codes),
    )
    return dataclasses.replace(order, fulfilments=mine, routing=seen)


# ---------------------------------------------------------------- routing, stored as JSON
def routing_json(decision: routing.RoutingDecision) -> dict[str, Any]:
    """The decision as stored with the order (the same members the API shows)."""

    def lines(ls: Sequence[routing.Line]) -> list[dict[str, Any]]:
        return [{"sku": ln.sku, "qty": ln.qty} for ln in ls]

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
                "lines": lines(a.lines),
                "collect_lines": lines(a.collect_lines),
            }
            for a in decision.allocations
        ],
        "backordered": lines(decision.backordered),
        "alternatives": [
            {"location": a.location, "distance_km": a.distance_km} for a in decision.alternatives
        ],
        "ready_by": decision.ready_by.isoformat() if decision.ready_by else None,
    }


def routing_from_json(stored: Mapping[str, Any]) -> routing.RoutingDecision:
    """The decision an order was placed with, from what routing_json stored."""

    def lines(ls: Sequence[Mapping[str, Any]]) -> tuple[routing.Line, ...]:
        return tuple(routing.Line(ln["sku"], ln["qty"]) for ln in ls)

    return routing.RoutingDecision(
        status=stored["status"],
        reason=stored.get("reason"),
        allocations=tuple(
            routing.Allocation(
                a["location"],
                a["type"],
                lines(a["lines"]),
                a.get("to_location"),
                lines(a.get("collect_lines", ())),
            )
            for a in stored.get("allocations", ())
        ),
        backordered=lines(stored.get("backordered", ())),
        explanation=tuple(
            routing.CandidateNote(n["location"], n["outcome"], n["reason"], n.get("distance_km"))
            for n in stored.get("explanation", ())
        ),
        alternatives=tuple(
            routing.Alternative(a["location"], a.get("distance_km")) for a in stored.get("alternatives", ())
        ),
        ready_by=datetime.fromisoformat(stored["ready_by"]) if stored.get("ready_by") else None,
    )
