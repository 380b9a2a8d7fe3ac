"""Distances on the earth's surface, for routing and availability by proximity."""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = radians(lat1), radians(lat2)
    dlat = p2 - p1
    dlon = radians(lon2 - lon1)
    a = sin(dlat / 2) ** 2 + cos(p1) * cos(p2) * sin(dlon / 2) ** 2
    # Rounding can push a a hair outside [0, 1] for antipodal points; asin would then fail.
    return 2 * EARTH_RADIUS_KM * asin(sqrt(min(1.0, max(0.0, a))))
