"""Read models of webhook subscriptions, their deliveries and the outbox events they carry: what
every surface (API, ops pages) shows of them.

The webhooks service returns these; the API serialises them only through its *Out schemas
(tests/unit/test_read_models_match_schemas.py keeps the two field for field). A subscription's
secret is in none of them: it is never shown once set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class WebhookView:
    id: int
    url: str
    event_types: Sequence[str]
    active: bool
    consecutive_failures: int
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None  # only while a delivery is owed
    delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    type: str
    order_id: int | None
    fulfilment_id: int | None
    payload: Mapping[str, Any]
    created_at: datetime
