"""Events the service publishes (outbox, then webhooks). Invariant: an event is written in the
transaction that caused it, so it exists exactly when what it reports does; its type is one of
EVENT_TYPES and its payload is what a receiver needs without calling back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ORDER_EVENTS = (
    "order.created", "order.cancelled", "order.lines_cancelled", "fulfilment.allocated", "fulfilment.picking",
    "fulfilment.ready_for_pickup", "fulfilment.shipped", "fulfilment.received",
    "fulfilment.collected", "fulfilment.cancelled", "fulfilment.expired", "fulfilment.shortage",
    "order.returned", "fulfilment.pickup_reminder", "fulfilment.pickup_locked", "fulfilment.line_not_found",
)  # fmt: skip
STOCK_EVENTS = ("stock.out_of_stock", "stock.back_in_stock")
EVENT_TYPES = ORDER_EVENTS + STOCK_EVENTS


@dataclass(frozen=True, slots=True)
class Event:
    """One published fact: its type, what it is about, and its payload."""

    type: str
    payload: Mapping[str, Any]
    order_id: int | None = None
    fulfilment_id: int | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")


@dataclass(frozen=True, slots=True)
class FulfilmentRef:
    """What an event needs of a fulfilment (an ORM row or a read model both fit)."""

    id: int
    order_id: int
    status: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def lines_payload(lines: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": qty} for sku, qty in lines]


def order_created(order_id: int, external_id: str | None, status: str, customer_ref: str | None) -> Event:
    """A new order was placed (whatever its routing outcome)."""
    payload = {"order_id": order_id, "external_id": external_id, "status": status, "customer_ref": customer_ref}
    return Event("order.created", payload, order_id)


def order_cancelled(order_id: int, **extra: Any) -> Event:
    """Nothing of the order is left open."""
    return Event("order.cancelled", {"order_id": order_id, **extra}, order_id)


def lines_cancelled(order_id: int, lines: Sequence[tuple[str, int]]) -> Event:
    """Some units of some lines were cancelled; the order goes on."""
    return Event("order.lines_cancelled", {"order_id": order_id, "lines": lines_payload(lines)}, order_id)


def order_returned(order_id: int, location: str, lines: Sequence[tuple[str, int, bool]]) -> Event:
    """Delivered units came back at a location (restocked when resellable)."""
    payload = {"order_id": order_id, "location": location,
               "lines": [{"sku": s, "qty": q, "resellable": r} for s, q, r in lines]}  # fmt: skip
    return Event("order.returned", payload, order_id)


def fulfilment_allocated(
    order_id: int, fulfilment_id: int, location: str, type_: str, lines: Sequence[tuple[str, int]],
    reason: str | None = None, promised_at: datetime | None = None,
) -> Event:  # fmt: skip
    """Units were reserved at a location for a shipment, pickup or transfer (a pickup says when it
    is promised ready)."""
    payload: dict[str, Any] = {"order_id": order_id, "fulfilment_id": fulfilment_id, "location": location,
                               "type": type_, "lines": lines_payload(lines)}  # fmt: skip
    if reason is not None:
        payload["reason"] = reason
    if promised_at is not None:
        payload["promised_at"] = promised_at.isoformat()
    return Event("fulfilment.allocated", payload, order_id, fulfilment_id)


def fulfilment_event(type_: str, fulfilment_id: int, order_id: int, status: str, **extra: Any) -> Event:
    """A fulfilment moved (picking, shipped, cancelled...) or was affected (shortage)."""
    payload = {"order_id": order_id, "fulfilment_id": fulfilment_id, "status": status, **extra}
    return Event(type_, payload, order_id, fulfilment_id)


def stock_crossed(sku: str, location: str, channel: str, available: int) -> Event:
    """Available stock for a channel at a location went to zero, or back above it."""
    type_ = "stock.back_in_stock" if available > 0 else "stock.out_of_stock"
    return Event(type_, {"sku": sku, "location": location, "channel": channel, "available": available})
