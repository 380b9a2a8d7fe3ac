"""Discrepancies: differences over a feed's auto-apply limit, which ops accept or reject.

Accepting applies the difference then, to the ledger as it is then (one count_adjustment of the
recorded drift, so sales made since are kept); rejecting changes nothing in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import DomainError, NotFound
from app.domain.ledger import Deltas, Kind
from app.models import Location, Sku
from app.models_sync import Discrepancy, Feed
from app.services import orders
from app.services import shortages as shortages_
from app.services.ledger import Leg, ensure_levels, lock_levels
from app.services.stock import book


class AlreadyDecided(DomainError):
    code = "already_decided"
    kind = "conflict"


@dataclass(frozen=True)
class DiscrepancyView:
    id: int
    feed: str
    run_id: int
    sku: str
    location: str
    vendor_qty: int
    ledger_qty: int
    drift: int
    vendor_time: datetime
    status: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    applied_delta: int | None


def view(session: Session, d: Discrepancy) -> DiscrepancyView:
    return views(session, [d])[0]


def views(session: Session, rows: list[Discrepancy]) -> list[DiscrepancyView]:
    skus = dict(
        session.execute(select(Sku.id, Sku.code).where(Sku.id.in_({d.sku_id for d in rows}))).tuples().all()
    )
    locs = dict(
        session.execute(
            select(Location.id, Location.code).where(Location.id.in_({d.location_id for d in rows}))
        )
        .tuples()
        .all()
    )
    feeds = dict(
        session.execute(select(Feed.id, Feed.code).where(Feed.id.in_({d.feed_id for d in rows})))
        .tuples()
        .all()
    )
    return [
        DiscrepancyView(
            id=d.id, feed=feeds[d.feed_id], run_id=d.run_id, sku=skus[d.sku_id], location=locs[d.location_id],
            vendor_qty=d.vendor_qty, ledger_qty=d.ledger_qty, drift=d.drift, vendor_time=d.vendor_time,
            status=d.status, created_at=d.created_at, updated_at=d.updated_at, decided_at=d.decided_at,
            decided_by=d.decided_by, note=d.note, applied_delta=d.applied_delta,
        )
        for d in rows
    ]  # fmt: skip


def _open(session: Session, discrepancy_id: int) -> tuple[Discrepancy, Feed]:
    d = session.get(Discrepancy, discrepancy_id, with_for_update=True)
    if d is None:
        raise NotFound(f"no discrepancy {discrepancy_id}")
    if d.status != "open":
        raise AlreadyDecided(f"discrepancy {discrepancy_id} is already {d.status}")
    feed = session.get(Feed, d.feed_id)
    assert feed is not None  # noqa: S101 - cascade keeps them together
    return d, feed


def accept(session: Session, discrepancy_id: int, *, by: str, note: str | None, now: datetime) -> Discrepancy:
    """Apply the held difference now, as one count_adjustment against the ledger as it stands."""
    d, feed = _open(session, discrepancy_id)
    key = (d.sku_id, d.location_id)
    ensure_levels(session, [key])
    if d.drift < 0:
        shortages_.lock_promises(session, [key])
    lock_levels(session, [key])
    leg = Leg(
        Kind.COUNT_ADJUSTMENT, d.sku_id, d.location_id, d.vendor_qty, Deltas(on_hand=d.drift), source=feed.code,
        external_ref=f"discrepancy:{d.id}", reason="reconcile", occurred_at=d.vendor_time, vendor_at=d.vendor_time,
        sync_run_id=d.run_id, note=f"accepted by {by}"[:500],
    )  # fmt: skip
    book(session, [leg], now, orders.Policy())
    d.status, d.decided_at, d.decided_by, d.note, d.applied_delta, d.updated_at = (
        "accepted",
        now,
        by,
        note,
        d.drift,
        now,
    )
    return d


def reject(session: Session, discrepancy_id: int, *, by: str, note: str | None, now: datetime) -> Discrepancy:
    """Keep the ledger as it is; the next quiet read that still differs opens a new one."""
    d, _feed = _open(session, discrepancy_id)
    d.status, d.decided_at, d.decided_by, d.note, d.updated_at = "rejected", now, by, note, now
    return d
