"""Orders: route, reserve without overselling, and move fulfilments through their life cycle.

Modules, in the order they build on each other: commands (what is asked), views (read models),
refs (lookups), candidates (routing against fresh stock), reservations (the conditional
reserve), rows (shared row steps), queries (reading), lifecycle, cancelling, returns, placing.
Shortage handling is app.services.shortages.
"""

from __future__ import annotations

# lifecycle uses app.services.shortages by module (it builds on candidates, reservations, rows).
from app.services.orders import (
    cancelling,
    candidates,
    commands,
    lifecycle,
    placing,
    queries,
    refs,
    reservations,
    returns,
    rows,
    views,
)
from app.services.orders.cancelling import cancel_order
from app.services.orders.candidates import quote
from app.services.orders.commands import (
    Delivery,
    LostRace,
    PickupUnavailable,
    PlaceOrder,
    Policy,
    policy_from_config,
)
from app.services.orders.lifecycle import refresh_order_status, transition
from app.services.orders.placing import Placed, place, place_order
from app.services.orders.queries import OrderFilter, get_fulfilment, get_order, list_orders
from app.services.orders.returns import record_return
from app.services.orders.views import FulfilmentView, OrderView

__all__ = [
    "Delivery", "FulfilmentView", "LostRace", "OrderFilter", "OrderView", "PickupUnavailable", "PlaceOrder",
    "Placed", "Policy", "cancel_order", "cancelling", "candidates", "commands", "get_fulfilment", "get_order",
    "lifecycle", "list_orders", "place", "place_order", "placing", "policy_from_config", "queries", "quote",
    "record_return", "refresh_order_status", "refs", "reservations", "returns", "rows", "transition", "views",
]  # fmt: skip
