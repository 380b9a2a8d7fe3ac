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
from sqlalchemy import select, update
from werkzeug import Request, Response

from app.db import read_only, unit_of_work, utcnow
from app.models import JobRun, WebhookAttempt, WebhookDelivery
from app.services import webhooks
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
