"""Metrics, JSON logs and request ids: what ops sees of every request and job."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from pythonjsonlogger.json import JsonFormatter

HTTP_REQUESTS = Counter("omnistock_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "omnistock_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LEDGER_MOVEMENTS = Counter("omnistock_ledger_movements_total", "Ledger movements recorded", ["kind"])
ORDERS = Counter(
    "omnistock_orders_total",
    "Order requests by channel and outcome (placed, replayed, or the refusal's problem code)",
    ["channel", "outcome"],
)
ORDER_ATTEMPTS = Histogram(
    "omnistock_order_attempts",
    "Routing attempts an order request took (more than 1: it lost reservation races and re-routed)",
    buckets=(1, 2, 3, 4, 5, 8),
)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.request_id = g.get("request_id")
        except RuntimeError:  # outside a request: jobs and CLI
            record.request_id = None
        return True


def configure_logging(level: str, fmt: str) -> None:
    """JSON lines on stderr (or plain text for a terminal), each with the request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces each of its plugins at INFO; only the migrations themselves matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def init_app(app: Flask) -> None:
    """Give every request an id, time it, count it by route and log it."""
    access = logging.getLogger("omnistock.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        # Accept a caller's id only if it is short and printable, so logs cannot be forged.
        g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.get("started")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if started is not None:
            elapsed = time.perf_counter() - started
            HTTP_LATENCY.labels(request.method, route).observe(elapsed)
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "request",
                    extra={
                        "method": request.method,
                        "route": route,
                        "status": response.status_code,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics for this process, or all workers under gunicorn."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            data = generate_latest(registry)
        else:
            data = generate_latest()
        return Response(data, mimetype=CONTENT_TYPE_LATEST)

    app.register_blueprint(bp)
