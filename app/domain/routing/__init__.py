"""Order routing: decide which locations fulfil an order, and say why.

``route`` is a pure function of (request, candidates, policy). It reserves nothing; the service
layer applies the decision it returns. Every decision it returns keeps these invariants:

* Only ordered SKUs are allocated, and never more than a candidate's stock for that SKU
  (missing or non-positive stock counts as none).
* ``allocated`` and ``partial``: allocated units + backordered units == ordered units, per SKU.
  For pickup, "allocated" means the pickup store's own ``lines`` plus the ``transfer`` lines;
  ``collect_lines`` is their per-SKU sum, i.e. what the customer collects. ``refused``: nothing is
  allocated and nothing is backordered. ``allocated`` never has backordered lines.
* Every emitted ``Line`` has qty >= 1 and each location appears in at most one allocation.
* Shipping: one eligible location covering the whole order beats any split; a split never has
  more than ``policy.max_shipments`` ship allocations. Pickup: at most ``policy.max_shipments``
  transfer sources.
* Excluded candidates never receive an allocation: for shipping, inactive, not serving the
  channel, not shipping, or without capacity left today; for pickup, inactive or not serving the
  channel (capacity and the ship flag do not apply to pickups and internal transfers).
* Deterministic: every tie is broken by location code, so the same input gives the same decision
  and the order of the candidates does not matter (the explanation is sorted too).
* ``explanation`` holds exactly one note per candidate: chosen ones first (in allocation order),
  then rejected, then excluded, each group in ranking order.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.routing.model import (
    DEFAULT_CRITERIA,
    TRANSFER_CRITERIA,
    Allocation,
    Alternative,
    Candidate,
    CandidateNote,
    Criterion,
    Line,
    PickupAt,
    RoutingDecision,
    RoutingPolicy,
    RoutingRequest,
    ShipTo,
    initial_order_status,
    pickup_exclusion_reasons,
    ship_exclusion_reasons,
    transfer_exclusion_reasons,
)
from app.domain.routing.pickup import _route_pickup
from app.domain.routing.ship import _route_ship

__all__ = [
    "DEFAULT_CRITERIA", "TRANSFER_CRITERIA", "Allocation", "Alternative", "Candidate", "CandidateNote",
    "Criterion", "Line", "PickupAt", "RoutingDecision", "RoutingPolicy", "RoutingRequest", "ShipTo",
    "initial_order_status", "pickup_exclusion_reasons", "route", "ship_exclusion_reasons",
    "transfer_exclusion_reasons",
]  # fmt: skip


_DEFAULT_POLICY = RoutingPolicy()


def route(
    request: RoutingRequest,
    candidates: Sequence[Candidate],
    policy: RoutingPolicy = _DEFAULT_POLICY,
) -> RoutingDecision:
    """Route an order: one full location beats a split; else split, partial or refuse."""
    codes = [c.code for c in candidates]
    if len(set(codes)) != len(codes):
        # Ties are broken by code, so duplicate codes would make the decision order-dependent.
        raise ValueError(f"candidate codes must be unique, got {sorted(codes)}")
    if isinstance(request.delivery, PickupAt):
        return _route_pickup(request, request.delivery, candidates, policy)
    return _route_ship(request, request.delivery, candidates, policy)
