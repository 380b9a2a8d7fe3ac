"""What every feed run shares: its lease, its run record, its connector, its report."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import insert_for, transaction, utcnow
from app.domain.errors import DomainError
from app.models import JobLock
from app.models_sync import Feed, SyncRun
from app.services.sync import feeds
from app.services.sync.feeds import FeedMap
from app.sync.base import Connection, Connector, SyncError

log = logging.getLogger(__name__)

MODULES = {
    "square": "app.sync.square",
    "shopify": "app.sync.shopify",
    "woocommerce": "app.sync.woocommerce",
    "csv": "app.sync.csvfeed",
}
LEASE_S = 900


class RunInProgress(DomainError):
    code = "run_in_progress"
    kind = "conflict"


@dataclass
class FeedContext:
    """A feed as one run sees it, read once at the start (no ORM object crosses transactions)."""

    id: int
    code: str
    role: str
    connector: str
    base_url: str
    options: dict[str, Any]
    settings: Any
    watermark: datetime | None
    orders_watermark: datetime | None
    channel_id: int | None
    fmap: FeedMap
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass
class Tools:
    """Injectable for tests: the vendor clock and sleep the HTTP layer uses."""

    clock: Callable[[], float] | None = None
    sleep: Callable[[float], None] | None = None


def lease(factory: sessionmaker[Session], name: str, owner: str, seconds: int = LEASE_S) -> bool:
    """Take the named lease if nobody holds it (any process, any machine)."""

    def work(s: Session) -> bool:
        now = utcnow()
        s.execute(insert_for(s, JobLock).values(job=name).on_conflict_do_nothing())
        got = s.execute(
            update(JobLock)
            .where(JobLock.job == name, or_(JobLock.locked_until.is_(None), JobLock.locked_until < now))
            .values(owner=owner, locked_until=now + timedelta(seconds=seconds))
        )
        return bool(got.rowcount)  # type: ignore[attr-defined]

    return transaction(factory, work)


def release(factory: sessionmaker[Session], name: str, owner: str) -> None:
    transaction(
        factory,
        lambda s: s.execute(
            update(JobLock)
            .where(JobLock.job == name, JobLock.owner == owner)
            .values(owner=None, locked_until=None)
        ),
    )


def still_due(factory: sessionmaker[Session], code: str) -> bool:
    """Checked under the feed's lease: another process may have run this tick's cycle already."""
    from app.models_sync import WebhookReceipt

    def work(s: Session) -> bool:
        feed = feeds.get(s, code)
        hinted = s.scalar(
            select(func.count()).where(
                WebhookReceipt.feed_id == feed.id, WebhookReceipt.processed_at.is_(None)
            )
        )
        if hinted:
            return True
        last = s.scalar(select(func.max(SyncRun.started_at)).where(SyncRun.feed_id == feed.id))
        cfg = feeds.settings_of(feed)
        every = cfg.every_s if feed.role == "source" else cfg.push_every_s
        return last is None or (utcnow() - last).total_seconds() >= every * 0.95

    return transaction(factory, work)


def start_run(factory: sessionmaker[Session], code: str, kind: str, trigger: str) -> tuple[int, FeedContext]:
    def work(s: Session) -> tuple[int, FeedContext]:
        feed = feeds.get(s, code)
        run_id = s.execute(
            insert(SyncRun)
            .values(
                feed_id=feed.id,
                kind=kind,
                trigger=trigger,
                status="running",
                started_at=utcnow(),
                counts={},
                report={},
            )
            .returning(SyncRun.id)
        ).scalar_one()
        return run_id, context(s, feed)

    return transaction(factory, work)


def context(s: Session, feed: Feed) -> FeedContext:
    return FeedContext(
        id=feed.id, code=feed.code, role=feed.role, connector=feed.connector, base_url=feed.base_url,
        options=dict(feed.options or {}), settings=feeds.settings_of(feed), watermark=feed.watermark,
        orders_watermark=feed.orders_watermark, channel_id=feed.channel_id, fmap=feeds.load_map(s, feed),
    )  # fmt: skip


def finish_run(
    s: Session,
    run_id: int,
    *,
    status: str,
    counts: dict[str, int],
    report: dict[str, Any],
    error: str | None,
    started: float,
) -> None:
    run = s.get(SyncRun, run_id)
    feed = s.get(Feed, run.feed_id) if run else None
    if feed is not None:
        totals = dict(feed.totals or {})
        for name, n in (
            (f"runs_{status}", 1), ("rows", counts.get("seen", 0) + counts.get("levels_seen", 0)),
            ("adjustments", counts.get("adjusted", 0)), ("discrepancies", counts.get("discrepancies_new", 0)),
            ("quarantined", counts.get("quarantined", 0)), ("pushed", counts.get("pushed", 0)),
            ("orders_placed", counts.get("orders_placed", 0)), ("orders_refused", counts.get("orders_refused", 0)),
        ):  # fmt: skip
            totals[name] = int(totals.get(name, 0)) + int(n)
        feed.totals = totals
    s.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id)
        .values(
            status=status, finished_at=utcnow(), duration_ms=int((time.monotonic() - started) * 1000),
            counts=counts, report=report, error=error and error[:2000],
        )
    )  # fmt: skip


def build_connector(
    ctx: FeedContext, tools: Tools, *, file_bytes: bytes | None = None, **extra: Any
) -> Connector:
    """The feed's connector with its secrets resolved now (a missing variable fails the run)."""
    module = importlib.import_module(MODULES[ctx.connector])
    locations = [ref for ref in ctx.fmap.locations]
    s = ctx.settings
    conn = Connection(
        base_url=ctx.base_url, secrets=ctx.secrets,
        options={"location_refs": locations, **ctx.options, **extra},
        connect_timeout_s=float(s.connect_timeout_s), read_timeout_s=float(s.read_timeout_s), attempts=s.attempts,
        clock=tools.clock, sleep=tools.sleep, file_bytes=file_bytes,
    )  # fmt: skip
    connector: Connector = module.build(conn)
    return connector


def describe(exc: BaseException) -> str:
    """A failed run's reason, as ops read it."""
    if isinstance(exc, SyncError | DomainError):
        return f"{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"[:2000]
