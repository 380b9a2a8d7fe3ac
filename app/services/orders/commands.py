"""What placing an order asks for (command, delivery), the routing policy, and its refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.db import Retry
from app.domain import routing
from app.domain.errors import DomainError, InsufficientStock


class PickupUnavailable(DomainError):
    code = "pickup_location_unavailable"
    kind = "invalid"


class LostRace(Retry, InsufficientStock):
    """Stock or capacity went to a concurrent order between routing and reserving: retried with
    fresh stock; once retries are spent it is the 409 insufficient_stock it amounts to."""


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
    customer_name: str | None = None
    # Whether the caller may use a store's till channel (ops, the POS side); not part of the order.
    till: bool = False

    def fingerprint(self) -> str:
        """What makes two requests 'the same order' for idempotency."""
        body = {
            "channel": self.channel, "lines": sorted(self.lines), "delivery": self.delivery.__dict__,
            "external_id": self.external_id, "customer_ref": self.customer_ref,
            "allow_split": self.allow_split, "allow_partial": self.allow_partial,
        }  # fmt: skip
        if self.customer_name is not None:
            # Only when given: orders placed before the field existed keep their fingerprint.
            body["customer_name"] = self.customer_name
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


def policy_from_config(config: Mapping[str, Any]) -> Policy:
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
