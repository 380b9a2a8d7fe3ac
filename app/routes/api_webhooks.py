"""Webhook subscriptions and the event outbox (ops)."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction
from app.schemas import (
    DeliveryList,
    EventPage,
    EventQuery,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPath,
    WebhookUpdate,
)
from app.services import webhooks
from app.web import session_factory
from app.web.auth import roles
from app.web.openapi import API_PREFIX, SECURITY
from app.web.pagination import cursor_ids, encode_cursor, page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond, respond_page

bp = APIBlueprint(
    "api_webhooks", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="events")], abp_security=SECURITY
)


@bp.post("/webhooks", responses={201: WebhookOut, **WRITE_PROBLEMS})
@roles("ops")
def create_webhook(body: WebhookIn) -> ApiResult:
    """Subscribe an endpoint to event types; deliveries are HMAC-SHA256 signed with the secret."""
    sub = transaction(
        session_factory(),
        lambda s: webhooks.create(s, url=body.url, secret=body.secret, event_types=body.event_types),
    )
    return respond(WebhookOut, sub, 201)


@bp.get("/webhooks", responses={200: WebhookList, **READ_PROBLEMS})
@roles("ops")
def list_webhooks() -> ApiResult:
    """Every subscription with its health."""
    with read_only(session_factory()) as s:
        return respond(WebhookList, {"items": webhooks.list_subscriptions(s)})


@bp.patch("/webhooks/<int:id>", responses={200: WebhookOut, **WRITE_PROBLEMS})
@roles("ops")
def update_webhook(path: WebhookPath, body: WebhookUpdate) -> ApiResult:
    """Change a subscription; set active=true to revive a disabled one."""
    sub = transaction(
        session_factory(),
        lambda s: webhooks.update_subscription(s, path.id, body.model_dump(exclude_unset=True)),
    )
    return respond(WebhookOut, sub)


@bp.delete("/webhooks/<int:id>", responses={204: None, **WRITE_PROBLEMS})
@roles("ops")
def delete_webhook(path: WebhookPath) -> ApiResult:
    """Remove a subscription and what it was still owed."""
    transaction(session_factory(), lambda s: webhooks.delete(s, path.id))
    return {}, 204


@bp.get("/webhooks/<int:id>/deliveries", responses={200: DeliveryList, **READ_PROBLEMS})
@roles("ops")
def webhook_deliveries(path: WebhookPath) -> ApiResult:
    """A subscription's latest deliveries with attempts and last error."""
    with read_only(session_factory()) as s:
        return respond(DeliveryList, {"items": webhooks.list_deliveries(s, path.id)})


@bp.get("/events", responses={200: EventPage, **READ_PROBLEMS})
@roles("ops")
def list_events(query: EventQuery) -> ApiResult:
    """Events oldest first, from next_cursor (or after an event id); keep polling with next_cursor."""
    after = cursor_ids(query.cursor, 2)
    with read_only(session_factory()) as s:
        items, reached = webhooks.list_events(
            s, after=(after[0], after[1]) if after else None, after_id=query.after, type_=query.type,
            limit=page_limit(query.limit),
        )  # fmt: skip
    return respond_page(EventPage, items, encode_cursor(list(reached)) if reached else None)
