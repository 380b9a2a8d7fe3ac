"""A channel's cycle (FEED-FORMATS.md §9.4): take its orders in, then push available-to-sell.

Orders are ingested before the targets are computed, so a sale the shop already made is in the
ledger's reservations first. Shopify gets compare-and-swap on the value it showed us: a stale
write re-ingests orders, recomputes and retries (at most three rounds). Shops without CAS get a
write only where the value differs, and a re-read after it to notice a sale that raced the write.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import insert_for, transaction, utcnow
from app.models_sync import Feed, PushedLevel
from app.services import orders
from app.services.sync import feeds, intake, quarantine, targets
from app.services.sync.quarantine import Problem
from app.sync import runs
from app.sync.base import AvailabilityUpdate, Capability, Connector, PushStatus
from app.sync.source_run import OWNER

log = logging.getLogger(__name__)
CAS_ROUNDS = 3


def _orders(
    factory: sessionmaker[Session],
    ctx: runs.FeedContext,
    connector: Connector,
    policy: orders.Policy,
    counts: Counter[str],
) -> datetime | None:
    if not ctx.settings.order_intake or Capability.ORDERS not in connector.capabilities:
        return None
    since = ctx.orders_watermark - timedelta(seconds=ctx.settings.overlap_s) if ctx.orders_watermark else None
    covered = None
    for page in connector.pull_orders(since):
        for order in page.orders:
            counts["orders_seen"] += 1
            counts[f"orders_{intake.take(factory, ctx.id, ctx.fmap, order, policy)}"] += 1
        covered = page.vendor_time or covered
    return covered


def _levels(
    connector: Connector, ctx: runs.FeedContext, problems: list[Problem], counts: Counter[str]
) -> dict[tuple[str, str], tuple[int, str | None]]:
    """The shop's current available per mapped (item, location), as it shows it now."""
    seen: dict[tuple[str, str], tuple[int, str | None]] = {}
    for page in connector.pull_snapshot():
        for obs in page.observations:
            counts["levels_seen"] += 1
            if obs.location_ref not in ctx.fmap.locations:
                continue  # a shop location we do not push to
            if ctx.fmap.sku_id(obs.item_ref, obs.sku) is None:
                problems.append(
                    Problem(
                        "unknown_item",
                        obs.item_ref,
                        obs.location_ref,
                        "item not mapped",
                        dict(obs.raw) or {"sku": obs.sku},
                    )
                )
                continue
            if not obs.tracked or obs.problem or obs.quantity is None:
                if obs.problem:
                    problems.append(
                        Problem("bad_row", obs.item_ref, obs.location_ref, obs.problem, dict(obs.raw))
                    )
                else:
                    counts["untracked"] += 1
                continue
            seen[(obs.item_ref, obs.location_ref)] = (int(obs.quantity), obs.sku)
    return seen


def _key(code: str, run_id: int, item: str, loc: str, target: int, current: int | None, attempt: int) -> str:
    # The same push retried in this run is the same operation; another run is another one.
    raw = f"{code}|{run_id}|{item}|{loc}|{target}|{current}|{attempt}"
    return hashlib.sha256(raw.encode()).hexdigest()[:64]


def run_channel(
    factory: sessionmaker[Session],
    code: str,
    policy: orders.Policy,
    *,
    trigger: str = "manual",
    tools: runs.Tools | None = None,
    if_due: bool = False,
) -> dict[str, Any]:
    """Run one order-intake and available-to-sell push cycle of a channel feed now."""
    tools = tools or runs.Tools()
    name = f"feed:{code}"
    if not runs.lease(factory, name, OWNER):
        raise runs.RunInProgress(f"a run of feed {code} is in progress")
    if if_due and not runs.still_due(factory, code):
        runs.release(factory, name, OWNER)
        return {"run_id": None, "status": "skipped", "counts": {}, "report": {}}
    started = time.monotonic()
    counts: Counter[str] = Counter()
    problems: list[Problem] = []
    report: dict[str, Any] = {}
    try:
        rid, ctx = runs.start_run(factory, code, "push", trigger)
        try:
            ctx.secrets = transaction(factory, lambda s: feeds.secrets_of(feeds.get(s, code)))
            connector = runs.build_connector(ctx, tools)
            orders_covered = _orders(factory, ctx, connector, policy, counts)
            cas = Capability.CAS in connector.capabilities
            current = _levels(connector, ctx, problems, counts)
            pushed: dict[tuple[str, str], int] = {}
            todo = dict(current)
            last_pushed = {} if cas else transaction(factory, partial(_last_pushed, feed_id=ctx.id))
            for attempt in range(CAS_ROUNDS if cas else 1):
                refs = [(i, loc, sku) for (i, loc), (_q, sku) in todo.items()]
                want = transaction(factory, partial(_targets, ctx=ctx, refs=refs))
                updates = []
                for (item, loc), (now_q, _sku) in todo.items():
                    target = want.get((item, loc))
                    if target is None:
                        continue
                    if target == now_q:
                        counts["unchanged"] += 1
                        continue
                    if not cas and last_pushed.get((item, loc)) == target and now_q < target:
                        # Without CAS the shop's lower figure is its own sales since our last push
                        # (we may not have their orders yet): overwriting it would sell them again.
                        counts["shop_lower_kept"] += 1
                        continue
                    updates.append(
                        AvailabilityUpdate(
                            item, loc, target, now_q if cas else None,
                            idempotency_key=_key(code, rid, item, loc, target, now_q, attempt),
                            reference=f"gid://omnistock/SyncRun/{rid}",
                        )
                    )  # fmt: skip
                if not updates:
                    break
                results = {r.key: r for r in connector.push_available(updates)}
                stale: dict[tuple[str, str], tuple[int, str | None]] = {}
                for u in updates:
                    r = results.get(u.idempotency_key)
                    if r is None or r.status is PushStatus.RETRYABLE:
                        counts["push_failed"] += 1
                    elif r.status in (PushStatus.APPLIED, PushStatus.NOOP):
                        counts["pushed"] += 1
                        pushed[(u.item_ref, u.location_ref)] = u.target
                    elif r.status is PushStatus.STALE:
                        counts["stale"] += 1
                        stale[(u.item_ref, u.location_ref)] = (
                            r.actual_current if r.actual_current is not None else 0,
                            todo[(u.item_ref, u.location_ref)][1],
                        )
                    else:
                        counts["push_rejected"] += 1
                        report.setdefault("rejected", []).append(
                            {
                                "item_ref": u.item_ref,
                                "location_ref": u.location_ref,
                                "code": r.error_code,
                                "message": r.message,
                            }
                        )
                if not stale:
                    break
                # Someone sold between our read and our write: take their orders in, then retry.
                _orders(factory, ctx, connector, policy, counts)
                todo = stale
            if pushed and not cas:
                again = _levels(connector, ctx, [], Counter())
                raced = [k for k, v in pushed.items() if k in again and again[k][0] < v]
                counts["raced_after_write"] += len(raced)
                if raced:
                    _orders(factory, ctx, connector, policy, counts)

            def commit(s: Session) -> dict[str, Any]:
                now = utcnow()
                feed = _feed(s, ctx.id, lock=True)
                if pushed:
                    stmt = insert_for(s, PushedLevel)
                    rows = [
                        {"feed_id": ctx.id, "item_ref": i, "location_ref": loc, "target": t, "pushed_at": now}
                        for (i, loc), t in pushed.items()
                    ]
                    s.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["feed_id", "item_ref", "location_ref"],
                            set_={"target": stmt.excluded.target, "pushed_at": stmt.excluded.pushed_at},
                        ),
                        rows,
                    )
                counts["quarantined"] = quarantine.record(s, feed, rid, problems, now)
                if orders_covered is not None and (
                    feed.orders_watermark is None or orders_covered > feed.orders_watermark
                ):
                    feed.orders_watermark = orders_covered
                out = {k: int(v) for k, v in counts.items()}
                runs.finish_run(
                    s, rid, status="succeeded", counts=out, report=report, error=None, started=started
                )
                return {"run_id": rid, "status": "succeeded", "counts": out, "report": report}

            return transaction(factory, commit)
        except Exception as exc:
            error = runs.describe(exc)
            log.warning("feed run failed", extra={"feed": code, "run_id": rid, "error": error}, exc_info=True)
            out = {k: int(v) for k, v in counts.items()}
            transaction(
                factory,
                lambda s: runs.finish_run(
                    s, rid, status="failed", counts=out, report=report, error=error, started=started
                ),
            )
            return {"run_id": rid, "status": "failed", "counts": out, "error": error, "report": report}
    finally:
        runs.release(factory, name, OWNER)


def _last_pushed(s: Session, *, feed_id: int) -> dict[tuple[str, str], int]:
    rows = s.execute(
        select(PushedLevel.item_ref, PushedLevel.location_ref, PushedLevel.target).where(
            PushedLevel.feed_id == feed_id
        )
    )
    return {(i, loc): int(t) for i, loc, t in rows}


def _targets(
    s: Session, *, ctx: runs.FeedContext, refs: list[tuple[str, str, str | None]]
) -> dict[tuple[str, str], int]:
    return targets.targets(s, _feed(s, ctx.id), ctx.fmap, refs)


def _feed(s: Session, feed_id: int, lock: bool = False) -> Feed:
    feed = s.get(Feed, feed_id, with_for_update=lock)
    if feed is None:
        raise feeds.UnknownFeed(f"no feed {feed_id}")
    return feed
