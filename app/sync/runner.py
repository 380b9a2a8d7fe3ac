"""Run a feed now, whichever its role: the CLI, the ops API, the scheduler and webhooks all come here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import read_only, transaction, utcnow
from app.models_sync import Feed, SyncRun, WebhookReceipt
from app.services import orders
from app.services.sync import feeds
from app.sync import runs
from app.sync.channel_run import run_channel
from app.sync.source_run import run_source


def run_feed(
    factory: sessionmaker[Session], config: Mapping[str, Any], code: str, *, kind: str | None = None,
    trigger: str = "manual", file_bytes: bytes | None = None, tools: runs.Tools | None = None, if_due: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One cycle of the feed now: reconcile for a source, order intake and push for a channel.

    options are connector options for this run only (a CSV upload's as_of)."""
    with read_only(factory) as s:
        role = feeds.get(s, code).role
    kind = kind or ("reconcile" if role == "source" else "push")
    if (kind == "reconcile") != (role == "source"):
        from app.domain.errors import InvalidInput

        raise InvalidInput(
            f"a {role} feed runs {'reconcile' if role == 'source' else 'push'}",
            [{"field": "kind", "message": f"feed {code} is a {role}"}],
        )
    if role == "source":
        result = run_source(
            factory, code, trigger=trigger, file_bytes=file_bytes, tools=tools, options=options, if_due=if_due
        )
    else:
        result = run_channel(
            factory, code, orders.policy_from_config(config), trigger=trigger, tools=tools, if_due=if_due
        )
    if result.get("run_id") is not None:
        _mark_hints(factory, int(result["run_id"]))
    return result


def _mark_hints(factory: sessionmaker[Session], run_id: int) -> None:
    """Webhook hints a run started after are acted on by it; later ones wait for the next run.

    Only a run that took place marks them: a call refused because another process is running
    the feed (that run may have started before the webhook came) leaves them for the next tick."""

    def work(s: Session) -> None:
        run = s.get(SyncRun, run_id)
        if run is None:
            return
        s.execute(
            update(WebhookReceipt)
            .where(
                WebhookReceipt.feed_id == run.feed_id,
                WebhookReceipt.processed_at.is_(None),
                WebhookReceipt.received_at <= run.started_at,
            )
            .values(processed_at=utcnow())
        )

    transaction(factory, work)


def due_feeds(factory: sessionmaker[Session]) -> list[tuple[str, str]]:
    """Enabled feeds whose cycle is due, or that a vendor webhook asked to pull: (code, why)."""
    now = utcnow()
    out: list[tuple[str, str]] = []
    with read_only(factory) as s:
        last = dict(
            s.execute(select(SyncRun.feed_id, func.max(SyncRun.started_at)).group_by(SyncRun.feed_id))
            .tuples()
            .all()
        )
        hinted = set(s.scalars(select(WebhookReceipt.feed_id).where(WebhookReceipt.processed_at.is_(None))))
        for feed in s.scalars(select(Feed).where(Feed.enabled.is_(True)).order_by(Feed.code)):
            cfg = feeds.settings_of(feed)
            every = cfg.every_s if feed.role == "source" else cfg.push_every_s
            started = last.get(feed.id)
            if feed.id in hinted:
                out.append((feed.code, "webhook"))
            elif started is None or now - started >= timedelta(seconds=every * 0.95):
                out.append((feed.code, "schedule"))
    return out


def run_due(factory: sessionmaker[Session], config: Mapping[str, Any]) -> dict[str, Any]:
    """The scheduler's tick: run every due feed once (a feed another process is running is skipped)."""
    done: dict[str, Any] = {}
    for code, why in due_feeds(factory):
        try:
            result = run_feed(factory, config, code, trigger=why, if_due=True)
            done[code] = result["status"]
        except runs.RunInProgress:
            done[code] = "running elsewhere"
        except Exception as exc:  # one feed's trouble must not stop the others
            done[code] = f"error: {runs.describe(exc)}"
    return done
