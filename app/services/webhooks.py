"""Webhook subscriptions and deliveries: signed, retried with backoff, disabled when dead."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, func, insert, literal, select, text, tuple_, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from app.db import insert_for, is_sqlite
from app.domain.errors import InvalidInput, NotFound
from app.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.services.events import EVENT_TYPES
from app.services.webhook_views import DeliveryView, EventView, WebhookView

MAX_ATTEMPTS = 12
DISABLE_AFTER_FAILURES = 20
BACKOFF_BASE_S = 5
BACKOFF_CAP_S = 3600


def _check_types(types: list[str]) -> None:
    bad = [t for t in types if t != "*" and t not in EVENT_TYPES]
    if bad:
        raise InvalidInput(
            "unknown event types",
            [
                {
                    "field": "event_types",
                    "message": f"unknown: {', '.join(bad)}; known: {', '.join(EVENT_TYPES)}",
                }
            ],
        )


def subscription_view(sub: WebhookSubscription) -> WebhookView:
    """A subscription as surfaces show it (never its secret)."""
    return WebhookView(id=sub.id, url=sub.url, event_types=tuple(sub.event_types), active=sub.active,
                       consecutive_failures=sub.consecutive_failures, disabled_reason=sub.disabled_reason)  # fmt: skip


def _finished_below(session: Session) -> int | None:
    """PostgreSQL: the txid below which every transaction has ended (None on SQLite)."""
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        return None
    return int(session.scalar(text("SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")))


def _position(txid: int, event_id: int) -> Any:
    """A place in the outbox's commit order, to compare (txid, id) with."""
    return tuple_(literal(txid, BigInteger), literal(event_id, BigInteger))


_EVENT_POSITION = tuple_(OutboxEvent.txid, OutboxEvent.id)


def list_events(
    session: Session, *, after: tuple[int, int] | None, after_id: int | None, type_: str | None, limit: int
) -> tuple[list[EventView], tuple[int, int] | None]:
    """Settled events in the order they became final, after a position; and the position reached.

    Polling by id alone would skip an event whose transaction commits after a later id was read
    (ids are drawn before commit), so readers walk (txid, id) like the fan-out, and on PostgreSQL
    only events of transactions that have all ended are shown.
    """
    if after is None and after_id is not None:
        txid = session.scalar(select(OutboxEvent.txid).where(OutboxEvent.id == after_id))
        if txid is None:
            # Its place in commit order is unknown (pruned, or never written): guessing would
            # replay everything or skip events, so say so.
            raise InvalidInput(
                "no such event",
                [{"field": "after", "message": "no event with this id now; poll with next_cursor"}],
            )
        after = (int(txid), after_id)
    stmt = select(OutboxEvent).order_by(OutboxEvent.txid, OutboxEvent.id).limit(limit)
    if after is not None:
        stmt = stmt.where(_position(*after) < _EVENT_POSITION)
    horizon = _finished_below(session)
    if horizon is not None:
        stmt = stmt.where(OutboxEvent.txid < horizon)
    if type_:
        stmt = stmt.where(OutboxEvent.type == type_)
    rows = list(session.scalars(stmt))
    items = [EventView(id=e.id, type=e.type, order_id=e.order_id, fulfilment_id=e.fulfilment_id,
                       payload=e.payload, created_at=e.created_at) for e in rows]  # fmt: skip
    reached = (rows[-1].txid, rows[-1].id) if rows else after
    return items, reached


def create(session: Session, *, url: str, secret: str, event_types: list[str]) -> WebhookView:
    """Subscribe an endpoint to event types; it receives events from now on."""
    _check_types(event_types)
    horizon = _finished_below(session)
    txid, last_id = 0, 0
    if horizon is None:  # SQLite: writers commit in id order, so the latest id is final
        last_id = session.scalar(select(func.max(OutboxEvent.id))) or 0
    else:
        # Everything below the oldest running transaction is past; a transaction still running
        # may commit after this subscription, so its events are owed (a few just committed may
        # come along too: a duplicate notice is harmless, a missing one is not).
        txid = horizon
    sub = WebhookSubscription(url=url, secret=secret, event_types=event_types, active=True,
                              consecutive_failures=0, last_event_txid=txid, last_event_id=last_id)  # fmt: skip
    session.add(sub)
    session.flush()
    return subscription_view(sub)


def _get(session: Session, sub_id: int) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, sub_id, with_for_update=True)
    if sub is None:
        raise NotFound(f"no webhook {sub_id}", webhook_id=sub_id)
    return sub


def update_subscription(session: Session, sub_id: int, data: dict[str, Any]) -> WebhookView:
    """Change a subscription; re-activating it clears its failure count."""
    sub = _get(session, sub_id)
    if data.get("event_types") is not None:
        _check_types(data["event_types"])
        sub.event_types = data["event_types"]
    if data.get("url") is not None:
        sub.url = data["url"]
    if data.get("secret") is not None:
        sub.secret = data["secret"]  # deliveries from now on are signed with it
    if data.get("active") is not None:
        sub.active = data["active"]
        if sub.active:
            sub.consecutive_failures = 0
            sub.disabled_reason = None
    session.flush()
    return subscription_view(sub)


def delete(session: Session, sub_id: int) -> None:
    """Remove a subscription and its pending deliveries."""
    session.delete(_get(session, sub_id))


def list_subscriptions(session: Session) -> list[WebhookView]:
    """Every subscription (never its secret)."""
    return [
        subscription_view(s)
        for s in session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id))
    ]


def list_deliveries(session: Session, sub_id: int, limit: int = 100) -> list[DeliveryView]:
    """A subscription's latest deliveries, newest first; next_attempt_at only while one is owed."""
    if session.get(WebhookSubscription, sub_id) is None:
        raise NotFound(f"no webhook {sub_id}", webhook_id=sub_id)
    rows = session.execute(
        select(WebhookDelivery, OutboxEvent.type).join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == sub_id).order_by(WebhookDelivery.id.desc()).limit(limit)
    ).tuples().all()  # fmt: skip
    return [DeliveryView(id=d.id, event_id=d.event_id, event_type=t, status=d.status, attempts=d.attempts,
                         next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                         delivered_at=d.delivered_at, last_error=d.last_error)
            for d, t in rows]  # fmt: skip


def fan_out(session: Session, now: datetime, batch: int = 1000) -> int:
    """Create a pending delivery for every new event each active subscription wants, exactly once."""
    # Event ids are drawn before commit, so a smaller id can become visible after a larger one.
    # Walk (txid, id) instead, and on PostgreSQL only below the oldest running transaction:
    # every writer there has ended, so no event can still appear behind the mark.
    horizon = _finished_below(session)
    created = 0
    for sub in session.scalars(
        select(WebhookSubscription).where(WebhookSubscription.active).with_for_update()
    ):
        stmt = (
            select(OutboxEvent.txid, OutboxEvent.id, OutboxEvent.type)
            .where(_position(sub.last_event_txid, sub.last_event_id) < _EVENT_POSITION)
            .order_by(OutboxEvent.txid, OutboxEvent.id)
            .limit(batch)
        )
        if horizon is not None:
            stmt = stmt.where(OutboxEvent.txid < horizon)
        evs = session.execute(stmt).all()
        if not evs:
            continue
        wanted = [eid for _, eid, etype in evs if "*" in sub.event_types or etype in sub.event_types]
        if wanted:
            rows = [{"subscription_id": sub.id, "event_id": eid, "status": "pending", "attempts": 0,
                     "next_attempt_at": now} for eid in wanted]  # fmt: skip
            # Idempotent should a mark ever be behind deliveries already made.
            made = session.execute(
                insert_for(session, WebhookDelivery).values(rows).on_conflict_do_nothing().returning(WebhookDelivery.id)
            ).all()
            created += len(made)
        sub.last_event_txid, sub.last_event_id = evs[-1][0], evs[-1][1]
    return created


@dataclass(frozen=True)
class Due:
    delivery_id: int
    subscription_id: int
    url: str
    secret: str
    event_id: int
    event_type: str
    body: bytes


def claim_due(session: Session, now: datetime, *, limit: int, until: datetime) -> list[Due]:
    """Claim up to `limit` due deliveries in turns across subscriptions, each one's oldest first
    (every subscription's first before anyone's second): no other runner gets them before `until`."""
    due = (WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, WebhookSubscription.active)
    # Taken by id alone, one endpoint's backlog filled every claim and the others were never sent
    # anything; numbered per subscription, a backlog only takes the share the others leave.
    turns = (
        select(WebhookDelivery.id.label("id"),
               func.row_number().over(partition_by=WebhookDelivery.subscription_id,
                                      order_by=WebhookDelivery.id).label("turn"))
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(*due)
        .subquery("turns")
    )  # fmt: skip
    rows = session.execute(
        select(WebhookDelivery.id, WebhookSubscription.id, WebhookSubscription.url, WebhookSubscription.secret,
               OutboxEvent.id, OutboxEvent.type, OutboxEvent.payload, OutboxEvent.created_at)
        .join(turns, turns.c.id == WebhookDelivery.id)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(*due)  # checked again on the row as locked: a claim just committed moved it on
        .order_by(turns.c.turn, WebhookDelivery.id).limit(limit)
        # Another runner's claim in flight is skipped, not waited for, and does not count towards
        # the limit (SQLite: BEGIN IMMEDIATE already serialises claims).
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    ).all()  # fmt: skip
    if rows:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_([r[0] for r in rows]))
            .values(next_attempt_at=until)
        )  # fmt: skip
    out = []
    for did, sid, url, secret, eid, etype, payload, created in rows:
        body = json.dumps({"id": eid, "type": etype, "created_at": created.isoformat(), "data": payload},
                          separators=(",", ":"), sort_keys=True).encode()  # fmt: skip
        out.append(Due(did, sid, url, secret, eid, etype, body))
    return out


def release(session: Session, delivery_ids: list[int], at: datetime, *, claimed_until: datetime) -> None:
    """Make claimed deliveries that were not attempted due again at `at` (if still ours and pending)."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.status == "pending",
               WebhookDelivery.next_attempt_at == claimed_until)
        .values(next_attempt_at=at)
    )  # fmt: skip


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over 'timestamp.body', as sent in X-Omnistock-Signature: t=...,v1=..."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempts: int, retry_after_s: float | None) -> timedelta:
    """Exponential backoff from 5 s to an hour; a receiver's Retry-After wins if it is longer."""
    delay = min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_CAP_S)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, BACKOFF_CAP_S))
    return timedelta(seconds=delay)


def record_attempt(
    session: Session, d: Due, *, now: datetime, status_code: int | None, error: str | None,
    duration_ms: int, retry_after_s: float | None = None,
) -> str:  # fmt: skip
    """Record one attempt; a 2xx delivers, anything else schedules a retry or gives up."""
    delivery = session.get(WebhookDelivery, d.delivery_id, with_for_update=True)
    sub = session.get(WebhookSubscription, d.subscription_id, with_for_update=True)
    if delivery is None or sub is None:
        return "gone"
    session.execute(insert(WebhookAttempt).values(delivery_id=delivery.id, attempted_at=now, status_code=status_code,
                                                  error=(error or "")[:1000] or None, duration_ms=duration_ms))  # fmt: skip
    delivery.attempts += 1
    ok = status_code is not None and 200 <= status_code < 300
    if ok:
        delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
        sub.consecutive_failures = 0
        return "delivered"
    delivery.last_error = (error or f"HTTP {status_code}")[:1000]
    sub.consecutive_failures += 1
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts, retry_after_s)
    if sub.consecutive_failures >= DISABLE_AFTER_FAILURES and sub.active:
        sub.active = False
        sub.disabled_reason = (
            f"disabled after {sub.consecutive_failures} consecutive failures: {delivery.last_error}"
        )
        return "disabled"  # this attempt's failure disabled the subscription: send it nothing more
    return delivery.status


def pending_count(session: Session) -> int:
    """Deliveries still owed (for metrics and tests)."""
    return int(
        session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
        )
        or 0
    )


def prune(session: Session, now: datetime, *, keep_days: int, batch: int = 5000) -> dict[str, int]:
    """Events past the retention that every active subscription has passed and that no active
    subscription is still owed go, with their deliveries and attempts (oldest first, a batch per call)."""
    cutoff = now - timedelta(days=keep_days)
    owed = (
        select(WebhookDelivery.id)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.event_id == OutboxEvent.id, WebhookDelivery.status == "pending",
               WebhookSubscription.active)
        .exists()
    )  # fmt: skip
    # The oldest events first, along the (txid, id) index: a bounded read however large the
    # table, stopping at the first event still inside the retention.
    stmt = (
        select(OutboxEvent.id, OutboxEvent.created_at, owed)
        .order_by(OutboxEvent.txid, OutboxEvent.id)
        .limit(batch)
    )
    marks = session.execute(
        select(WebhookSubscription.last_event_txid, WebhookSubscription.last_event_id).where(
            WebhookSubscription.active
        )
    ).all()
    if marks:
        # Not past a live subscription's position: the fan-out has yet to look at those.
        txid, eid = min((int(t), int(i)) for t, i in marks)
        stmt = stmt.where(_position(txid, eid) >= _EVENT_POSITION)
    ids = []
    for eid, created, still_owed in session.execute(stmt):
        if created >= cutoff:
            break
        if not still_owed:
            ids.append(eid)
    if not ids:
        return {"events": 0, "deliveries": 0}
    done = select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(ids))
    gone = session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids))
    )
    session.execute(sql_delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(done)))
    session.execute(sql_delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
    session.execute(sql_delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
    return {"events": len(ids), "deliveries": int(gone or 0)}
