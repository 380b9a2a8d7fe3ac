"""Outbound adjustments: a web order fulfilled from a POS-fed store's stock is owed to that POS.

Captured in the transaction that writes the fulfilment movement, so none is missed; the source's
next cycle pushes it with an idempotency key and recognises its echo in the change feed. Until the
vendor acknowledges it, the reconcile leaves it out of what the feed can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.domain.ledger import Kind
from app.models_sync import Feed, FeedLocation, Outbound

if TYPE_CHECKING:
    from app.services.ledger import Leg

PUSH_BACK_CONNECTORS = ("square",)  # connectors whose sources take adjustments


def capture(session: Session, legs: Sequence[Leg], now: datetime) -> int:
    """Record an outbound adjustment for each fulfilment leg at a location a push-back source feeds."""
    taking = [leg for leg in legs if leg.kind == Kind.FULFILMENT and leg.deltas.on_hand]
    if not taking:
        return 0
    rows = session.execute(
        select(FeedLocation.location_id, Feed.id, Feed.settings)
        .join(Feed, Feed.id == FeedLocation.feed_id)
        .where(
            FeedLocation.location_id.in_({leg.location_id for leg in taking}),
            Feed.role == "source",
            Feed.enabled.is_(True),
            Feed.connector.in_(PUSH_BACK_CONNECTORS),
        )
    ).all()
    feeds_at = {loc: fid for loc, fid, settings in rows if (settings or {}).get("push_back", True)}
    out = [
        {
            "feed_id": feeds_at[leg.location_id], "sku_id": leg.sku_id, "location_id": leg.location_id,
            "delta": leg.deltas.on_hand, "fulfilment_id": leg.fulfilment_id, "status": "pending",
            "attempts": 0, "created_at": now,
        }
        for leg in taking
        if leg.location_id in feeds_at
    ]  # fmt: skip
    if out:
        session.execute(insert(Outbound), out)
    return len(out)
