"""A source's cycle (FEED-FORMATS.md §9.3): push back, changes, snapshot, changes again, reconcile.

HTTP happens outside database transactions. The snapshot is staged in short transactions of its
own (scratch, not the ledger); the ledger, the quarantine and the watermark then change in one
transaction, or, when anything failed, not at all.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.models_sync import Feed, Outbound
from app.services.sync import quarantine, staging
from app.services.sync.quarantine import Problem
from app.services.sync.reconcile import OUTBOUND_PREFIX, Outcome, import_changes, reconcile_staged
from app.sync import runs
from app.sync.base import (
    Capability,
    Change,
    Connector,
    IncompleteSnapshot,
    Observation,
    OutboundAdjustment,
    PushStatus,
)

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _push_back(
    factory: sessionmaker[Session], ctx: runs.FeedContext, connector: Connector, out: Outcome
) -> None:
    """Web orders fulfilled from this store's stock go to its POS as adjustments (idempotent keys)."""
    if not ctx.settings.push_back or Capability.PUSH_ADJUSTMENTS not in connector.capabilities:
        return
    rev_items = {sku: ref for ref, sku in ctx.fmap.items.items()}
    rev_locs = {loc: ref for ref, loc in ctx.fmap.locations.items() if loc is not None}

    def pending(s: Session) -> list[tuple[int, int, int, int]]:
        rows = s.execute(
            select(Outbound.id, Outbound.sku_id, Outbound.location_id, Outbound.delta)
            .where(Outbound.feed_id == ctx.id, Outbound.status == "pending")
            .order_by(Outbound.id)
            .limit(1000)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    rows = transaction(factory, pending)
    if not rows:
        return
    adjustments = []
    unmapped = []
    for oid, sku_id, loc_id, delta in rows:
        item, loc = rev_items.get(sku_id), rev_locs.get(loc_id)
        if item is None or loc is None:
            unmapped.append(oid)
            continue
        key = f"{OUTBOUND_PREFIX}{oid}"
        adjustments.append(OutboundAdjustment(item, loc, delta, idempotency_key=key, reference_id=key))
    results = connector.push_adjustments(adjustments) if adjustments else []

    def record(s: Session) -> None:
        now = utcnow()
        for r in results:
            oid = int(r.key[len(OUTBOUND_PREFIX) :])
            row = s.get(Outbound, oid)
            if row is None or row.status != "pending":
                continue
            row.attempts += 1
            if r.status is PushStatus.APPLIED:
                row.status, row.acked_at, row.vendor_at = "acked", now, r.vendor_time or now
                out.counts["pushed_back"] += 1
            elif r.status is PushStatus.REJECTED and r.error_code == "IDEMPOTENCY_KEY_REUSED":
                # An earlier try with this key reached the POS: its echo in the feed will ack it.
                out.counts["push_back_awaiting_echo"] += 1
            elif r.status is PushStatus.REJECTED:
                row.status, row.error = "rejected", (r.error_code or r.message or "rejected")[:500]
                out.counts["push_back_rejected"] += 1
        for oid in unmapped:
            row = s.get(Outbound, oid)
            if row is not None:
                row.status, row.error = "rejected", "item or location not mapped for this feed"
                out.counts["push_back_unmapped"] += 1

    transaction(factory, record)


class _Capped:
    """Problems kept for quarantine, up to a bound: a feed whose mapping broke wholesale (a million
    unknown rows) is reported by count, not held row by row in memory."""

    LIMIT = 20_000

    def __init__(self, into: list[Problem], *, counts: Counter[str]) -> None:
        self.into = into
        self.counts = counts

    def append(self, p: Problem) -> None:
        self.counts[f"problem_{p.kind}"] += 1
        if len(self.into) < self.LIMIT:
            self.into.append(p)
        else:
            self.counts["problems_not_kept"] += 1


def _changes(
    connector: Connector, since: datetime | None, out: Outcome
) -> tuple[list[Change], datetime | None]:
    changes: list[Change] = []
    vendor_time: datetime | None = None
    for page in connector.pull_changes(since):
        changes.extend(page.changes)
        vendor_time = page.vendor_time or vendor_time
        out.counts["change_pages"] += 1
    return changes, vendor_time


def _snapshot(
    ctx: runs.FeedContext, connector: Connector, spool: staging.Spool, out: Outcome
) -> tuple[datetime | None, datetime | None]:
    """Map every row and spool it; returns the earliest and latest read time (T)."""
    fmap = ctx.fmap
    seen: set[int] = set()
    first: datetime | None = None
    last: datetime | None = None
    complete = False
    problems = _Capped(out.problems, counts=out.counts)
    counts = out.counts
    locations, items, by_sku = fmap.locations, fmap.items, fmap.by_sku
    add = spool.add
    # A connector that already gives one row per key (the CSV parser) needs no second check, and a
    # million-key set is 60 MB.
    unique = bool(getattr(connector, "unique_rows", False))
    for page in connector.pull_snapshot():
        t = (page.vendor_time or datetime.now(UTC)).astimezone(UTC)
        first = t if first is None or t < first else first
        last = t if last is None or t > last else last
        ti = spool.time_index(t)
        counts["snapshot_pages"] += 1
        counts["seen"] += len(page.observations)
        for obs in page.observations:
            loc_id = locations.get(obs.location_ref)
            sku_id = items.get(obs.item_ref)
            if sku_id is None and by_sku is not None:
                sku_id = by_sku.get(obs.sku or obs.item_ref)
            q = obs.quantity
            if obs.problem or loc_id is None or sku_id is None or not obs.tracked or q is None:
                problems.append(_problem(obs, loc_id, sku_id))
                continue
            units = int(q)
            if units != q or not -(2**31) < units < 2**31:
                problems.append(
                    Problem(
                        "bad_row",
                        obs.item_ref,
                        obs.location_ref,
                        f"quantity {q} is not whole units",
                        dict(obs.raw),
                    )
                )
                continue
            if unique:
                add(sku_id, loc_id, units, ti)
                continue
            packed = (sku_id << 24) | loc_id
            if packed in seen:
                spool.again.append((sku_id, loc_id, units, ti))
                counts["duplicates"] += 1
                continue
            seen.add(packed)
            add(sku_id, loc_id, units, ti)
        complete = page.complete
    if not complete:
        raise IncompleteSnapshot("the snapshot ended before its last page")
    spool.flush()
    counts["staged"] = spool.rows
    return first, last


def _problem(obs: Observation, loc_id: int | None, sku_id: int | None) -> Problem:
    """Why a snapshot row cannot be compared, with what the vendor sent."""
    raw = dict(obs.raw)
    if obs.problem:
        return Problem("bad_row", obs.item_ref, obs.location_ref, obs.problem, raw)
    if loc_id is None:
        return Problem("unknown_location", obs.item_ref, obs.location_ref, "location not mapped", raw)
    if sku_id is None:
        raw = raw or {
            "item_ref": obs.item_ref,
            "sku": obs.sku,
            "quantity": str(obs.quantity),
            "line": obs.line,
        }
        return Problem("unknown_item", obs.item_ref, obs.location_ref, "item not mapped", raw)
    if not obs.tracked:
        return Problem(
            "untracked", obs.item_ref, obs.location_ref, "the vendor does not track this item's stock", raw
        )
    return Problem("bad_row", obs.item_ref, obs.location_ref, "no quantity", raw)


def run_source(
    factory: sessionmaker[Session], code: str, *, trigger: str = "manual", file_bytes: bytes | None = None,
    tools: runs.Tools | None = None, options: dict[str, Any] | None = None, if_due: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Run one reconcile cycle of a source feed now; returns the run's record."""
    tools = tools or runs.Tools()
    name = f"feed:{code}"
    if not runs.lease(factory, name, OWNER):
        raise runs.RunInProgress(f"a run of feed {code} is in progress")
    if if_due and not runs.still_due(factory, code):
        runs.release(factory, name, OWNER)
        return {"run_id": None, "status": "skipped", "counts": {}, "report": {}}
    started = time.monotonic()
    run_id: int | None = None
    out = Outcome()
    spool = staging.Spool()
    try:
        run_id, ctx = runs.start_run(factory, code, "reconcile", trigger)
        rid = run_id
        try:
            ctx.secrets = _secrets(factory, code)
            connector = runs.build_connector(ctx, tools, file_bytes=file_bytes, **(options or {}))
            _push_back(factory, ctx, connector, out)
            has_feed = Capability.CHANGES in connector.capabilities
            since = None
            changes: list[Change] = []
            covered: datetime | None = None
            if has_feed:
                overlap = timedelta(seconds=ctx.settings.overlap_s)
                since = (ctx.watermark or utcnow()) - overlap
                changes, _ = _changes(connector, since, out)
            first_t, last_t = _snapshot(ctx, connector, spool, out)
            if has_feed:
                more, covered = _changes(connector, since, out)
                changes += more
                if covered is None:
                    covered = last_t
            two_strike = Capability.TWO_STRIKE in connector.capabilities
            report = getattr(connector, "report", None)
            if isinstance(report, dict):
                out.report["connector"] = report

            def commit(s: Session) -> dict[str, Any]:
                now = utcnow()
                feed = s.get(Feed, ctx.id, with_for_update=True)
                assert feed is not None  # noqa: S101 - a feed is never deleted under a held lease
                o = Outcome(counts=Counter(out.counts), report=dict(out.report), problems=list(out.problems))
                import_changes(s, feed, ctx.fmap, changes, rid, now, o)
                staging.load(s, spool)
                reconcile_staged(
                    s, feed, rid, times=spool.times, covered_until=covered, two_strike=two_strike, now=now, out=o,
                    min_read_at=first_t,
                )  # fmt: skip
                o.counts["quarantined"] = quarantine.record(s, feed, rid, o.problems, now)
                if covered is not None and (feed.watermark is None or covered > feed.watermark):
                    feed.watermark = covered
                o.counts["matched"] = max(
                    0, o.counts["staged"] - o.counts["adjusted"] - o.counts["deferred"] - o.counts["first_strikes"]
                    - o.counts["discrepancies"],
                )  # fmt: skip
                o.report["read_at"] = {
                    "first": first_t and first_t.isoformat(),
                    "last": last_t and last_t.isoformat(),
                }
                o.report["covered_until"] = covered and covered.isoformat()
                o.report["quarantine_sample"] = [p.__dict__ for p in o.problems[:20]]
                staging.drop(s)
                counts = {k: int(v) for k, v in o.counts.items()}
                runs.finish_run(
                    s, rid, status="succeeded", counts=counts, report=o.report, error=None, started=started
                )
                return {"run_id": rid, "status": "succeeded", "counts": counts, "report": o.report}

            result = transaction(factory, commit)
            log.info("feed run", extra={"feed": code, "run_id": rid, "counts": result["counts"]})
            return result
        except Exception as exc:
            error = runs.describe(exc)
            log.warning("feed run failed", extra={"feed": code, "run_id": rid, "error": error}, exc_info=True)
            counts = {k: int(v) for k, v in out.counts.items()}

            def fail(s: Session) -> None:
                runs.finish_run(
                    s, rid, status="failed", counts=counts, report=out.report, error=error, started=started
                )

            transaction(factory, fail)
            return {"run_id": rid, "status": "failed", "counts": counts, "error": error, "report": out.report}
    finally:
        spool.close()
        runs.release(factory, name, OWNER)


def _secrets(factory: sessionmaker[Session], code: str) -> dict[str, str]:
    from app.services.sync import feeds

    return transaction(factory, lambda s: feeds.secrets_of(feeds.get(s, code)))
