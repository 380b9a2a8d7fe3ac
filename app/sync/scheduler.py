"""The scheduler: its own process in production (`flask sync run-scheduler`), a thread in the demo.

Every job runs through run_job(): a lease row in job_locks lets one process at a time, on any
machine, run it; each run that got the lease is recorded in job_runs with its outcome."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, insert, or_, select, update

from app.db import insert_for, transaction, utcnow
from app.models import JobLock, JobRun
from app.sync import jobs

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[Flask], dict[str, Any]]
    seconds: int
    lease_seconds: int = 300
    description: str = ""


JOBS: tuple[Job, ...] = (
    Job(
        "deliver-webhooks", jobs.deliver_webhooks, 5, description="send outbox events to webhook subscribers"
    ),
    Job("prune-history", jobs.prune_history, 3600, description="drop old delivered events and job runs"),
    Job("pickup-clock", jobs.pickup_clock, 60,
        description="remind ready pickups before their deadline, then expire no-shows back to stock"),
    Job("sync-feeds", jobs.sync_feeds, 10, lease_seconds=1800,
        description="run every feed whose cycle is due or a vendor webhook asked for"),
)  # fmt: skip


def job_by_id(job_id: str) -> Job:
    for job in JOBS:
        if job.id == job_id:
            return job
    raise KeyError(job_id)


def _acquire(app: Flask, job: Job) -> bool:
    def work(s: Any) -> bool:
        now = utcnow()
        s.execute(insert_for(s, JobLock).values(job=job.id).on_conflict_do_nothing())
        got = s.execute(
            update(JobLock)
            .where(JobLock.job == job.id, or_(JobLock.locked_until.is_(None), JobLock.locked_until < now))
            .values(owner=OWNER, locked_until=now + timedelta(seconds=job.lease_seconds))
        )
        return bool(got.rowcount)

    return transaction(app.extensions["session_factory"], work)


def _release(app: Flask, job: Job) -> None:
    transaction(
        app.extensions["session_factory"],
        lambda s: s.execute(
            update(JobLock)
            .where(JobLock.job == job.id, JobLock.owner == OWNER)
            .values(owner=None, locked_until=None)
        ),
    )


def _ran_this_tick(app: Flask, job: Job) -> bool:
    since = utcnow() - timedelta(seconds=job.seconds / 2)
    return bool(
        transaction(
            app.extensions["session_factory"],
            lambda s: s.scalar(select(func.count()).where(JobRun.job == job.id, JobRun.started_at > since)),
        )
    )


def run_job(app: Flask, job: Job, tick: bool = False) -> dict[str, Any] | None:
    """Run a job once if no other process holds its lease; record the run; never raise.

    tick=True (the scheduler's calls): also skip when another process already ran this tick."""
    try:
        if not _acquire(app, job):
            log.debug("job %s is running elsewhere; skipped", job.id)
            return None
        if tick and _ran_this_tick(app, job):
            # Another scheduler process ran this tick already and has let go of the lease.
            _release(app, job)
            return None
    except Exception:
        log.exception("could not take the lease for job %s", job.id)
        _release_quietly(app, job)
        return None
    factory = app.extensions["session_factory"]
    started = utcnow()
    try:
        run_id = transaction(factory, lambda s: s.execute(
            insert(JobRun).values(job=job.id, owner=OWNER, status="running", started_at=started).returning(JobRun.id)
        ).scalar_one())  # fmt: skip
    except Exception:
        # Not recorded, so not run; the lease is let go now rather than held until it expires.
        log.exception("could not record a run of job %s", job.id)
        _release_quietly(app, job)
        return None
    status, detail, error = "succeeded", None, None
    try:
        detail = job.func(app)
    except Exception as exc:
        status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()[:2000]
        log.exception("job %s failed", job.id)
    finally:
        try:
            transaction(factory, lambda s: s.execute(
                update(JobRun).where(JobRun.id == run_id)
                .values(status=status, finished_at=utcnow(), detail=detail, error=error)
            ))  # fmt: skip
        except Exception:
            log.exception("could not record the end of job %s's run %s", job.id, run_id)
        finally:
            _release_quietly(app, job)
    return {"run_id": run_id, "status": status, "detail": detail, "error": error}


def _release_quietly(app: Flask, job: Job) -> None:
    # run_job never raises: a lease we cannot give back expires by itself after lease_seconds.
    try:
        _release(app, job)
    except Exception:
        log.exception("could not release the lease of job %s", job.id)


def build(scheduler: Any, app: Flask) -> Any:
    """Add every job with a stable id: coalesced, never overlapping in this process."""
    for job in JOBS:
        scheduler.add_job(
            run_job, "interval", args=[app, job, True], seconds=job.seconds, id=job.id, name=job.description,
            # Every process ticks on the same instants (multiples of the interval since the
            # epoch), so "once per tick" means the same tick everywhere.
            start_date=datetime.fromtimestamp((time.time() // job.seconds + 1) * job.seconds, UTC),
            replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=max(job.seconds * 2, 30),
        )  # fmt: skip
    return scheduler


def start_background(app: Flask) -> Any:
    """Start the jobs in a background thread of this process (the embedded setup only)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = build(BackgroundScheduler(timezone="UTC"), app)
    scheduler.start()
    log.info("embedded scheduler started", extra={"jobs": [j.id for j in JOBS]})
    return scheduler


def run_forever(app: Flask) -> None:
    """The dedicated scheduler process: blocks until interrupted."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = build(BlockingScheduler(timezone="UTC"), app)
    log.info("scheduler started", extra={"owner": OWNER, "jobs": [j.id for j in JOBS]})
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler stopped")
