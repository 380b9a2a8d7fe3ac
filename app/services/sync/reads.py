"""Ops reads: run history, discrepancies, quarantine and inbound orders, newest first, keyset paged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.models_sync import Discrepancy, Feed, InboundOrder, Quarantine, SyncRun
from app.services.sync import discrepancies as disc
from app.services.sync.feeds import RunView, get, run_view


def _feed_id(session: Session, code: str | None) -> int | None:
    return get(session, code).id if code else None


def _codes(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Feed.id, Feed.code)).tuples().all())


def _newest_first(
    session: Session, model: Any, *, feed: str | None, status: str | None, before: int | None, limit: int
) -> tuple[list[Any], int | None]:
    """A feed's rows of `model`, newest first, from before the cursor's id; the next cursor if more."""
    fid = _feed_id(session, feed)
    stmt = select(model).order_by(model.id.desc()).limit(limit + 1)
    if fid is not None:
        stmt = stmt.where(model.feed_id == fid)
    if status:
        stmt = stmt.where(model.status == status)
    if before is not None:
        stmt = stmt.where(model.id < before)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def runs(
    session: Session, *, feed: str | None, status: str | None, before: int | None, limit: int
) -> tuple[list[RunView], int | None]:
    rows, last = _newest_first(session, SyncRun, feed=feed, status=status, before=before, limit=limit)
    codes = _codes(session)
    return [run_view(r, codes[r.feed_id]) for r in rows], last


def run(session: Session, run_id: int) -> RunView:
    r = session.get(SyncRun, run_id)
    if r is None:
        raise NotFound(f"no run {run_id}")
    return run_view(r, _codes(session)[r.feed_id], detail=True)


def discrepancies(
    session: Session, *, feed: str | None, status: str | None, before: int | None, limit: int
) -> tuple[list[disc.DiscrepancyView], int | None]:
    rows, last = _newest_first(session, Discrepancy, feed=feed, status=status, before=before, limit=limit)
    return (disc.views(session, rows) if rows else []), last


@dataclass(frozen=True)
class QuarantineView:
    id: int
    feed: str
    kind: str
    item_ref: str
    location_ref: str
    reason: str
    raw: dict[str, Any]
    status: str
    seen_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    last_run_id: int | None
    resolved_at: datetime | None
    resolution: str | None


def quarantine_view(q: Quarantine, code: str) -> QuarantineView:
    return QuarantineView(
        id=q.id, feed=code, kind=q.kind, item_ref=q.item_ref, location_ref=q.location_ref, reason=q.reason,
        raw=dict(q.raw or {}), status=q.status, seen_count=q.seen_count, first_seen_at=q.first_seen_at,
        last_seen_at=q.last_seen_at, last_run_id=q.last_run_id, resolved_at=q.resolved_at, resolution=q.resolution,
    )  # fmt: skip


def quarantined(
    session: Session, *, feed: str | None, status: str | None, before: int | None, limit: int
) -> tuple[list[QuarantineView], int | None]:
    rows, last = _newest_first(session, Quarantine, feed=feed, status=status, before=before, limit=limit)
    codes = _codes(session)
    return [quarantine_view(q, codes[q.feed_id]) for q in rows], last


@dataclass(frozen=True)
class InboundOrderView:
    feed: str
    external_id: str
    status: str
    order_id: int | None
    reason: str | None
    received_at: datetime
    attempts: int


def inbound_orders(
    session: Session, *, feed: str | None, status: str | None, after: tuple[int, str] | None, limit: int
) -> tuple[list[InboundOrderView], tuple[int, str] | None]:
    fid = _feed_id(session, feed)
    stmt = select(InboundOrder).order_by(InboundOrder.feed_id, InboundOrder.external_id).limit(limit + 1)
    if fid is not None:
        stmt = stmt.where(InboundOrder.feed_id == fid)
    if status:
        stmt = stmt.where(InboundOrder.status == status)
    if after is not None:
        stmt = stmt.where(
            (InboundOrder.feed_id > after[0])
            | ((InboundOrder.feed_id == after[0]) & (InboundOrder.external_id > after[1]))
        )
    rows = list(session.scalars(stmt))
    codes = _codes(session)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        InboundOrderView(
            codes[r.feed_id], r.external_id, r.status, r.order_id, r.reason, r.received_at, r.attempts
        )
        for r in rows
    ]
    return items, ((rows[-1].feed_id, rows[-1].external_id) if more and rows else None)
