"""Reference lookups on the order path: channels and SKU ids (cached per process), postcodes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput
from app.domain.geo import normal_postcode
from app.models import Channel, Postcode, Sku
from app.services.orders.commands import Delivery


class _Ids:
    """Per-process cache of SKU ids (codes never change owner) and channels (short TTL)."""

    def __init__(self) -> None:
        self.skus: dict[str, int] = {}
        self.channels: dict[str, tuple[float, int, str]] = {}
        self.lock = threading.Lock()


_IDS = _Ids()


def forget() -> None:
    """Drop the cached ids (tests empty the tables between cases; a live database never needs it)."""
    with _IDS.lock:
        _IDS.skus.clear()
        _IDS.channels.clear()


CHANNEL_TTL_S = 10.0


def channel_of(session: Session, code: str) -> tuple[int, str]:
    hit = _IDS.channels.get(code)
    if hit and hit[0] > time.monotonic():
        return hit[1], hit[2]
    row = session.execute(select(Channel.id, Channel.kind).where(Channel.code == code)).one_or_none()
    if row is None:
        raise InvalidInput(
            "unknown channel",
            [{"field": "channel", "message": f"unknown channel {code!r}"}],
            "unknown_channel",
        )
    with _IDS.lock:
        _IDS.channels[code] = (time.monotonic() + CHANNEL_TTL_S, row[0], row[1])
    return row[0], row[1]


def sku_ids(session: Session, codes: Sequence[str]) -> dict[str, int]:
    missing = [c for c in codes if c not in _IDS.skus]
    if missing:
        found = dict(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_(missing))).tuples().all())
        with _IDS.lock:
            _IDS.skus.update(found)
    unknown = [i for i, c in enumerate(codes) if c not in _IDS.skus]
    if unknown:
        raise InvalidInput(
            "unknown SKU",
            [{"field": f"lines[{i}].sku", "message": f"unknown SKU {codes[i]!r}"} for i in unknown],
            "unknown_sku",
        )
    return {c: _IDS.skus[c] for c in codes}


def place_point(session: Session, delivery: Delivery) -> tuple[float | None, float | None]:
    """Coordinates for a ship-to: given, or looked up from the postcode (full, then outward part)."""
    if delivery.lat is not None and delivery.lon is not None:
        return delivery.lat, delivery.lon
    if delivery.postcode:
        pc = normal_postcode(delivery.postcode)
        tries = [pc, pc.split(" ")[0]] if " " in pc else [pc, pc[:-3].strip() if len(pc) > 4 else pc]
        for code in tries:
            row = session.execute(
                select(Postcode.lat, Postcode.lon).where(Postcode.code == code)
            ).one_or_none()
            if row is not None:
                return row[0], row[1]
        raise InvalidInput(
            "unknown postcode",
            [{"field": "delivery.postcode", "message": f"cannot place postcode {delivery.postcode!r}"}],
            "unknown_postcode",
        )
    return None, None
