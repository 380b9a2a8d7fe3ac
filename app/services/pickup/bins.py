"""Where SKUs are kept in a store: the pick list's bin or shelf hints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput
from app.models import Sku
from app.models_pickup import SkuBin
from app.services.catalog import get_location


@dataclass(frozen=True, slots=True)
class BinsResult:
    location: str
    updated: int


def set_bins(session: Session, location: str, rows: Sequence[tuple[str, str | None]]) -> int:
    """Set (or with None, forget) the bin of each SKU at a store, all or nothing; returns how many."""
    loc = get_location(session, location)
    ids = dict(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_([s for s, _ in rows]))).tuples().all())
    unknown = [{"field": f"bins[{i}].sku", "message": f"unknown SKU {s!r}"} for i, (s, _) in enumerate(rows) if s not in ids]
    if unknown:
        raise InvalidInput("unknown SKUs", unknown, "unknown_sku")
    for sku, bin_ in rows:
        session.execute(delete(SkuBin).where(SkuBin.sku_id == ids[sku], SkuBin.location_id == loc.id))
        if bin_:
            session.add(SkuBin(sku_id=ids[sku], location_id=loc.id, bin=bin_))
    session.flush()
    return len(rows)
