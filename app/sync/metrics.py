"""Per-feed sync metrics, read from the database at scrape time (the scheduler runs feeds in
another process, possibly on another machine, so in-process counters would miss them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.db import read_only, utcnow

_COUNTERS = {
    "runs": ("omnistock_sync_runs", "Feed runs by outcome"),
    "rows": ("omnistock_sync_rows", "Rows feeds sent (snapshot rows and channel levels)"),
    "adjustments": ("omnistock_sync_adjustments", "count_adjustment movements reconciliation applied"),
    "discrepancies": ("omnistock_sync_discrepancies", "Discrepancies opened for ops"),
    "quarantined": ("omnistock_sync_quarantined", "Rows quarantined (per run, distinct)"),
}


class SyncCollector(Collector):
    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Any]:
        from app.models_sync import Discrepancy, Feed, Quarantine, SyncRun

        runs = CounterMetricFamily(*_COUNTERS["runs"], labels=["feed", "outcome"])
        fams = {k: CounterMetricFamily(*v, labels=["feed"]) for k, v in _COUNTERS.items() if k != "runs"}
        since = GaugeMetricFamily(
            "omnistock_sync_seconds_since_good_run",
            "Seconds since the feed's last successful run",
            labels=["feed"],
        )
        open_d = GaugeMetricFamily(
            "omnistock_sync_open_discrepancies", "Discrepancies waiting for ops", labels=["feed"]
        )
        open_q = GaugeMetricFamily(
            "omnistock_sync_open_quarantine", "Quarantined rows waiting for ops", labels=["feed"]
        )
        try:
            with read_only(self.factory) as s:
                feeds = list(s.execute(select(Feed.id, Feed.code, Feed.totals)))
                good = dict(
                    s.execute(
                        select(SyncRun.feed_id, func.max(SyncRun.finished_at))
                        .where(SyncRun.status == "succeeded")
                        .group_by(SyncRun.feed_id)
                    )
                    .tuples()
                    .all()
                )
                disc = dict(
                    s.execute(
                        select(Discrepancy.feed_id, func.count())
                        .where(Discrepancy.status == "open")
                        .group_by(Discrepancy.feed_id)
                    )
                    .tuples()
                    .all()
                )
                quar = dict(
                    s.execute(
                        select(Quarantine.feed_id, func.count())
                        .where(Quarantine.status == "open")
                        .group_by(Quarantine.feed_id)
                    )
                    .tuples()
                    .all()
                )
        except Exception:  # a scrape must answer even when the database does not
            return
        now = utcnow()
        for fid, code, totals in feeds:
            t = totals or {}
            for outcome in ("succeeded", "failed"):
                runs.add_metric([code, outcome], float(t.get(f"runs_{outcome}", 0)))
            for key, fam in fams.items():
                fam.add_metric([code], float(t.get(key, 0)))
            last_good = good.get(fid)
            if last_good is not None:
                since.add_metric([code], (now - last_good).total_seconds())
            open_d.add_metric([code], float(disc.get(fid, 0)))
            open_q.add_metric([code], float(quar.get(fid, 0)))
        yield runs
        yield from fams.values()
        yield since
        yield open_d
        yield open_q
