"""Scheduled jobs. Each takes the app, owns its transactions, and does HTTP outside them."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import requests
from flask import Flask
from sqlalchemy.orm import Session

from app.db import read_only, transaction, utcnow
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


def deliver_webhooks(app: Flask) -> dict[str, Any]:
    """Fan new outbox events out to subscriptions, then attempt every due delivery once."""
    factory = app.extensions["session_factory"]
    created = transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
    with read_only(factory) as s:
        due = webhooks.due(s, utcnow(), limit=int(app.config.get("WEBHOOK_BATCH", 200)))
    outcome: dict[str, int] = {}
    client = http.session()
    try:
        for d in due:
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
                    timeout=float(app.config.get("WEBHOOK_TIMEOUT_S", 5)),
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
            outcome[result] = outcome.get(result, 0) + 1
    finally:
        client.close()
    return {"fanned_out": created, "attempted": len(due), **outcome}
