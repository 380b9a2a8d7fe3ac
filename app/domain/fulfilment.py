"""Fulfilment life cycle. Invariants: one fulfilment per location per order; a fulfilment moves
only along EDGES; leaving for cancelled, expired or a partial hand-over releases what was
reserved; shipped and collected turn the reservation into a fulfilment movement."""

from __future__ import annotations

from enum import StrEnum

from app.domain.errors import DomainError


class Status(StrEnum):
    ALLOCATED = "allocated"
    PICKING = "picking"
    READY_FOR_PICKUP = "ready_for_pickup"
    SHIPPED = "shipped"
    RECEIVED = "received"  # a transfer that arrived at its pickup store
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


EDGES: dict[str, dict[Status, frozenset[Status]]] = {
    "ship": {
        Status.ALLOCATED: frozenset({Status.PICKING, Status.CANCELLED}),
        Status.PICKING: frozenset({Status.SHIPPED, Status.CANCELLED}),
    },
    "pickup": {
        Status.ALLOCATED: frozenset({Status.PICKING, Status.CANCELLED}),
        Status.PICKING: frozenset({Status.READY_FOR_PICKUP, Status.CANCELLED}),
        Status.READY_FOR_PICKUP: frozenset({Status.COLLECTED, Status.EXPIRED, Status.CANCELLED}),
    },
    "transfer": {
        Status.ALLOCATED: frozenset({Status.PICKING, Status.CANCELLED}),
        Status.PICKING: frozenset({Status.SHIPPED, Status.CANCELLED}),
        Status.SHIPPED: frozenset({Status.RECEIVED}),
    },
}

OPEN = frozenset({Status.ALLOCATED, Status.PICKING, Status.READY_FOR_PICKUP})


class InvalidTransition(DomainError):
    code = "invalid_transition"


def check_transition(kind: str, current: str, target: Status) -> None:
    """Refuse any move that is not an edge of the fulfilment's life cycle."""
    allowed = EDGES[kind].get(Status(current), frozenset())
    if target not in allowed:
        raise InvalidTransition(
            f"a {kind} fulfilment cannot go from {current} to {target}",
            current=current,
            target=str(target),
            allowed=sorted(str(s) for s in allowed),
        )


def is_open(status: str) -> bool:
    """Open fulfilments still hold a reservation that may be released."""
    return Status(status) in OPEN


def order_status(fulfilments: list[tuple[str, str]], backordered: int) -> str:
    """An order is completed only when nothing is left to do: back-ordered units still open keep it
    `backordered` even after everything else was delivered (cancelling them makes it completed
    if something was delivered, cancelled if nothing was).

    In full: any open fulfilment (or transfer on the road) makes it `allocated`, or
    `partially_allocated` beside back-ordered units; otherwise open back-ordered units make it
    `backordered`; otherwise a shipment or collection makes it `completed`, and nothing delivered
    `cancelled`.
    """
    in_progress = any(
        Status(st) in OPEN or (kind == "transfer" and st == Status.SHIPPED) for kind, st in fulfilments
    )
    if in_progress:
        return "partially_allocated" if backordered else "allocated"
    if backordered:
        return "backordered"
    if any(kind != "transfer" and st in (Status.SHIPPED, Status.COLLECTED) for kind, st in fulfilments):
        return "completed"
    return "cancelled"
