"""Read models of the reference data: what every surface (API, pages) shows of locations, SKUs
and channels.

The catalog service returns these; the API serialises them only through its *Out schemas
(tests/unit/test_read_models_match_schemas.py keeps the two field for field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocationView:
    code: str
    name: str
    kind: str
    lat: float | None
    lon: float | None
    postcode: str | None
    timezone: str
    active: bool
    ships: bool
    pickup: bool
    priority: int
    daily_capacity: int | None
    pick_minutes: int
    pickup_hold_hours: int
    default_safety_stock: int
    channels: Sequence[str]
    pickup_reminder_hours: int = 24
    opening_hours: Mapping[str, Sequence[Sequence[str]]] | None = None
    transfer_hours: int = 24
    not_found_policy: str = "reroute"


@dataclass(frozen=True, slots=True)
class SkuView:
    code: str
    name: str
    barcode: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class SkuUpsertView:
    """A batch of SKUs as saved, and how many of them were new."""

    created: int
    updated: int
    items: Sequence[SkuView]


@dataclass(frozen=True, slots=True)
class ChannelView:
    code: str
    name: str
    kind: str
    locations: Sequence[str]
