"""A believable demo retailer in London: one warehouse, eight stores, a few hundred SKUs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain.ledger import Deltas, Kind
from app.models import Location
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
    n = 0
    while len(rows) < count:
        for prefix, name, sizes, colours in CATEGORIES:
            for colour in colours:
                for size in sizes:
                    if len(rows) >= count:
                        break
                    n += 1
                    code = f"{prefix}-{colour[:3].upper()}-{size.upper()}"
                    if any(r["code"] == code for r in rows):
                        code = f"{code}-{n}"
                    ean12 = f"50{n:010d}"
                    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(ean12)) % 10) % 10
                    rows.append(
                        {"code": code, "name": f"{name}, {colour}, {size}", "barcode": ean12 + str(check)}
                    )
        if n > count * 4:
            break
    return rows[:count]


def seed(session: Session, *, sku_count: int = 240, rng_seed: int = 7) -> Seeded:
    """Create locations, channels, SKUs, uneven stock (as receipts) and demo keys."""
    rng = random.Random(rng_seed)
    out = Seeded()
    for code, name, kind, lat, lon, pc, ships, pickup, prio, cap, safety in LOCATIONS:
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
    stores = [row[0] for row in LOCATIONS if row[2] == "store"]
    all_codes = [row[0] for row in LOCATIONS]
    for code, name, kind in CHANNELS:
        catalog.upsert_channel(
            session,
            {"code": code, "name": name, "kind": kind, "locations": stores if kind == "store" else all_codes},
        )
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
    record(session, legs)
    out.movements = len(legs)
    for role, locs in [("storefront", []), ("ops", [])] + [("staff", [s]) for s in stores]:
        _, plain = keys.create_key(session, role=role, name=f"demo {role}", locations=locs)
        out.keys.append((role, ",".join(locs) or "all", plain))
    return out
