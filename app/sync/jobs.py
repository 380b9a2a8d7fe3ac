"""Scheduled jobs. Each takes the app, owns its transactions, and does HTTP outside them."""

from __future__ import annotations

import itertools
import logging
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import requests
from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import transaction, utcnow
from app.models import JobRun
from app.services import webhooks
from app.sync import http

log = logging.getLogger(__name__)


def _record(
    session: Session,
    *,
    d: webhooks.Due,
    status: int | None,
    error: str | None,
    elapsed: int,
    retry_after: float | None,
) -> str:
    return webhooks.record_attempt(
        session,
        d,
        now=utcnow(),
        status_code=status,
        error=error,
        duration_ms=elapsed,
        retry_after_s=retry_after,
    )


# The scheduler's lease on this job is 300 s and a batch of slow endpoints can outlast it: a run
# stops taking deliveries once its budget (WEBHOOK_BUDGET_S) is spent, leaving the lease room for
# the send in flight. Its claim (WEBHOOK_CLAIM_S) lasts well past both, so a runner that takes an
# expired lease over still cannot send the same delivery again.


def deliver_webhooks(app: Flask) -> dict[str, Any]:
    """Fan out new events, then attempt each claimed due delivery once until the time budget is spent."""
    factory = app.extensions["session_factory"]
    timeout = float(app.config["WEBHOOK_TIMEOUT_S"])
    created = transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
    claimed_at = utcnow()
    until = claimed_at + timedelta(seconds=float(app.config["WEBHOOK_CLAIM_S"]))
    batch = int(app.config["WEBHOOK_BATCH"])
    due = _take_turns(
        transaction(factory, lambda s: webhooks.claim_due(s, claimed_at, limit=batch, until=until))
    )
    deadline = time.monotonic() + float(app.config["WEBHOOK_BUDGET_S"])
    per_run = int(app.config["WEBHOOK_FAILURES_PER_RUN"])
    outcome: dict[str, int] = {}
    attempted = 0
    unsent: list[int] = []
    rested: list[int] = []
    # Subscriptions sent nothing more this run: disabled by this run, or failing (a slow or dead
    # endpoint would otherwise spend the whole budget in timeouts while the others wait).
    resting: set[int] = set()
    failures: dict[int, int] = {}
    client = http.session()
    try:
        for d in due:
            if d.subscription_id in resting:
                rested.append(d.delivery_id)
                continue
            if time.monotonic() >= deadline:
                unsent.append(d.delivery_id)
                continue
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Omnistock-Event": d.event_type,
                "X-Omnistock-Event-Id": str(d.event_id),
                "X-Omnistock-Delivery": str(d.delivery_id),
                "X-Omnistock-Signature": webhooks.signature(d.secret, ts, d.body),
            }
            started = time.perf_counter()
            status: int | None = None
            error: str | None = None
            retry_after: float | None = None
            try:
                resp = client.post(
                    d.url,
                    data=d.body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
                status = resp.status_code
                retry_after = http.retry_after_seconds(resp.headers.get("Retry-After"))
                if not 200 <= status < 300:
                    error = f"HTTP {status}: {resp.text[:200]}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            elapsed = int((time.perf_counter() - started) * 1000)
            result = transaction(
                factory,
                partial(_record, d=d, status=status, error=error, elapsed=elapsed, retry_after=retry_after),
            )
            attempted += 1
            outcome[result] = outcome.get(result, 0) + 1
            if result != "delivered":
                failures[d.subscription_id] = failures.get(d.subscription_id, 0) + 1
            if result == "disabled" or failures.get(d.subscription_id, 0) >= per_run:
                resting.add(d.subscription_id)
    finally:
        client.close()
    if unsent:
        # Due again now (for a live subscription), not only when the claim lapses.
        transaction(factory, lambda s: webhooks.release(s, unsent, utcnow(), claimed_until=until))
    if rested:
        # A resting endpoint's backlog waits a while, so the next runs claim the others' first.
        later = utcnow() + timedelta(seconds=float(app.config["WEBHOOK_REST_S"]))
        transaction(factory, lambda s: webhooks.release(s, rested, later, claimed_until=until))
    return {"fanned_out": created, "attempted": attempted, "deferred": len(unsent) + len(rested), **outcome}


def _take_turns(due: list[webhooks.Due]) -> list[webhooks.Due]:
    """Deliveries interleaved across subscriptions, each subscription's in its own order."""
    queues: dict[int, list[webhooks.Due]] = {}
    for d in due:
        queues.setdefault(d.subscription_id, []).append(d)
    return [d for group in itertools.zip_longest(*queues.values()) for d in group if d is not None]


def prune_history(app: Flask) -> dict[str, Any]:
    """Keep the outbox and the job log bounded: drop what is past its retention, a batch per pass."""
    factory = app.extensions["session_factory"]
    now = utcnow()
    totals = {"events": 0, "deliveries": 0, "job_runs": 0}
    for _ in range(20):  # bounded work per run; the next run goes on
        step = transaction(
            factory, lambda s: webhooks.prune(s, now, keep_days=int(app.config["EVENT_RETENTION_DAYS"]))
        )
        runs = transaction(
            factory, lambda s: prune_job_runs(s, now, keep_days=int(app.config["JOB_RUN_RETENTION_DAYS"]))
        )
        totals["events"] += step["events"]
        totals["deliveries"] += step["deliveries"]
        totals["job_runs"] += runs
        if not step["events"] and not runs:
            break
    return totals


def prune_job_runs(session: Session, now: datetime, *, keep_days: int, batch: int = 5000) -> int:
    """Job runs that started before the retention go (oldest first, a batch per call)."""
    cutoff = now - timedelta(days=keep_days)
    ids = list(
        session.scalars(
            select(JobRun.id)
            .where(JobRun.started_at < cutoff, JobRun.status != "running")
            .order_by(JobRun.id)
            .limit(batch)
        )
    )
    if ids:
        session.execute(delete(JobRun).where(JobRun.id.in_(ids)))
    return len(ids)


def pickup_clock(app: Flask, now: datetime | None = None) -> dict[str, Any]:
    """Remind ready pickups near their deadline, then expire no-shows (their units return to stock)."""
    from app.services.pickup import expiry

    at = now or utcnow()
    run = transaction(app.extensions["session_factory"], lambda s: expiry.remind_and_expire(s, at))
    return {"reminded": run.reminded, "expired": run.expired}


def sync_feeds(app: Flask) -> dict[str, Any]:
    """Run each enabled feed whose cycle is due, or that a vendor webhook asked to pull, once."""
    from app.sync.runner import run_due

    return run_due(app.extensions["session_factory"], app.config)
