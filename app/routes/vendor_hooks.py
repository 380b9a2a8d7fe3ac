"""Webhooks in from vendors: verified, de-duplicated, and only ever a hint to pull.

A delivery never writes the ledger: it records a receipt, and the scheduler's next tick runs the
feed (a pull, or the channel's order intake), which reads the vendor's truth itself. The vendor's
signature is checked first (401 and no effect when wrong); a redelivery (same delivery id) and a
stale one (triggered before what the feed's last good run read, on the vendor's clock) are dropped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Blueprint, Response, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import transaction, utcnow
from app.domain.errors import NotFound
from app.models_sync import Feed, WebhookReceipt
from app.services.sync import feeds
from app.web import session_factory
from app.web.errors import Unauthorized

bp = Blueprint("vendor_hooks", __name__, url_prefix="/hooks")
MAX_BODY = 1024 * 1024


def _answer(status: str, triggered: str | None = None, code: int = 200) -> Response:
    body = json.dumps({"status": status, "triggered": triggered})
    return Response(body, status=code, mimetype="application/json")


def _feed_secrets(code: str, connector: str) -> tuple[int, dict[str, str], dict[str, object]]:
    def work(s: Session) -> tuple[int, dict[str, str], dict[str, object]]:
        feed = feeds.get(s, code)
        if feed.connector != connector:
            raise NotFound(f"no {connector} feed {code!r}")
        from os import environ

        values = {name: environ.get(var, "") for name, var in (feed.credentials or {}).items()}
        return feed.id, values, dict(feed.options or {})

    return transaction(session_factory(), work)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _covered(s: Session, feed_id: int) -> datetime | None:
    """Up to when the feed's last good run read the vendor, on the vendor's clock.

    The delivery's trigger time is the vendor's too: set against our clock (when the run
    started), a shop a few seconds behind us would have its fresh deliveries dropped as stale.
    The watermarks move only when a run succeeds: the change feed a source's run read to, the
    order pull a channel's run began with (its levels are read after that)."""
    feed = s.get(Feed, feed_id)
    if feed is None:
        return None
    return feed.orders_watermark if feed.role == "channel" else feed.watermark


def _receive(
    feed_id: int, delivery_id: str, topic: str, triggered_at: datetime | None, wants: str
) -> Response:
    """Record the hint once; a duplicate or stale delivery is acknowledged and dropped."""

    key = delivery_id[:200]  # looked up as it is stored, or a long id is never a duplicate

    def work(s: Session) -> str:
        if s.get(WebhookReceipt, (feed_id, key)) is not None:
            return "duplicate"
        covered = _covered(s, feed_id)
        stale = triggered_at is not None and covered is not None and triggered_at < covered
        s.add(
            WebhookReceipt(
                feed_id=feed_id, delivery_id=key, topic=topic[:64], received_at=utcnow(),
                triggered_at=triggered_at, processed_at=utcnow() if stale else None,
            )
        )  # fmt: skip
        return "stale" if stale else "accepted"

    try:
        status = transaction(session_factory(), work)
    except IntegrityError:
        status = "duplicate"  # the same delivery, twice at once
    return _answer(status, wants if status == "accepted" else None)


@bp.post("/shopify/<code>")
def shopify(code: str) -> Response:
    """Shopify inventory_levels/update and orders/create: HMAC over the raw body (any current secret)."""
    from app.sync.shopify import verify_webhook

    body = request.get_data(cache=False)[: MAX_BODY + 1]
    feed_id, secrets, _opts = _feed_secrets(code, "shopify")
    keys = [v for k, v in secrets.items() if k.startswith("webhook_secret") and v]
    if not keys or not verify_webhook(keys, body, request.headers.get("X-Shopify-Hmac-Sha256")):
        raise Unauthorized("the Shopify signature does not match")
    topic = request.headers.get("X-Shopify-Topic", "")
    if topic not in ("inventory_levels/update", "orders/create"):
        return _answer("accepted", None)
    delivery = request.headers.get("X-Shopify-Webhook-Id") or request.headers.get("X-Shopify-Event-Id") or ""
    if not delivery:
        raise Unauthorized("no X-Shopify-Webhook-Id")
    wants = "order_intake" if topic == "orders/create" else "pull"
    return _receive(
        feed_id, delivery, topic, _parse_time(request.headers.get("X-Shopify-Triggered-At")), wants
    )


@bp.post("/square/<code>")
def square(code: str) -> Response:
    """Square inventory.count.updated: HMAC-SHA256 over the notification URL and the raw body."""
    from app.sync.square import parse_rfc3339, verify_webhook

    body = request.get_data(cache=False)[: MAX_BODY + 1]
    feed_id, secrets, opts = _feed_secrets(code, "square")
    key = secrets.get("webhook_key", "")
    url = str(opts.get("notification_url") or request.url)
    if not key or not verify_webhook(key, url, body, request.headers.get("X-Square-Hmacsha256-Signature")):
        raise Unauthorized("the Square signature does not match")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    topic = str(payload.get("type") or "")
    event_id = str(payload.get("event_id") or "")
    if topic != "inventory.count.updated" or not event_id:
        return _answer("accepted", None)
    return _receive(feed_id, event_id, topic, parse_rfc3339(payload.get("created_at")), "pull")
