"""Quarantine: rows a feed sent that could not be used, kept with their raw payload until resolved.

Nothing is created from them and nothing is dropped: ops map the reference (the next run then
picks the row up) or dismiss it with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput, NotFound
from app.models import Location
from app.models_sync import Feed, FeedLocation, Quarantine
from app.services.sync import feeds

MAX_PER_RUN = 5000  # distinct entries a run records; the rest are counted in its report


@dataclass(frozen=True)
class Problem:
    kind: str  # unknown_item | unknown_location | untracked | bad_row
    item_ref: str
    location_ref: str
    reason: str
    raw: dict[str, Any]


def json_safe(raw: Any) -> dict[str, Any]:
    """A vendor's payload as JSON we can store: odd values as text, a non-object wrapped."""
    import orjson

    try:
        out = orjson.loads(orjson.dumps(raw, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(raw)[:2000]}
    return out if isinstance(out, dict) else {"value": out}


def record(session: Session, feed: Feed, run_id: int, problems: Sequence[Problem], now: datetime) -> int:
    """Upsert each distinct problem (seen again: counted, raw refreshed); resolved ones reopen."""
    distinct: dict[tuple[str, str, str], Problem] = {}
    for p in problems:
        distinct.setdefault((p.kind, p.item_ref[:200], p.location_ref[:200]), p)
    keys = list(distinct)[:MAX_PER_RUN]
    existing: dict[tuple[str, str, str], Quarantine] = {}
    for start in range(0, len(keys), 300):
        part = keys[start : start + 300]
        for q in session.scalars(
            select(Quarantine).where(
                Quarantine.feed_id == feed.id, Quarantine.item_ref.in_({k[1] for k in part})
            )
        ):
            existing[(q.kind, q.item_ref, q.location_ref)] = q
    for key in keys:
        p = distinct[key]
        found = existing.get(key)
        if found is None:
            session.add(
                Quarantine(
                    feed_id=feed.id, kind=p.kind, item_ref=key[1], location_ref=key[2], reason=p.reason[:500],
                    raw=json_safe(p.raw), status="open", seen_count=1, first_seen_at=now, last_seen_at=now,
                    last_run_id=run_id,
                )
            )  # fmt: skip
        else:
            q = found
            q.seen_count += 1
            q.last_seen_at, q.last_run_id, q.reason, q.raw = now, run_id, p.reason[:500], json_safe(p.raw)
            if q.status == "resolved" and q.resolution and q.resolution.startswith("mapped"):
                q.status, q.resolved_at = "open", None  # the mapping did not cure it
    return len(distinct)


def get(session: Session, qid: int) -> Quarantine:
    q = session.get(Quarantine, qid, with_for_update=True)
    if q is None:
        raise NotFound(f"no quarantine entry {qid}")
    return q


def resolve(
    session: Session,
    qid: int,
    *,
    sku: str | None,
    location: str | None,
    dismiss: bool,
    note: str | None,
    now: datetime,
) -> Quarantine:
    """Map the entry's reference so the next run takes the row, or dismiss it; either way it closes."""
    q = get(session, qid)
    feed = session.get(Feed, q.feed_id)
    if feed is None:
        raise NotFound(f"no quarantine entry {qid}")
    done = []
    if sku:
        feeds.map_item(session, feed, q.item_ref, sku)
        done.append(f"mapped item {q.item_ref} to {sku}")
    if location:
        if feed.role == "source" and q.kind != "unknown_location":
            raise InvalidInput(
                "this entry is not about a location",
                [{"field": "location", "message": "not a location problem"}],
            )
        taken = session.scalar(
            select(FeedLocation.location_ref)
            .join(Location, Location.id == FeedLocation.location_id)
            .where(
                FeedLocation.feed_id == feed.id,
                Location.code == location,
                FeedLocation.location_ref != q.location_ref,
            )
        )
        if feed.role == "source" and taken is not None:
            # Two of a source's locations feeding one of ours would each overwrite the other's counts.
            raise InvalidInput(
                "that location is already fed from another reference",
                [{"field": "location", "message": f"{location} is already mapped from {taken!r}"}],
            )
        feeds.map_location(session, feed, q.location_ref, location)
        done.append(f"mapped location {q.location_ref} to {location}")
    if not done and dismiss:
        done.append("dismissed")
    resolution = ("; ".join(done) + (f" ({note})" if note else ""))[:500]
    q.status, q.resolved_at, q.resolution = "resolved", now, resolution
    # One mapping cures every row that waited on it (the item at each store, each item at the
    # store): those entries close with it rather than stay open for ops to resolve one by one.
    cured = []
    if sku:
        cured.append((Quarantine.kind == "unknown_item") & (Quarantine.item_ref == q.item_ref))
    if location:
        cured.append((Quarantine.kind == "unknown_location") & (Quarantine.location_ref == q.location_ref))
    if cured:
        session.execute(
            update(Quarantine)
            .where(
                Quarantine.feed_id == q.feed_id,
                Quarantine.status == "open",
                Quarantine.id != q.id,
                or_(*cured),
            )
            .values(status="resolved", resolved_at=now, resolution=f"{resolution} (with entry {q.id})"[:500])
        )
    return q
