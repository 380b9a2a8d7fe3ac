"""Webhook subscriptions, their deliveries, and the event outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StrictBool
from pydantic_core import PydanticCustomError

from app.schemas.types import Cursor, EventId, Id32, PageSize, PathModel, Strict, Text

# http(s), then no whitespace or control character anywhere: the delivery job could never post
# to such a URL (a space is not a URL character; requests refuses control characters).
WEBHOOK_URL_PATTERN = r"^https?://[^\s\u0000-\u001f\u007f-\u009f]+$"
MAX_EVENT_TYPES = 100


def _endpoint(url: str) -> str:
    # The pattern alone let "http://" and "http://host:99999/" through.
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in 0..65535
    except ValueError as exc:
        raise PydanticCustomError("url", "not a valid URL: {reason}", {"reason": str(exc)}) from exc
    if not parts.hostname:
        raise PydanticCustomError("url", "give an http(s) URL with a host")
    return url


WebhookUrl = Annotated[
    str,
    Text(2000, pattern=WEBHOOK_URL_PATTERN, message="give an http(s) URL without spaces or control characters"),
    AfterValidator(_endpoint),
]
EventType = Annotated[str, Text(64)]  # OutboxEvent.type is String(64); '*' is every type
Secret = Annotated[str, Text(200, min_length=16)]


class WebhookIn(Strict):
    url: WebhookUrl
    secret: Secret
    event_types: list[EventType] = Field(
        min_length=1, max_length=MAX_EVENT_TYPES, description="Event types, or ['*'] for all"
    )


class WebhookUpdate(Strict):
    url: WebhookUrl | None = None
    secret: Secret | None = Field(None, description="A new signing secret (rotation); never returned")
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=MAX_EVENT_TYPES)
    active: StrictBool | None = None


class WebhookOut(BaseModel):
    id: int
    url: str
    event_types: list[str]
    active: bool
    consecutive_failures: int
    disabled_reason: str | None


class WebhookList(BaseModel):
    items: list[WebhookOut]


class WebhookPath(PathModel):
    id: Id32  # WebhookSubscription.id is an Integer column


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null once delivered or failed"
    )
    delivered_at: datetime | None
    last_error: str | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class EventOut(BaseModel):
    id: int
    type: str
    order_id: int | None
    fulfilment_id: int | None
    payload: dict[str, Any]
    created_at: datetime


class EventQuery(Strict):
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page: where to go on from")
    after: EventId | None = Field(None, description="Start after this event id (when no cursor)")
    type: EventType | None = None
    limit: PageSize | None = None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(
        description="Give it back as cursor to get what follows (also when this page is empty)"
    )
