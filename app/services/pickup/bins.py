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
        # The first few name the fault; a thousand of the same would only bury it.
        raise InvalidInput(f"{len(unknown)} unknown SKU(s)", unknown[:20], "unknown_sku")
    last = {ids[sku]: bin_ for sku, bin_ in rows}  # a SKU named twice: the later row wins
    session.execute(delete(SkuBin).where(SkuBin.location_id == loc.id, SkuBin.sku_id.in_(list(last))))
    session.add_all(SkuBin(sku_id=s, location_id=loc.id, bin=b) for s, b in last.items() if b)
    session.flush()
    return len(rows)
