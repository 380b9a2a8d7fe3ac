"""Shopify's shapes as our records: GraphQL nodes and REST webhook payloads, read defensively.

Pure functions, no HTTP: an answer that lacks a field becomes a problem on the record, not a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.sync.base import (
    IncomingLine,
    IncomingOrder,
    MalformedResponse,
    Observation,
)

PICKUP = "PICK_UP"  # PICKUP_POINT is a carrier's drop point: a shipment, not a store pickup


def _observation(loc: str, node: Any) -> Observation:
    if not isinstance(node, Mapping):
        return Observation("", loc, None, problem="inventory level is not an object", raw={"node": node})
    item = _get(node, "item")
    item_ref = item.get("id")
    raw = dict(node)
    as_of = _parse_time(node.get("updatedAt"))
    sku = _text(item.get("sku"))
    if not isinstance(item_ref, str) or not item_ref:
        return Observation("", loc, None, as_of=as_of, sku=sku, problem="level without an item id", raw=raw)
    available: Any = ...
    for q in node.get("quantities") or []:
        # Names other than available (committed, on_hand, or one newer than this code) are ignored.
        if isinstance(q, Mapping) and q.get("name") == "available":
            available = q.get("quantity")
    if item.get("tracked") is False or available is None:
        return Observation(item_ref, loc, None, as_of=as_of, tracked=False, sku=sku, raw=raw)
    if available is ...:
        problem = "level carries no 'available' quantity"
        return Observation(item_ref, loc, None, as_of=as_of, sku=sku, problem=problem, raw=raw)
    if not _is_int(available):
        problem = f"available {available!r} is not an integer"
        return Observation(item_ref, loc, None, as_of=as_of, sku=sku, problem=problem, raw=raw)
    return Observation(item_ref, loc, Decimal(int(available)), as_of=as_of, sku=sku, raw=raw)


def _graphql_order(node: Any) -> IncomingOrder:
    if not isinstance(node, Mapping):
        return IncomingOrder("", [], problem="order is not an object", raw={"node": node})
    problems: list[str] = []
    items = _get(node, "lineItems")
    if _field(_get(items, "pageInfo"), "hasNextPage") is True:
        problems.append("order has more than 250 line items")
    delivery: Mapping[str, Any] = _ship(node.get("shippingAddress"))
    fulfillment = _get(node, "fulfillmentOrders").get("nodes")
    for fo in fulfillment if isinstance(fulfillment, list) else []:
        if _field(_get(fo, "deliveryMethod"), "methodType") == PICKUP:
            loc = _field(_get(_get(fo, "assignedLocation"), "location"), "id")
            delivery = {"type": "pickup", "location_ref": loc if isinstance(loc, str) else None}
            if delivery["location_ref"] is None:
                problems.append("pickup order without an assigned location")
            break

    def item_of(li: Mapping[str, Any]) -> str | None:
        inv = _field(_get(_get(li, "variant"), "inventoryItem"), "id")
        return inv if isinstance(inv, str) else None

    nodes = items.get("nodes")
    return _order(
        node, node.get("id"), nodes if isinstance(nodes, list) else None, item_of,
        delivery, node.get("customer"), node.get("createdAt"), problems,
    )  # fmt: skip


def _order(
    raw: Mapping[str, Any], order_id: Any, items: list[Any] | None,
    item_of: Callable[[Mapping[str, Any]], str | None], delivery: Mapping[str, Any],
    customer: Any, created: Any, problems: list[str],
) -> IncomingOrder:  # fmt: skip
    """Both order shapes end here: every unreadable line is named, the order is kept with its raw."""
    external_id = _numeric(order_id)
    if external_id is None:
        problems.append(f"order id {order_id!r} is not a Shopify id")
    if not items:
        problems.append("order has no readable line items")
    lines: list[IncomingLine] = []
    for i, li in enumerate(items or []):
        if not isinstance(li, Mapping) or not _positive(li.get("quantity")):
            problems.append(f"line {i}: quantity {_field(li, 'quantity')!r} is not a positive integer")
            continue
        lines.append(IncomingLine(int(li["quantity"]), item_ref=item_of(li), sku=_text(li.get("sku"))))
    return IncomingOrder(
        external_id=external_id or "",
        lines=lines,
        customer_ref=_numeric(_field(customer, "id")),
        delivery=delivery,
        created_at=_parse_time(created),
        problem="; ".join(problems) or None,
        raw=dict(raw),
    )


def _ship(address: Any) -> dict[str, Any]:
    """Ship to the address's postcode and, when the shop geocoded it, its coordinates."""
    delivery: dict[str, Any] = {"type": "ship"}
    if not isinstance(address, Mapping):
        return delivery
    if _text(address.get("zip")):
        delivery["postcode"] = str(address["zip"]).strip()
    lat, lon = address.get("latitude"), address.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float) and not isinstance(lat, bool):
        delivery["lat"], delivery["lon"] = float(lat), float(lon)
    return delivery


def _connection(conn: Any, what: str) -> tuple[list[Any], bool, str | None]:
    if not isinstance(conn, Mapping) or not isinstance(conn.get("nodes"), list):
        raise MalformedResponse(f"shopify: {what} is not a connection: {str(conn)[:200]}")
    page = _get(conn, "pageInfo")
    has_next = page.get("hasNextPage") is True
    cursor = page.get("endCursor")
    if has_next and not isinstance(cursor, str):
        raise MalformedResponse(f"shopify: {what} says there is a next page but gives no endCursor")
    return list(conn["nodes"]), has_next, cursor if isinstance(cursor, str) else None


def _describe_errors(errors: Any) -> tuple[str, str | None]:
    if isinstance(errors, list):
        messages = [str(e.get("message")) if isinstance(e, Mapping) else str(e) for e in errors]
        code = next((c for c in (_code(e) for e in errors) if c), None)
        return "; ".join(messages)[:500], code
    return str(errors)[:500], None


def _code(error: Any) -> str | None:
    code = _field(_get(error, "extensions"), "code")
    return str(code) if code else None


def _get(value: Any, key: str) -> Mapping[str, Any]:
    """value[key] when both are mappings, else an empty mapping (GraphQL nulls are common)."""
    inner = value.get(key) if isinstance(value, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _is_int(value) and int(value) > 0


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _numeric(value: Any) -> str | None:
    """The number of an id: 820982911946154508 or gid://shopify/Order/820982911946154508."""
    if _is_int(value) and int(value) > 0:
        return str(value)
    if isinstance(value, str):
        tail = value.rsplit("/", 1)[-1].split("?", 1)[0]
        if tail.isascii() and tail.isdigit():
            return tail
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _iso(when: datetime) -> str:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bounded(value: Any, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except (TypeError, ValueError):
        number = default
    return min(max(number, 1), 250)
