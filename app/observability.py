"""Metrics, JSON logs and request ids: what ops sees of every request and job."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from pythonjsonlogger.json import JsonFormatter

from app.metrics import HTTP_LATENCY, HTTP_REQUESTS
from app.metrics import LEDGER_MOVEMENTS as LEDGER_MOVEMENTS  # where stock services found it
from app.sync.metrics import SyncCollector


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
        sync_registry = CollectorRegistry()
        sync_registry.register(SyncCollector(app.extensions["session_factory"]))
        data += generate_latest(sync_registry)
        return Response(data, mimetype=CONTENT_TYPE_LATEST)

    app.register_blueprint(bp)
