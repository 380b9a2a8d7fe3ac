"""A believable demo retailer in London: one warehouse, eight stores, a few hundred SKUs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain.ledger import Deltas, Kind
from app.models import Location, Postcode
from app.services import catalog, keys
from app.services.ledger import Leg, record

# code, name, kind, lat, lon, postcode, ships, pickup, priority, daily capacity, safety stock
LOCATIONS = [
    ("WH-PARKROYAL", "Park Royal distribution centre", "warehouse", 51.5290, -0.2790, "NW10 7", True, False, 10, None, 0),
    ("ST-COVENT", "Covent Garden", "store", 51.5117, -0.1240, "WC2E 8", True, True, 50, 40, 2),
    ("ST-CAMDEN", "Camden Town", "store", 51.5390, -0.1426, "NW1 8", True, True, 50, 30, 2),
    ("ST-SHOREDITCH", "Shoreditch", "store", 51.5256, -0.0780, "E1 6", True, True, 50, 30, 2),
    ("ST-BRIXTON", "Brixton", "store", 51.4613, -0.1156, "SW9 8", True, True, 60, 25, 1),
    ("ST-KENSINGTON", "High Street Kensington", "store", 51.5009, -0.1925, "W8 5", True, True, 50, 30, 2),
    ("ST-CANARY", "Canary Wharf", "store", 51.5054, -0.0235, "E14 5", False, True, 70, None, 1),
    ("ST-RICHMOND", "Richmond", "store", 51.4613, -0.3037, "TW9 1", True, True, 60, 20, 1),
    ("ST-STRATFORD", "Stratford", "store", 51.5416, -0.0034, "E20 1", True, True, 60, 30, 1),
]  # fmt: skip

CATEGORIES = [
    ("TEE", "Organic cotton tee", ["XS", "S", "M", "L", "XL"], ["white", "black", "navy", "sage"]),
    ("HOOD", "Loopback hoodie", ["S", "M", "L", "XL"], ["grey", "black", "ecru"]),
    ("JEAN", "Straight-leg jeans", ["28", "30", "32", "34", "36"], ["indigo", "black"]),
    ("SOCK", "Merino socks 2-pack", ["S", "M", "L"], ["charcoal", "oat", "forest"]),
    ("MUG", "Stoneware mug", ["350ml"], ["speckle", "cobalt", "sand", "moss"]),
    ("CANDLE", "Soy candle", ["200g"], ["fig", "cedar", "linen", "amber"]),
    ("TOTE", "Canvas tote", ["one"], ["natural", "black", "olive"]),
    ("BEANIE", "Ribbed beanie", ["one"], ["rust", "navy", "cream", "black"]),
    ("SHIRT", "Oxford shirt", ["S", "M", "L", "XL"], ["blue", "white", "pink"]),
    ("SCARF", "Lambswool scarf", ["one"], ["camel", "grey", "tartan"]),
    ("THROW", "Waffle throw", ["130x170"], ["oat", "slate", "clay"]),
    ("BOTTLE", "Insulated bottle", ["500ml", "750ml"], ["steel", "black", "mint"]),
]

# Outward codes (approximate centroids) so a storefront can send a postcode instead of coordinates.
POSTCODES = {
    "EC1A": (51.5200, -0.0977), "EC2A": (51.5246, -0.0829), "WC1A": (51.5178, -0.1244),
    "WC2E": (51.5117, -0.1240), "W1D": (51.5136, -0.1335), "W8": (51.5009, -0.1925),
    "W11": (51.5135, -0.2058), "NW1": (51.5390, -0.1426), "NW3": (51.5530, -0.1740),
    "NW10": (51.5376, -0.2480), "N1": (51.5383, -0.0990), "N16": (51.5620, -0.0760),
    "E1": (51.5170, -0.0700), "E2": (51.5290, -0.0600), "E8": (51.5430, -0.0610),
    "E14": (51.5054, -0.0235), "E15": (51.5410, -0.0030), "E20": (51.5416, -0.0034),
    "SE1": (51.5030, -0.0900), "SE10": (51.4820, -0.0050), "SE15": (51.4700, -0.0650),
    "SW1A": (51.5010, -0.1416), "SW3": (51.4900, -0.1680), "SW9": (51.4613, -0.1156),
    "SW11": (51.4640, -0.1630), "SW19": (51.4220, -0.2050), "TW9": (51.4613, -0.3037),
    "W5": (51.5130, -0.3030), "HA0": (51.5520, -0.2960), "CR0": (51.3760, -0.0980),
}  # fmt: skip

CHANNELS = [("web", "Web shop", "online"), ("app", "Mobile app", "online"), ("store", "Store tills", "store")]


@dataclass
class Seeded:
    locations: int = 0
    skus: int = 0
    movements: int = 0
    keys: list[tuple[str, str, str]] = field(default_factory=list)


def is_seeded(session: Session) -> bool:
    """Demo data is only ever added to an empty database."""
    return bool(session.scalar(select(func.count()).select_from(Location)))


def sku_catalog(count: int) -> list[dict[str, str]]:
    """Deterministic SKU rows (code, name, barcode) across the categories."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    n = 0
    while len(rows) < count:
        for prefix, name, sizes, colours in CATEGORIES:
            for colour in colours:
                for size in sizes:
                    if len(rows) >= count:
                        break
                    n += 1
                    code = f"{prefix}-{colour[:3].upper()}-{size.upper()}"
                    if code in seen:
                        code = f"{code}-{n}"
                    seen.add(code)
                    ean12 = f"50{n:010d}"
                    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(ean12)) % 10) % 10
                    rows.append(
                        {"code": code, "name": f"{name}, {colour}, {size}", "barcode": ean12 + str(check)}
                    )

    return rows[:count]


def locations(count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """The named London locations, plus extra suburban stores when more are asked for (benchmarks)."""
    rows: list[tuple[Any, ...]] = list(LOCATIONS[:count])
    n = 0
    while len(rows) < count:
        n += 1
        lat, lon = 51.50 + rng.uniform(-0.12, 0.12), -0.12 + rng.uniform(-0.25, 0.25)
        rows.append((f"ST-EXTRA{n:02d}", f"Suburban store {n}", "store", round(lat, 4), round(lon, 4), None,
                     True, True, 70, 40, 1))  # fmt: skip
    return rows


def seed(
    session: Session, *, sku_count: int = 240, location_count: int = len(LOCATIONS), rng_seed: int = 7
) -> Seeded:
    """Create locations, channels, SKUs, uneven stock (as receipts) and demo keys."""
    rng = random.Random(rng_seed)
    out = Seeded()
    chosen = locations(location_count, rng)
    for code, name, kind, lat, lon, pc, ships, pickup, prio, cap, safety in chosen:
        catalog.create_location(
            session,
            {
                "code": code, "name": name, "kind": kind, "lat": lat, "lon": lon, "postcode": pc,
                "timezone": "Europe/London", "ships": ships, "pickup": pickup, "priority": prio,
                "daily_capacity": cap, "default_safety_stock": safety, "pick_minutes": 45,
                "pickup_hold_hours": 72,
            },
        )  # fmt: skip
        out.locations += 1
    stores = [row[0] for row in chosen if row[2] == "store"]
    all_codes = [row[0] for row in chosen]
    for code, name, kind in CHANNELS:
        catalog.upsert_channel(
            session,
            {"code": code, "name": name, "kind": kind, "locations": stores if kind == "store" else all_codes},
        )
    session.add_all(Postcode(code=c, lat=lat, lon=lon) for c, (lat, lon) in POSTCODES.items())
    skus, _ = catalog.upsert_skus(session, sku_catalog(sku_count))
    out.skus = len(skus)
    loc_ids = catalog.location_ids(session, all_codes)
    received_at = utcnow() - timedelta(days=1)
    legs = []
    for sku in skus:
        popularity = rng.paretovariate(1.5)  # a few bestsellers, a long tail
        for code in all_codes:
            if code.startswith("WH"):
                qty = int(min(400, 20 * popularity + rng.randint(0, 30)))
            else:
                # Stores carry a thin, uneven range: some lines are missing entirely.
                qty = 0 if rng.random() < 0.3 else int(min(40, rng.expovariate(0.4) * popularity))
            if qty > 0:
                legs.append(
                    Leg(
                        Kind.RECEIPT,
                        sku.id,
                        loc_ids[code],
                        qty,
                        Deltas(on_hand=qty),
                        source="demo",
                        external_ref=f"seed:{sku.code}:{code}",
                        occurred_at=received_at,
                    )
                )
    # Recorded when received (yesterday): the demo POS counted them since, so the first
    # reconciliation compares at once instead of waiting for them to settle.
    record(session, legs, received_at)
    out.movements = len(legs)
    for role, locs in [("storefront", []), ("ops", [])] + [("staff", [s]) for s in stores[:8]]:
        _, plain = keys.create_key(session, role=role, name=f"demo {role}", locations=locs)
        out.keys.append((role, ",".join(locs) or "all", plain))
    return out
