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


def normal_postcode(text: str) -> str:
    """A postcode as stored and looked up: upper case, single spaces, no edge spaces."""
    return " ".join(text.upper().split())


def parse_postcode_rows(rows: list[dict[str, str]]) -> tuple[list[tuple[str, float, float]], list[str]]:
    """Rows of a postcode file (postcode, lat, lon) as places, and every row at fault by line."""
    places: dict[str, tuple[str, float, float]] = {}
    errors = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        code = normal_postcode(row.get("postcode") or "")
        try:
            lat, lon = float(row.get("lat") or "nan"), float(row.get("lon") or "nan")
        except ValueError:
            lat = lon = float("nan")
        if not code or len(code) > 16:
            errors.append(f"line {line}: postcode must be 1 to 16 characters")
        elif not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails both comparisons
            errors.append(f"line {line}: lat/lon must be numbers within -90..90 and -180..180")
        else:
            places[code] = (code, lat, lon)  # a later line for the same postcode wins
    return list(places.values()), errors
