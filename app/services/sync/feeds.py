"""Feeds: configure (from the YAML file or the ops API), map outside references, read back."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain.errors import InvalidInput, NotFound
from app.models import Channel, Location, Sku
from app.models_sync import Discrepancy, Feed, FeedItem, FeedLocation, Quarantine, SyncRun
from app.schemas.sync import FeedIn, FeedSettings


class UnknownFeed(NotFound):
    code = "unknown_feed"


def get(session: Session, code: str, *, lock: bool = False) -> Feed:
    stmt = select(Feed).where(Feed.code == code)
    feed = session.scalar(stmt.with_for_update() if lock else stmt)
    if feed is None:
        raise UnknownFeed(f"no feed {code!r}")
    return feed


def settings_of(feed: Feed) -> FeedSettings:
    """The feed's settings with today's defaults for anything stored before a setting existed."""
    return FeedSettings.model_validate(feed.settings or {})


def secrets_of(feed: Feed, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The feed's secrets read from the environment variables it names; a missing one fails the run."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    missing = []
    for name, var in (feed.credentials or {}).items():
        value = env.get(var)
        if not value:
            missing.append(f"{name} (${var})")
        else:
            out[name] = value
    if missing:
        from app.sync.base import AuthError

        raise AuthError(f"feed {feed.code}: environment variable not set for {', '.join(missing)}")
    return out


def upsert(session: Session, cfg: FeedIn, *, field_prefix: str = "") -> Feed:
    """Create or replace a feed from its configuration; unknown codes are refused by field."""
    errors: list[dict[str, str]] = []
    channel_id = None
    if cfg.channel:
        channel_id = session.scalar(select(Channel.id).where(Channel.code == cfg.channel))
        if channel_id is None:
            errors.append({"field": f"{field_prefix}channel", "message": f"no channel {cfg.channel!r}"})
    loc_codes = {c for c in cfg.locations.values() if c}
    locs: dict[str, int] = {}
    if loc_codes:
        locs = dict(
            session.execute(select(Location.code, Location.id).where(Location.code.in_(loc_codes)))
            .tuples()
            .all()
        )
    for ref, code in cfg.locations.items():
        if code and code not in locs:
            errors.append({"field": f"{field_prefix}locations.{ref}", "message": f"no location {code!r}"})
    sku_codes = set(cfg.items.values())
    skus: dict[str, int] = {}
    for start in range(0, len(sku_codes), 5000):
        part = sorted(sku_codes)[start : start + 5000]
        skus.update(session.execute(select(Sku.code, Sku.id).where(Sku.code.in_(part))).tuples().all())
    for ref, code in cfg.items.items():
        if code not in skus:
            errors.append({"field": f"{field_prefix}items.{ref}", "message": f"no SKU {code!r}"})
    seen: dict[int, str] = {}
    for ref, code in cfg.locations.items():
        if code and cfg.role == "source":
            lid = locs.get(code)
            if lid is not None and lid in seen:
                errors.append(
                    {
                        "field": f"{field_prefix}locations.{ref}",
                        "message": f"{code} is already mapped from {seen[lid]!r}",
                    }
                )
            elif lid is not None:
                seen[lid] = ref
    if errors:
        raise InvalidInput("the feed names what does not exist", errors)
    feed = session.scalar(select(Feed).where(Feed.code == cfg.code).with_for_update())
    values: dict[str, Any] = {
        "name": cfg.name, "role": cfg.role, "connector": cfg.connector, "base_url": cfg.base_url or "",
        "channel_id": channel_id, "credentials": dict(cfg.credentials), "options": dict(cfg.options),
        "settings": cfg.settings.model_dump(), "enabled": cfg.enabled,
    }  # fmt: skip
    values["options"]["match_items_by_sku"] = cfg.match_items_by_sku
    if feed is None:
        feed = Feed(code=cfg.code, **values)
        session.add(feed)
        session.flush()
    else:
        for k, v in values.items():
            setattr(feed, k, v)
        session.execute(delete(FeedLocation).where(FeedLocation.feed_id == feed.id))
        session.execute(delete(FeedItem).where(FeedItem.feed_id == feed.id))
    session.execute(
        insert(FeedLocation),
        [
            {"feed_id": feed.id, "location_ref": ref, "location_id": locs.get(code) if code else None}
            for ref, code in cfg.locations.items()
        ],
    )
    rows = [{"feed_id": feed.id, "item_ref": ref, "sku_id": skus[code]} for ref, code in cfg.items.items()]
    for start in range(0, len(rows), 5000):
        session.execute(insert(FeedItem), rows[start : start + 5000])
    return feed


def load_file(session: Session, feeds: Sequence[FeedIn]) -> list[Feed]:
    """Configure every feed of a file, all or none (the first field at fault names its feed)."""
    return [upsert(session, cfg, field_prefix=f"feeds[{i}].") for i, cfg in enumerate(feeds)]


@dataclass(frozen=True)
class FeedMap:
    """A feed's outside references as ledger ids, for one run."""

    items: dict[str, int]
    locations: dict[str, int | None]
    by_sku: dict[str, int] | None  # SKU code -> id when unmapped items match by SKU text

    def sku_id(self, item_ref: str, sku_text: str | None) -> int | None:
        hit = self.items.get(item_ref)
        if hit is None and self.by_sku is not None:
            hit = self.by_sku.get(sku_text or item_ref)
        return hit


def load_map(session: Session, feed: Feed) -> FeedMap:
    items = dict(
        session.execute(select(FeedItem.item_ref, FeedItem.sku_id).where(FeedItem.feed_id == feed.id))
        .tuples()
        .all()
    )
    locations = dict(
        session.execute(
            select(FeedLocation.location_ref, FeedLocation.location_id).where(FeedLocation.feed_id == feed.id)
        )
        .tuples()
        .all()
    )
    by_sku = None
    if (feed.options or {}).get("match_items_by_sku"):
        by_sku = dict(session.execute(select(Sku.code, Sku.id).where(Sku.active.is_(True))).tuples().all())
    return FeedMap(items, locations, by_sku)


def map_item(session: Session, feed: Feed, item_ref: str, sku_code: str) -> None:
    sku_id = session.scalar(select(Sku.id).where(Sku.code == sku_code))
    if sku_id is None:
        raise InvalidInput("no such SKU", [{"field": "sku", "message": f"no SKU {sku_code!r}"}])
    session.execute(delete(FeedItem).where(FeedItem.feed_id == feed.id, FeedItem.item_ref == item_ref))
    session.execute(insert(FeedItem).values(feed_id=feed.id, item_ref=item_ref, sku_id=sku_id))


def map_location(session: Session, feed: Feed, location_ref: str, location_code: str) -> None:
    loc_id = session.scalar(select(Location.id).where(Location.code == location_code))
    if loc_id is None:
        raise InvalidInput(
            "no such location", [{"field": "location", "message": f"no location {location_code!r}"}]
        )
    session.execute(
        delete(FeedLocation).where(FeedLocation.feed_id == feed.id, FeedLocation.location_ref == location_ref)
    )
    session.execute(
        insert(FeedLocation).values(feed_id=feed.id, location_ref=location_ref, location_id=loc_id)
    )


# ---------------------------------------------------------------- read models


@dataclass(frozen=True)
class RunView:
    id: int
    feed: str
    kind: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    counts: dict[str, int]
    error: str | None


@dataclass(frozen=True)
class RunDetailView(RunView):
    report: dict[str, Any]


def run_view(run: SyncRun, code: str, detail: bool = False) -> RunView:
    common = dict(
        id=run.id, feed=code, kind=run.kind, trigger=run.trigger, status=run.status, started_at=run.started_at,
        finished_at=run.finished_at, duration_ms=run.duration_ms, counts=dict(run.counts or {}), error=run.error,
    )  # fmt: skip
    if detail:
        return RunDetailView(**common, report=dict(run.report or {}))  # type: ignore[arg-type]
    return RunView(**common)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FeedView:
    code: str
    name: str
    role: str
    connector: str
    base_url: str | None
    channel: str | None
    credentials: dict[str, str]
    credentials_present: dict[str, bool]
    options: dict[str, Any]
    locations: dict[str, str | None]
    items_mapped: int
    match_items_by_sku: bool
    settings: dict[str, Any]
    enabled: bool
    watermark: datetime | None
    status: str
    last_run: RunView | None
    last_good_run_at: datetime | None
    seconds_since_good_run: int | None
    open_discrepancies: int
    open_quarantine: int


def feed_status(feed: Feed, last: SyncRun | None, last_good_at: datetime | None, now: datetime) -> str:
    """ok, failing (the last run failed), stale (no good run for three cycles), running (the first
    run has not finished), never_run, disabled."""
    if not feed.enabled:
        return "disabled"
    if last is None:
        return "never_run"
    if last.status == "failed":
        return "failing"
    if last_good_at is None:
        return "running"  # its first run has not finished yet
    s = settings_of(feed)
    cycle = s.every_s if feed.role == "source" else s.push_every_s
    if last_good_at is None or (now - last_good_at).total_seconds() > 3 * cycle:
        return "stale"
    return "ok"


def views(
    session: Session, codes: Sequence[str] | None = None, now: datetime | None = None
) -> list[FeedView]:
    now = now or utcnow()
    stmt = select(Feed).order_by(Feed.code)
    if codes is not None:
        stmt = stmt.where(Feed.code.in_(codes))
    feeds = list(session.scalars(stmt))
    if not feeds:
        return []
    ids = [f.id for f in feeds]
    channels = dict(session.execute(select(Channel.id, Channel.code)).tuples().all())
    loc_codes = dict(session.execute(select(Location.id, Location.code)).tuples().all())
    locs: dict[int, dict[str, str | None]] = {}
    for fid, ref, lid in session.execute(
        select(FeedLocation.feed_id, FeedLocation.location_ref, FeedLocation.location_id).where(
            FeedLocation.feed_id.in_(ids)
        )
    ):
        locs.setdefault(fid, {})[ref] = loc_codes.get(lid) if lid else None
    mapped = dict(
        session.execute(
            select(FeedItem.feed_id, func.count()).where(FeedItem.feed_id.in_(ids)).group_by(FeedItem.feed_id)
        )
        .tuples()
        .all()
    )
    last_ids = (
        select(func.max(SyncRun.id)).where(SyncRun.feed_id.in_(ids)).group_by(SyncRun.feed_id, SyncRun.kind)
    )
    runs: dict[int, SyncRun] = {}
    for run in session.scalars(select(SyncRun).where(SyncRun.id.in_(last_ids))):
        if run.feed_id not in runs or run.id > runs[run.feed_id].id:
            runs[run.feed_id] = run
    good = dict(
        session.execute(
            select(SyncRun.feed_id, func.max(SyncRun.finished_at))
            .where(SyncRun.feed_id.in_(ids), SyncRun.status == "succeeded")
            .group_by(SyncRun.feed_id)
        )
        .tuples()
        .all()
    )
    disc = _open_counts(session, Discrepancy, ids)
    quar = _open_counts(session, Quarantine, ids)
    out = []
    for f in feeds:
        last = runs.get(f.id)
        good_at = good.get(f.id)
        options = {k: v for k, v in (f.options or {}).items() if k != "match_items_by_sku"}
        out.append(
            FeedView(
                code=f.code, name=f.name, role=f.role, connector=f.connector, base_url=f.base_url or None,
                channel=channels.get(f.channel_id) if f.channel_id else None,
                credentials=dict(f.credentials or {}),
                credentials_present={n: bool(os.environ.get(v)) for n, v in (f.credentials or {}).items()},
                options=options, locations=locs.get(f.id, {}), items_mapped=int(mapped.get(f.id, 0)),
                match_items_by_sku=bool((f.options or {}).get("match_items_by_sku")),
                settings=settings_of(f).model_dump(), enabled=f.enabled, watermark=f.watermark,
                status=feed_status(f, last, good_at, now),
                last_run=run_view(last, f.code) if last else None, last_good_run_at=good_at,
                seconds_since_good_run=int((now - good_at).total_seconds()) if good_at else None,
                open_discrepancies=disc.get(f.id, 0), open_quarantine=quar.get(f.id, 0),
            )
        )  # fmt: skip
    return out


def _open_counts(
    session: Session, model: type[Discrepancy] | type[Quarantine], ids: list[int]
) -> dict[int, int]:
    rows = (
        session.execute(
            select(model.feed_id, func.count())
            .where(model.feed_id.in_(ids), model.status == "open")
            .group_by(model.feed_id)
        )
        .tuples()
        .all()
    )
    return {fid: int(n) for fid, n in rows}
