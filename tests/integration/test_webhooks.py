"""Webhook deliveries against a real HTTP server on 127.0.0.1 (pytest-httpserver)."""

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug import Request, Response

from app.db import read_only, transaction, unit_of_work, utcnow
from app.domain.events import Event
from app.models import JobRun, OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.services import events, webhooks
from app.sync.scheduler import job_by_id, run_job
from tests.conftest import Api

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
def shop(network: Callable[..., None], receive: Callable[..., Any]) -> None:
    network([{"code": "ST-A", "lat": 51.5, "lon": -0.12}], ["TEE"])
    receive(("TEE", "ST-A", 5))


def place(storefront: Api) -> Any:
    r = storefront.post(
        "/api/v1/orders",
        {"lines": [{"sku": "TEE", "qty": 1}], "delivery": {"type": "ship", "lat": 51.5, "lon": -0.1}},
    )
    assert r.status_code == 201, r.json
    return r.json


def deliver(app: Flask) -> dict[str, Any]:
    result = run_job(app, job_by_id("deliver-webhooks"))
    assert result is not None
    assert result["status"] == "succeeded", result
    return result["detail"]


def make_due_now(app: Flask) -> None:
    with unit_of_work(app.extensions["session_factory"]) as s:
        s.execute(update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_events_are_delivered_signed_once(
    app: Flask, ops: Api, storefront: Api, shop: None, httpserver: HTTPServer
) -> None:
    received: list[Request] = []

    def handler(request: Request) -> Response:
        received.append(request)
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    r = ops.post(
        "/api/v1/webhooks",
        {"url": httpserver.url_for("/hook"), "secret": SECRET, "event_types": ["order.created"]},
    )
    assert r.status_code == 201
    order = place(storefront)
    detail = deliver(app)
    assert detail["delivered"] == 1
    assert len(received) == 1
    req = received[0]
    body = req.get_data()
    assert json.loads(body)["data"]["order_id"] == order["id"]
    t, v1 = (part.split("=", 1)[1] for part in req.headers["X-Omnistock-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert req.headers["X-Omnistock-Event"] == "order.created"
    assert deliver(app)["attempted"] == 0  # nothing is sent twice
    with read_only(app.extensions["session_factory"]) as s:
        runs = s.scalars(select(JobRun).where(JobRun.job == "deliver-webhooks")).all()
        assert [r.status for r in runs] == ["succeeded", "succeeded"]
    # Rotation: the next delivery is signed with the new secret, which is never shown.
    rotated = ops.patch(f"/api/v1/webhooks/{r.json['id']}", {"secret": "n3w-s3cret-n3w-s3cret"})
    assert rotated.status_code == 200 and "secret" not in rotated.json
    place(storefront)
    deliver(app)
    body = received[1].get_data()
    t, v1 = (part.split("=", 1)[1] for part in received[1].headers["X-Omnistock-Signature"].split(","))
    assert hmac.compare_digest(
        v1, hmac.new(b"n3w-s3cret-n3w-s3cret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    )
    assert ops.patch(f"/api/v1/webhooks/{r.json['id']}", {"secret": "short"}).status_code == 422


def test_failures_are_retried_with_backoff_honouring_retry_after(
    app: Flask, ops: Api, storefront: Api, shop: None, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request("/hook").respond_with_response(
        Response("busy", status=503, headers={"Retry-After": "120"})
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    ops.post(
        "/api/v1/webhooks",
        {"url": httpserver.url_for("/hook"), "secret": SECRET, "event_types": ["order.created"]},
    )
    place(storefront)
    before = utcnow()
    assert deliver(app)["pending"] == 1
    with read_only(app.extensions["session_factory"]) as s:
        d = s.scalars(select(WebhookDelivery)).one()
        assert d.next_attempt_at >= before + timedelta(seconds=119)
        assert "503" in (d.last_error or "")
    assert deliver(app)["attempted"] == 0  # not due yet
    make_due_now(app)
    assert deliver(app)["delivered"] == 1
    with read_only(app.extensions["session_factory"]) as s:
        attempts = s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
        assert [a.status_code for a in attempts] == [503, 200]


def test_a_dead_endpoint_is_disabled_after_repeated_failures(
    app: Flask, ops: Api, storefront: Api, shop: None, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "DISABLE_AFTER_FAILURES", 3)
    httpserver.expect_request("/hook").respond_with_data("no", status=500)
    sub = ops.post(
        "/api/v1/webhooks", {"url": httpserver.url_for("/hook"), "secret": SECRET, "event_types": ["*"]}
    ).json
    place(storefront)
    for _ in range(3):
        deliver(app)
        make_due_now(app)
    hooks = ops.get("/api/v1/webhooks").json["items"]
    assert hooks[0]["active"] is False
    assert "3 consecutive failures" in hooks[0]["disabled_reason"]
    assert deliver(app)["attempted"] == 0
    revived = ops.patch(f"/api/v1/webhooks/{sub['id']}", {"active": True}).json
    assert (revived["active"], revived["consecutive_failures"]) == (True, 0)


def test_an_unreachable_endpoint_is_recorded_not_fatal(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    ops.post(
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "secret": SECRET, "event_types": ["order.created"]},
    )
    place(storefront)
    assert deliver(app)["pending"] == 1
    sub_id = ops.get("/api/v1/webhooks").json["items"][0]["id"]
    deliveries = ops.get(f"/api/v1/webhooks/{sub_id}/deliveries").json["items"]
    assert "ConnectionError" in deliveries[0]["last_error"]


def test_unknown_event_types_are_refused(ops: Api) -> None:
    r = ops.post(
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/x", "secret": SECRET, "event_types": ["order.teleported"]},
    )
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "event_types")


def test_a_job_whose_lease_is_held_elsewhere_is_skipped(app: Flask) -> None:
    from app.models import JobLock

    with unit_of_work(app.extensions["session_factory"]) as s:
        s.add(
            JobLock(
                job="deliver-webhooks", owner="other-host:1", locked_until=utcnow() + timedelta(minutes=5)
            )
        )
    assert run_job(app, job_by_id("deliver-webhooks")) is None
    with unit_of_work(app.extensions["session_factory"]) as s:
        s.execute(update(JobLock).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert run_job(app, job_by_id("deliver-webhooks")) is not None  # an expired lease is taken over


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_event_committed_after_a_later_one_was_fanned_out_is_still_delivered(app: Flask) -> None:
    factory = app.extensions["session_factory"]
    with unit_of_work(factory) as s:
        sub = webhooks.create(s, url="http://127.0.0.1:9/hook", secret=SECRET, event_types=["*"])
    slow = factory()  # T1: takes the smaller id, then stays open
    try:
        events.emit(slow, [Event("order.created", {"n": 1})])
        with unit_of_work(factory) as s:  # T2: a larger id, committed first
            events.emit(s, [Event("order.created", {"n": 2})])
        transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
        slow.commit()
    finally:
        slow.close()
    transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
    with read_only(factory) as s:
        deliveries = (
            select(func.count())
            .where(WebhookDelivery.event_id == OutboxEvent.id, WebhookDelivery.subscription_id == sub.id)
            .scalar_subquery()
        )
        owed = s.execute(select(OutboxEvent.payload, deliveries).order_by(OutboxEvent.id)).all()
    assert [(p["n"], n) for p, n in owed] == [(1, 1), (2, 1)]


def _emit(app: Flask, n: int, type_: str = "order.created") -> None:
    with unit_of_work(app.extensions["session_factory"]) as s:
        events.emit(s, [Event(type_, {"n": i}) for i in range(n)])


def _subscribe(app: Flask, url: str = "http://127.0.0.1:9/hook") -> int:
    with unit_of_work(app.extensions["session_factory"]) as s:
        return webhooks.create(s, url=url, secret=SECRET, event_types=["*"]).id


def _deliveries(app: Flask) -> list[tuple[int, int, int]]:
    """(delivery id, subscription id, event id) of every delivery, in delivery order."""
    with read_only(app.extensions["session_factory"]) as s:
        q = select(WebhookDelivery.id, WebhookDelivery.subscription_id, WebhookDelivery.event_id)
        return [(d, sub, ev) for d, sub, ev in s.execute(q.order_by(WebhookDelivery.id))]


def test_a_new_subscription_gets_only_events_written_after_it(app: Flask) -> None:
    _emit(app, 2)
    sub = _subscribe(app)
    _emit(app, 1)
    transaction(app.extensions["session_factory"], lambda s: webhooks.fan_out(s, utcnow()))
    with read_only(app.extensions["session_factory"]) as s:
        latest = s.scalar(select(func.max(OutboxEvent.id)))
    assert [(sub_id, ev) for _, sub_id, ev in _deliveries(app)] == [(sub, latest)]


def test_fanning_out_again_from_an_earlier_mark_makes_no_second_delivery(app: Flask) -> None:
    sub = _subscribe(app)
    _emit(app, 3)
    factory = app.extensions["session_factory"]
    assert transaction(factory, lambda s: webhooks.fan_out(s, utcnow())) == 3
    with unit_of_work(factory) as s:
        s.execute(update(WebhookSubscription).values(last_event_txid=0, last_event_id=0))
    assert transaction(factory, lambda s: webhooks.fan_out(s, utcnow())) == 0
    assert [sub_id for _, sub_id, _ in _deliveries(app)] == [sub] * 3


def _claim(s: Session, limit: int) -> list[int]:
    now = utcnow()
    return [d.delivery_id for d in webhooks.claim_due(s, now, limit=limit, until=now + timedelta(minutes=10))]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_overlapping_claims_never_return_the_same_delivery(app: Flask) -> None:
    _subscribe(app)
    _emit(app, 5)
    factory = app.extensions["session_factory"]
    transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
    first = factory()  # claims three and has not committed when the second runner claims
    try:
        mine = _claim(first, 3)
        theirs = transaction(factory, lambda s: _claim(s, 5))
        first.commit()
    finally:
        first.close()
    assert (len(mine), len(theirs)) == (3, 2)
    assert not set(mine) & set(theirs)
    assert transaction(factory, lambda s: _claim(s, 5)) == []  # both claims hold once committed


def test_a_claimed_delivery_is_not_due_again_until_released(app: Flask) -> None:
    _subscribe(app)
    _emit(app, 4)
    factory = app.extensions["session_factory"]
    transaction(factory, lambda s: webhooks.fan_out(s, utcnow()))
    now = utcnow()
    until = now + timedelta(minutes=10)
    first = transaction(factory, lambda s: webhooks.claim_due(s, now, limit=2, until=until))
    second = transaction(factory, lambda s: _claim(s, 5))
    claimed = [d.delivery_id for d in first]
    assert sorted(claimed + second) == [d for d, _, _ in _deliveries(app)]
    assert transaction(factory, lambda s: _claim(s, 5)) == []
    transaction(factory, lambda s: webhooks.release(s, claimed, utcnow(), claimed_until=until))
    assert sorted(transaction(factory, lambda s: _claim(s, 5))) == sorted(claimed)


def test_a_run_whose_time_budget_is_spent_sends_nothing_more_and_leaves_the_rest_due(
    app: Flask, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    _subscribe(app, httpserver.url_for("/hook"))
    _emit(app, 3)
    monkeypatch.setitem(app.config, "WEBHOOK_BUDGET_S", 0)
    detail = deliver(app)
    assert (detail["attempted"], detail["deferred"]) == (0, 3)
    assert len(httpserver.log) == 0
    monkeypatch.setitem(app.config, "WEBHOOK_BUDGET_S", 240)
    detail = deliver(app)  # released, so due at once rather than when the claim lapses
    assert (detail["attempted"], detail["delivered"], detail["deferred"]) == (3, 3, 0)
    with read_only(app.extensions["session_factory"]) as s:
        assert s.scalar(select(func.count()).select_from(WebhookAttempt)) == 3


def test_the_default_threshold_disables_a_subscription_at_its_twentieth_failure_in_a_row(
    app: Flask, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_FAILURES_PER_RUN", 100)  # all 19 in one run
    httpserver.expect_request("/hook").respond_with_data("no", status=500)
    sub_id = _subscribe(app, httpserver.url_for("/hook"))
    factory = app.extensions["session_factory"]
    _emit(app, 19)
    assert deliver(app)["pending"] == 19
    with read_only(factory) as s:
        sub = s.get(WebhookSubscription, sub_id)
        assert sub is not None
        assert (sub.active, sub.consecutive_failures) == (True, 19)
    _emit(app, 1)  # the earlier ones are backing off: only this one is due
    assert deliver(app)["attempted"] == 1
    with read_only(factory) as s:
        sub = s.get(WebhookSubscription, sub_id)
        assert sub is not None
        assert (sub.active, sub.consecutive_failures) == (False, 20)
        assert (sub.disabled_reason or "").startswith("disabled after 20 consecutive failures")


def test_backoff_doubles_from_five_seconds_to_an_hour_and_honours_a_longer_retry_after() -> None:
    delays = [webhooks.backoff(n, None).total_seconds() for n in range(1, 13)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert webhooks.backoff(0, None).total_seconds() == 5
    assert webhooks.backoff(3, 120).total_seconds() == 120  # the receiver asked for longer
    assert webhooks.backoff(3, 2).total_seconds() == 20  # a shorter Retry-After does not hurry us
    assert webhooks.backoff(1, 86_400).total_seconds() == 3600  # nor can it park us past the cap


def test_a_subscription_disabled_mid_run_is_sent_nothing_more_in_that_run(
    app: Flask, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "DISABLE_AFTER_FAILURES", 3)
    httpserver.expect_request("/hook").respond_with_data("no", status=500)
    sub_id = _subscribe(app, httpserver.url_for("/hook"))
    _emit(app, 5)
    detail = deliver(app)
    assert (detail["attempted"], detail["disabled"], detail["deferred"]) == (3, 1, 2)
    assert len(httpserver.log) == 3
    with read_only(app.extensions["session_factory"]) as s:
        sub = s.get(WebhookSubscription, sub_id)
        assert sub is not None
        assert (sub.active, sub.consecutive_failures) == (False, 3)
        assert s.query(WebhookAttempt).count() == 3


def test_webhook_urls_need_a_host_and_deliveries_of_an_unknown_subscription_are_404(
    app: Flask, ops: Api, storefront: Api, shop: None, httpserver: HTTPServer
) -> None:
    r = ops.post("/api/v1/webhooks", {"url": "http://", "secret": SECRET, "event_types": ["*"]})
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "url")
    assert ops.get("/api/v1/webhooks/999/deliveries").status_code == 404
    httpserver.expect_request("/hook").respond_with_data("ok")
    sub = ops.post(
        "/api/v1/webhooks", {"url": httpserver.url_for("/hook"), "secret": SECRET, "event_types": ["*"]}
    ).json
    place(storefront)
    deliver(app)
    items = ops.get(f"/api/v1/webhooks/{sub['id']}/deliveries").json["items"]
    assert items and all((d["status"], d["next_attempt_at"]) == ("delivered", None) for d in items)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_polling_events_never_skips_one_that_commits_late(app: Flask, ops: Api) -> None:
    factory = app.extensions["session_factory"]
    _emit(app, 1)
    first = ops.get("/api/v1/events").json
    assert [e["payload"]["n"] for e in first["items"]] == [0]
    slow = factory()  # T1: takes the smaller id, then stays open
    try:
        events.emit(slow, [Event("order.created", {"n": 1})])
        with unit_of_work(factory) as s:  # T2: a larger id, committed first
            events.emit(s, [Event("order.created", {"n": 2})])
        # An id-ordered reader would now see n=2 and move past n=1 for good; this one waits.
        meanwhile = ops.get("/api/v1/events", query_string={"cursor": first["next_cursor"]}).json
        assert meanwhile["items"] == []
        assert meanwhile["next_cursor"] == first["next_cursor"]
        slow.commit()
    finally:
        slow.close()
    rest = ops.get("/api/v1/events", query_string={"cursor": first["next_cursor"]}).json
    assert sorted(e["payload"]["n"] for e in rest["items"]) == [1, 2]


def test_events_page_on_with_their_cursor_and_refuse_a_foreign_one(app: Flask, ops: Api) -> None:
    _emit(app, 5)
    seen: list[int] = []
    page = ops.get("/api/v1/events", query_string={"limit": 2}).json
    while page["items"]:
        seen += [e["payload"]["n"] for e in page["items"]]
        page = ops.get("/api/v1/events", query_string={"limit": 2, "cursor": page["next_cursor"]}).json
    assert seen == [0, 1, 2, 3, 4]
    first_id = ops.get("/api/v1/events", query_string={"limit": 1}).json["items"][0]["id"]
    after_first = ops.get("/api/v1/events", query_string={"after": first_id}).json["items"]
    assert [e["payload"]["n"] for e in after_first] == [1, 2, 3, 4]
    bad = ops.get("/api/v1/events", query_string={"cursor": "eyJhIjoxfQ"})
    assert (bad.status_code, bad.json["errors"][0]["field"]) == (422, "cursor")


def test_history_past_its_retention_is_pruned_but_nothing_still_owed(
    app: Flask, httpserver: HTTPServer
) -> None:
    factory = app.extensions["session_factory"]
    httpserver.expect_request("/ok").respond_with_data("ok")
    sub_ok = _subscribe(app, httpserver.url_for("/ok"))
    _emit(app, 3)
    deliver(app)  # three delivered
    dead = _subscribe(app)  # 127.0.0.1:9: nothing listens there
    _emit(app, 2)
    deliver(app)  # two more: delivered to sub_ok, still owed to the dead endpoint
    with unit_of_work(factory) as s:
        s.execute(update(OutboxEvent).values(created_at=utcnow() - timedelta(days=31)))
        s.execute(update(JobRun).values(started_at=utcnow() - timedelta(days=15)))
    result = run_job(app, job_by_id("prune-history"))
    assert result is not None and result["status"] == "succeeded", result
    assert result["detail"]["events"] == 3
    with read_only(factory) as s:
        left = s.execute(select(OutboxEvent.payload)).scalars().all()
        assert sorted(p["n"] for p in left) == [0, 1]  # the two the dead endpoint is still owed
        owed = s.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.subscription_id == dead)
        )
        assert owed == 2
        assert s.scalar(select(func.count()).select_from(WebhookAttempt)) == 4  # 2 to sub_ok, 2 failed
        assert {r.job for r in s.scalars(select(JobRun))} == {"prune-history"}  # only the run just made
    assert sub_ok != dead


def test_a_failing_endpoint_rests_for_the_run_while_the_others_are_served(
    app: Flask, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/dead").respond_with_data("no", status=500)
    httpserver.expect_request("/ok").respond_with_data("ok")
    dead = _subscribe(app, httpserver.url_for("/dead"))
    ok = _subscribe(app, httpserver.url_for("/ok"))
    _emit(app, 6)
    detail = deliver(app)
    # Three failures rest the dead endpoint; every delivery to the healthy one still goes out.
    assert (detail["delivered"], detail["pending"], detail["deferred"]) == (6, 3, 3)
    paths = [req.path for req, _ in httpserver.log]
    assert paths.count("/dead") == 3 and paths.count("/ok") == 6
    assert paths[:2] in (["/dead", "/ok"], ["/ok", "/dead"])  # turns are taken, not one queue first
    with read_only(app.extensions["session_factory"]) as s:
        waiting = s.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == dead,
                                                          WebhookDelivery.attempts == 0)).all()  # fmt: skip
        # They rest a minute, so the next runs claim the other subscriptions' deliveries first.
        assert len(waiting) == 3
        assert all(utcnow() + timedelta(seconds=30) < d.next_attempt_at <= utcnow() + timedelta(seconds=61)
                   for d in waiting)  # fmt: skip
    assert ok != dead
