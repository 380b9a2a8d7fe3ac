"""The availability baseline of bench_availability.py: a thin Flask + psycopg endpoint, never deployed.

GET /api/v1/availability?skus=A,B,...&channel=web[&lat=..&lon=..] runs the statements the
service runs (app/services/stock.py `availability()`: the channel, then SKUs x the channel's
active locations with their stock levels, as SQLAlchemy renders them) in one transaction on
a psycopg connection of the handling thread, and answers the same JSON: per SKU the units each
location can sell, its on_hand, reserved and incoming and its distance from (lat, lon), sorted
nearest first (by code without a point), and the total. No key, no schema validation, no
metrics, no ORM: what is left is Flask, psycopg and the rule itself. Free units and distances
come from app.domain, so both answers apply the same rule. An unknown channel or SKU is a 404.

gunicorn serves `bench.thin_availability:app`; the database is OMNISTOCK_DATABASE_URL.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from flask import Flask, request

from app.domain.geo import haversine_km
from app.domain.ledger import free_units

CHANNEL_SQL = "SELECT channels.id, channels.kind FROM channels WHERE channels.code = %s"
ROWS_SQL = """
SELECT skus.code, locations.code AS code_1, locations.lat, locations.lon, locations.default_safety_stock,
       stock_levels_1.on_hand, stock_levels_1.reserved, stock_levels_1.incoming, stock_levels_1.safety_stock
FROM skus JOIN channel_locations ON channel_locations.channel_id = %s
JOIN locations ON locations.id = channel_locations.location_id AND locations.active
LEFT OUTER JOIN stock_levels AS stock_levels_1
  ON stock_levels_1.sku_id = skus.id AND stock_levels_1.location_id = locations.id
WHERE skus.code IN ({codes})
"""
KNOWN_SQL = "SELECT skus.code FROM skus WHERE skus.code IN ({codes})"

DSN = os.environ.get("OMNISTOCK_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/omnistock_bench")
DSN = DSN.replace("postgresql+psycopg://", "postgresql://", 1)

app = Flask(__name__)
_local = threading.local()


def connection() -> psycopg.Connection[Any]:
    """The handling thread's own connection, opened on its first request."""
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DSN)
    return conn


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


@app.get("/readyz")
def readyz() -> dict[str, str]:
    connection().execute("SELECT 1")
    connection().rollback()
    return {"status": "ready"}


@app.get("/api/v1/availability")
def availability() -> Any:
    """Units sellable now per SKU, per location serving the channel and in total."""
    codes = list(dict.fromkeys(c.strip() for c in request.args.get("skus", "").split(",") if c.strip()))
    channel = request.args.get("channel", "web")
    lat = request.args.get("lat", type=float)
    lon = request.args.get("lon", type=float)
    conn = connection()
    try:
        ch = conn.execute(CHANNEL_SQL, (channel,)).fetchone()
        if ch is None:
            return {"code": "unknown_channel", "detail": f"no channel {channel!r}"}, 404
        channel_id, kind = ch
        online = kind == "online"
        rows = conn.execute(ROWS_SQL.format(codes=placeholders(len(codes))), (channel_id, *codes)).fetchall()
        per_sku: dict[str, list[dict[str, Any]]] = {code: [] for code in codes}
        for sku, loc, llat, llon, default_safety, on_hand, reserved, incoming, override in rows:
            on_hand, reserved, incoming = on_hand or 0, reserved or 0, incoming or 0
            safety = default_safety if override is None else override
            dist = None
            if lat is not None and lon is not None and llat is not None and llon is not None:
                dist = round(haversine_km(lat, lon, llat, llon), 2)
            per_sku[sku].append({
                "location": loc, "available": free_units(on_hand, reserved, safety, online=online),
                "on_hand": on_hand, "reserved": reserved, "incoming": incoming, "distance_km": dist,
            })  # fmt: skip
        missing = [c for c in codes if not per_sku[c]]
        if missing:
            known = {r[0] for r in conn.execute(KNOWN_SQL.format(codes=placeholders(len(missing))), missing)}
            unknown = [c for c in missing if c not in known]
            if unknown:
                return {"code": "unknown_sku", "detail": f"unknown SKU(s): {', '.join(unknown[:20])}"}, 404
    finally:
        conn.rollback()  # read only: end the transaction the first statement began
    items = []
    for sku in codes:
        locs = per_sku[sku]
        if lat is not None:
            locs.sort(key=lambda r: (r["distance_km"] is None, r["distance_km"] or 0.0, r["location"]))
        else:
            locs.sort(key=lambda r: r["location"])
        items.append({"sku": sku, "total_available": sum(r["available"] for r in locs), "locations": locs})
    return {"channel": channel, "items": items}
