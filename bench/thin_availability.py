"""The availability baseline of bench_availability.py: a thin Flask + psycopg endpoint, never deployed.

GET /api/v1/availability?skus=A,B,...&channel=web[&lat=..&lon=..][&location=..] runs the
service's own availability statement (app/services/stock_reads.py, imported, not copied: if the
service's SQL changes, the baseline runs the new one) on a psycopg connection of the handling
thread, in a transaction ended by a rollback as the service's read-only unit of work is, and
answers the same JSON: per SKU the units each location can sell, its on_hand, reserved and
incoming and its distance from (lat, lon), nearest first (by code without a point), and the
total. Free units and distances come from app.domain, so both answers apply one rule. No key,
no schema validation, no metrics, no ORM, Flask's own JSON encoder: what is left is Flask,
psycopg and the rule itself. An unknown channel or SKU is a 404.

gunicorn serves `bench.thin_availability:app`; the database is OMNISTOCK_DATABASE_URL.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import psycopg
from flask import Flask, request

from app.domain.geo import haversine_km
from app.domain.ledger import free_units
from app.services.stock_reads import _availability_sql

CHANNEL_SQL = "SELECT 1 FROM channels WHERE code = %s"
KNOWN_SQL = "SELECT code FROM skus WHERE code = ANY(%s)"

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


@cache
def statement(skus: int, one_location: bool) -> str:
    """The service's statement in psycopg's %s placeholders."""
    return _availability_sql(skus, one_location).replace("?", "%s")


@app.get("/readyz")
def readyz() -> dict[str, str]:
    conn = connection()
    conn.execute("SELECT 1")
    conn.rollback()
    return {"status": "ready"}


@app.get("/api/v1/availability")
def availability() -> Any:
    """Units sellable now per SKU, per location serving the channel and in total."""
    codes = list(dict.fromkeys(c.strip() for c in request.args.get("skus", "").split(",") if c.strip()))
    channel = request.args.get("channel", "web")
    location = request.args.get("location")
    lat = request.args.get("lat", type=float)
    lon = request.args.get("lon", type=float)
    params = [*codes, channel] if location is None else [*codes, channel, location]
    conn = connection()
    try:
        rows = conn.execute(statement(len(codes), location is not None), params).fetchall()
        per_sku: dict[str, list[dict[str, Any]]] = {code: [] for code in codes}
        for sku, loc, llat, llon, default_safety, on_hand, reserved, incoming, override, kind in rows:
            on_hand, reserved, incoming = on_hand or 0, reserved or 0, incoming or 0
            safety = default_safety if override is None else override
            dist = None
            if lat is not None and lon is not None and llat is not None and llon is not None:
                dist = round(haversine_km(lat, lon, llat, llon), 2)
            per_sku[sku].append({
                "location": loc, "available": free_units(on_hand, reserved, safety, online=kind == "online"),
                "on_hand": on_hand, "reserved": reserved, "incoming": incoming, "distance_km": dist,
            })  # fmt: skip
        missing = [c for c in codes if not per_sku[c]]
        if missing:  # nothing for them: an unknown channel or SKU, or no active location at all
            if conn.execute(CHANNEL_SQL, (channel,)).fetchone() is None:
                return {"code": "unknown_channel", "detail": f"no channel {channel!r}"}, 404
            known = {r[0] for r in conn.execute(KNOWN_SQL, (missing,))}
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
