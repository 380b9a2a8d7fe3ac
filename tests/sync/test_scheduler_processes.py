# ruff: noqa: F811 - pytest fixtures are imported, then named as arguments
"""Two scheduler processes against one PostgreSQL database: every scheduled job runs once per tick
(never twice, never skipped for long), and a feed's cycles never overlap or repeat within a cycle.
A vendor's hint that reaches one process while the other runs the feed is kept for the next run."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import read_only, transaction, unit_of_work, utcnow
from app.models import JobRun, StockLevel
from app.models_sync import SyncRun, WebhookReceipt
from app.schemas.sync import FeedIn
from app.services import catalog
from app.services.sync import feeds
from app.sync import runs
from app.sync.fakes.csvfile import FakeCsvHost
from app.sync.runner import due_feeds, run_due
from app.sync.scheduler import JOBS
from tests.sync.source_fixtures import FEED, csv_feed, csv_host, publish  # noqa: F401 - fixtures

SOAK_S = 25  # long enough for five 5 s ticks and two 10 s ticks with both processes up
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_app(pg_database: str, tmp_path: Path) -> Iterator[Flask]:
    from tests.conftest import _clean, make_test_app

    app = make_test_app(pg_database, tmp_path)
    _clean(app)
    yield app
    app.extensions["engine"].dispose()


def test_a_webhook_hint_is_kept_while_another_process_runs_the_feed(
    app: Flask, csv_feed: FakeCsvHost, publish: Callable[..., bytes]
) -> None:
    """That run may have read the vendor before the webhook came: only a run started after it may
    mark it acted on."""
    factory = app.extensions["session_factory"]
    publish([("TEE", "A", 1)])

    def hint(s: Session) -> None:
        fid = feeds.get(s, FEED).id
        s.add(WebhookReceipt(feed_id=fid, delivery_id="d-1", topic="stock", received_at=utcnow()))

    transaction(factory, hint)
    assert runs.lease(factory, f"feed:{FEED}", "the-other-process")
    assert run_due(factory, app.config) == {FEED: "running elsewhere"}
    with read_only(factory) as s:
        assert s.scalar(select(WebhookReceipt.processed_at)) is None, "the hint is still waiting"
    runs.release(factory, f"feed:{FEED}", "the-other-process")
    assert due_feeds(factory) == [(FEED, "webhook")]
    assert run_due(factory, app.config) == {FEED: "succeeded"}
    with read_only(factory) as s:
        assert s.scalar(select(WebhookReceipt.processed_at)) is not None
        assert s.scalar(select(SyncRun.trigger)) == "webhook"
    assert due_feeds(factory) == [], "acted on once"


def _schedulers(url: str, logs: Path, n: int = 2) -> list[tuple[subprocess.Popen[bytes], Path]]:
    env = {**os.environ, "OMNISTOCK_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    procs = []
    for i in range(n):
        log = logs / f"scheduler-{i}.log"
        with log.open("wb") as out:
            p = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "sync", "run-scheduler"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append((p, log))
    return procs


def _stop(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    for p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # the scheduler stops on KeyboardInterrupt
    for p, _ in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _tick(job_seconds: int, when: datetime) -> int:
    # Ticks are aligned on multiples of the job's interval since the epoch in every process.
    return int(when.timestamp() // job_seconds)


@pytest.mark.timeout(90)
def test_two_scheduler_processes_run_each_job_once_a_tick_and_each_feed_cycle_once(
    pg_app: Flask, pg_database: str, csv_host: FakeCsvHost, tmp_path: Path
) -> None:
    factory = pg_app.extensions["session_factory"]
    with unit_of_work(factory) as s:
        catalog.create_location(s, {"code": "S1", "name": "S1", "kind": "store"})
        catalog.upsert_skus(s, [{"code": c, "name": c} for c in ("A", "B")])
    csv_host.put("/stock.csv", b"sku,location,on_hand\nA,S1,5\nB,S1,2\n")
    cfg = FeedIn.model_validate({
        "code": "store-file", "name": "store file", "role": "source", "connector": "csv",
        "base_url": csv_host.url + "/stock.csv", "locations": {"S1": "S1"}, "match_items_by_sku": True,
        "settings": {"every_s": 10, "attempts": 2},
    })  # fmt: skip
    transaction(factory, lambda s: feeds.upsert(s, cfg))
    procs = _schedulers(pg_database, tmp_path)
    try:
        deadline = time.monotonic() + SOAK_S
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p, _ in procs), [log.read_text()[-3000:] for _, log in procs]
            time.sleep(0.5)
    finally:
        _stop(procs)
    logs = "\n".join(log.read_text(errors="replace")[-3000:] for _, log in procs)

    with read_only(factory) as s:
        runs = list(s.execute(select(JobRun.job, JobRun.owner, JobRun.status, JobRun.started_at)))
        feed_runs = list(
            s.execute(
                select(SyncRun.status, SyncRun.trigger, SyncRun.started_at, SyncRun.finished_at).order_by(
                    SyncRun.id
                )
            )
        )
        stock = dict(s.execute(select(StockLevel.sku_id, StockLevel.on_hand)).tuples().all())
        running = s.scalar(select(func.count()).where(JobRun.status == "running"))
    assert runs, logs
    assert running == 0, "every run the processes started was finished and recorded"
    # Both processes were alive and ticking on the same instants for the whole soak (checked above);
    # which one wins each tick's lease is a race, and one may win them all on a busy machine.
    owners = {r.owner for r in runs}
    assert 1 <= len({o.split(":")[1] for o in owners}) <= 2, owners
    per_tick: dict[tuple[str, int], int] = defaultdict(int)
    for r in runs:
        seconds = next(j.seconds for j in JOBS if j.id == r.job)
        per_tick[(r.job, _tick(seconds, r.started_at))] += 1
    twice = {k: n for k, n in per_tick.items() if n > 1}
    assert not twice, ("a job ran twice in one tick", twice, logs)
    for job in (j for j in JOBS if j.seconds * 2 <= SOAK_S):
        ticks = sorted(t for (name, t) in per_tick if name == job.id)
        assert len(ticks) >= 2, (job.id, ticks, logs)
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) <= 2, (f"{job.id} went more than two ticks without a run", ticks)
        assert all(r.status == "succeeded" for r in runs if r.job == job.id), (job.id, logs)

    assert len(feed_runs) >= 2, (feed_runs, logs)
    assert all(r.status == "succeeded" and r.trigger == "schedule" for r in feed_runs), feed_runs
    for before, after in itertools.pairwise(feed_runs):
        assert before.finished_at is not None and after.started_at >= before.finished_at, "runs never overlap"
        assert (after.started_at - before.started_at).total_seconds() >= 9.5, "one run per 10 s cycle"
    assert sorted(stock.values()) == [2, 5], "the file's counts reached the ledger"
