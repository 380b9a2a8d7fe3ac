"""A dead endpoint's backlog cannot starve a healthy one (issue 8, defect 4): each run's claim
gives every subscription with deliveries due its turn, against real HTTP servers on 127.0.0.1."""

import socket
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from app.db import read_only, transaction, unit_of_work, utcnow
from app.domain.events import Event
from app.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from app.services import events, webhooks
from app.sync.scheduler import job_by_id, run_job

SECRET = "s3cret-s3cret-s3cret"
BACKLOG = 300  # more than a run claims (OMNISTOCK_WEBHOOK_BATCH, 200)


def _emit(app: Flask, n: int) -> None:
    with unit_of_work(app.extensions["session_factory"]) as s:
        events.emit(s, [Event("order.created", {"n": i}) for i in range(n)])


def _subscribe(app: Flask, url: str) -> int:
    with unit_of_work(app.extensions["session_factory"]) as s:
        webhooks.create(s, url=url, secret=SECRET, event_types=["*"])
        return int(s.scalar(select(func.max(WebhookSubscription.id))) or 0)


def _settle(app: Flask) -> None:
    """Wait until every event written is past the fan-out horizon (PostgreSQL's oldest running
    transaction is cluster-wide: another database's busy transactions hold it back a moment)."""
    deadline = time.monotonic() + 30
    while True:
        with read_only(app.extensions["session_factory"]) as s:
            horizon = webhooks._finished_below(s)
            latest = s.scalar(select(func.max(OutboxEvent.txid)))
        if horizon is None or latest is None or horizon > latest:
            return
        assert time.monotonic() < deadline, f"events of txid {latest} never settled (horizon {horizon})"
        time.sleep(0.05)


def _fan_out(app: Flask) -> None:
    _settle(app)
    transaction(app.extensions["session_factory"], lambda s: webhooks.fan_out(s, utcnow()))


def _deliver(app: Flask) -> dict[str, Any]:
    _settle(app)
    result = run_job(app, job_by_id("deliver-webhooks"))
    assert result is not None and result["status"] == "succeeded", result
    return dict(result["detail"])


def _delivered(app: Flask, sub_id: int) -> int:
    with read_only(app.extensions["session_factory"]) as s:
        return int(s.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.subscription_id == sub_id, WebhookDelivery.status == "delivered")) or 0)  # fmt: skip


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens: connection refused


@pytest.mark.parametrize("dead_kind", ["answers 500", "closed port"])
def test_a_dead_endpoints_backlog_does_not_starve_a_healthy_one_in_the_first_run(
    app: Flask, httpserver: HTTPServer, dead_kind: str
) -> None:
    httpserver.expect_request("/dead").respond_with_data("no", status=500)
    httpserver.expect_request("/ok").respond_with_data("ok")
    dead_url = httpserver.url_for("/dead") if dead_kind == "answers 500" else _closed_port_url()
    dead = _subscribe(app, dead_url)
    _emit(app, BACKLOG)
    _fan_out(app)  # the dead endpoint's backlog is owed before the healthy one subscribes
    ok = _subscribe(app, httpserver.url_for("/ok"))
    _emit(app, 20)

    detail = _deliver(app)
    assert _delivered(app, ok) == 20, detail
    paths = Counter(req.path for req, _ in httpserver.log)
    assert paths["/ok"] == 20
    # The dead one had its turns too, and rests after three failures.
    assert paths["/dead"] == (3 if dead_kind == "answers 500" else 0)
    assert detail["attempted"] == 23

    # Later events reach the healthy endpoint in the next run while the backlog still waits.
    _emit(app, 5)
    detail = _deliver(app)
    assert _delivered(app, ok) == 25, detail
    assert _delivered(app, dead) == 0


def test_a_claim_takes_every_subscriptions_oldest_first_and_a_backlog_only_what_is_left(app: Flask) -> None:
    big = _subscribe(app, "http://127.0.0.1:9/big")
    _emit(app, 50)
    _fan_out(app)
    small = [_subscribe(app, f"http://127.0.0.1:9/small{i}") for i in range(2)]
    _emit(app, 5)
    _fan_out(app)  # big: 55 owed; each small one: 5
    now = utcnow()
    until = now + timedelta(minutes=10)
    claimed = transaction(app.extensions["session_factory"],
                          lambda s: webhooks.claim_due(s, now, limit=12, until=until))  # fmt: skip
    assert Counter(d.subscription_id for d in claimed) == {big: 4, small[0]: 4, small[1]: 4}
    firsts = {sub: min(d.delivery_id for d in claimed if d.subscription_id == sub) for sub in (big, *small)}
    with read_only(app.extensions["session_factory"]) as s:
        oldest = dict(s.execute(select(WebhookDelivery.subscription_id, func.min(WebhookDelivery.id))
                                .group_by(WebhookDelivery.subscription_id)).tuples().all())  # fmt: skip
    assert firsts == oldest
    # The next claim: the small ones' last, then the backlog takes what they leave.
    rest = transaction(app.extensions["session_factory"],
                       lambda s: webhooks.claim_due(s, now, limit=20, until=until))  # fmt: skip
    assert Counter(d.subscription_id for d in rest) == {big: 18, small[0]: 1, small[1]: 1}
    assert not {d.delivery_id for d in claimed} & {d.delivery_id for d in rest}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_deliveries_another_runner_holds_do_not_count_towards_a_claim(app: Flask) -> None:
    subs = [_subscribe(app, f"http://127.0.0.1:9/hook{i}") for i in range(2)]
    _emit(app, 4)
    factory = app.extensions["session_factory"]
    _fan_out(app)
    now = utcnow()
    until = now + timedelta(minutes=10)
    first = factory()  # claims each subscription's oldest and has not committed yet
    try:
        mine = webhooks.claim_due(first, now, limit=2, until=until)
        theirs = transaction(factory, lambda s: webhooks.claim_due(s, now, limit=2, until=until))
        first.commit()
    finally:
        first.close()
    assert Counter(d.subscription_id for d in mine) == Counter(d.subscription_id for d in theirs) == {
        subs[0]: 1, subs[1]: 1
    }
    assert not {d.delivery_id for d in mine} & {d.delivery_id for d in theirs}
