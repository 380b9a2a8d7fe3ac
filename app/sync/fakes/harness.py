"""What every fake vendor shares: a Flask app on 127.0.0.1, a fake clock, faults and a journal.

Control plane (test and demo only, never part of a vendor's API):
- POST /__fault  {"method","path","nth"|"every","times","status","headers","body","delay_s",
                  "action": "drop" | "drop_after" | "truncate" | "html"}  (see Fault)
- POST /__clock  {"set": ISO 8601} | {"advance_s": seconds}
- GET  /__journal  every request seen: method, path, query, headers, body
Faults can also be added from Python with `fake.fault(...)` when the test holds the fake.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


@dataclass
class Fault:
    """A rule matched against requests by method and path prefix.

    nth: fire on the nth matching call only (1-based); every: fire on every call from `nth` on;
    times: how many times it may fire in all. action:
    - None: answer `status` with `headers` and `body` instead of the vendor's answer
    - "drop": close the connection before handling (nothing applied)
    - "drop_after": handle the request (a write is applied), then close without answering
    - "truncate": send the vendor's answer cut in half
    - "html": answer `status` (default 503) with an HTML error page, as an edge proxy does
    delay_s: sleep first (read timeouts)."""

    method: str = "*"
    path: str = "/"
    nth: int = 1
    every: bool = False
    times: int = 1
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    action: str | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method) or not path.startswith(self.path):
            return False
        self.seen += 1
        if self.fired >= self.times:
            return False
        hit = self.seen >= self.nth if self.every else self.seen == self.nth
        if hit:
            self.fired += 1
        return hit


HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><h1>Briefly unavailable for scheduled maintenance. Check back in a minute.</h1></body></html>"
)


class FakeVendor:
    """Base for a vendor fake: subclasses add their routes to self.app in `routes()`."""

    name = "fake"

    def __init__(self, *, now: datetime | None = None) -> None:
        self.app = Flask(f"fake-{self.name}")
        self.lock = threading.RLock()
        self._now = now or datetime.now(UTC).replace(microsecond=0)
        self._real_at_set = time.monotonic()
        self.frozen = False
        self.faults: list[Fault] = []
        self.journal: list[dict[str, Any]] = []
        self.hooks: list[Callable[[str, str], None]] = []  # called per request: (method, path)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._install_control_plane()
        self.routes()

    # ------------------------------------------------------------ clock

    def now(self) -> datetime:
        """Vendor time: the fake clock, moving with real time unless frozen."""
        if self.frozen:
            return self._now
        return self._now + timedelta(seconds=time.monotonic() - self._real_at_set)

    def set_clock(self, when: datetime, *, frozen: bool | None = None) -> None:
        self._now = when
        self._real_at_set = time.monotonic()
        if frozen is not None:
            self.frozen = frozen

    def advance(self, seconds: float) -> None:
        self.set_clock(self.now() + timedelta(seconds=seconds))

    # ------------------------------------------------------------ faults

    def fault(self, **kwargs: Any) -> Fault:
        f = Fault(**kwargs)
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def calls(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return [
            j
            for j in self.journal
            if (method is None or j["method"] == method) and (path is None or j["path"].startswith(path))
        ]

    # ------------------------------------------------------------ serving

    def routes(self) -> None:  # pragma: no cover - subclasses add routes
        pass

    def start(self) -> str:
        """Serve on 127.0.0.1 on a free port in a daemon thread; returns the base URL."""
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeVendor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ plumbing

    def _install_control_plane(self) -> None:
        app = self.app

        @app.post("/__fault")
        def add_fault() -> Response:
            self.fault(**(request.get_json() or {}))
            return Response("{}", mimetype="application/json")

        @app.post("/__clock")
        def clock() -> Response:
            body = request.get_json() or {}
            if "set" in body:
                self.set_clock(datetime.fromisoformat(body["set"]), frozen=body.get("frozen"))
            if "advance_s" in body:
                self.advance(float(body["advance_s"]))
            return Response(json.dumps({"now": self.now().isoformat()}), mimetype="application/json")

        @app.get("/__journal")
        def journal() -> Response:
            return Response(json.dumps(self.journal, default=str), mimetype="application/json")

        @app.before_request
        def before() -> Response | None:
            if request.path.startswith("/__"):
                return None
            body = request.get_data(cache=True)
            with self.lock:
                self.journal.append(
                    {
                        "method": request.method,
                        "path": request.path,
                        "query": request.query_string.decode(),
                        "headers": dict(request.headers),
                        "body": body.decode("utf-8", "replace"),
                        "at": self.now().isoformat(),
                    }
                )
                for hook in self.hooks:
                    hook(request.method, request.path)
                fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
            g.fault = fault
            if fault is None:
                return None
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.action == "drop":
                _drop_connection()
                return Response(status=500)
            if fault.action == "html":
                return Response(
                    HTML_ERROR, status=fault.status or 503, headers=fault.headers, mimetype="text/html"
                )
            if fault.action is None and fault.status is not None:
                body_out = fault.body if isinstance(fault.body, str) else json.dumps(fault.body or {})
                return Response(
                    body_out, status=fault.status, headers=fault.headers, mimetype="application/json"
                )
            return None

        @app.after_request
        def after(resp: Response) -> Response:
            resp.headers["Date"] = format_datetime(self.now().astimezone(UTC), usegmt=True)
            fault: Fault | None = g.get("fault")
            if fault is not None and fault.action == "drop_after":
                _drop_connection()
            if fault is not None and fault.action == "truncate":
                data = resp.get_data()
                resp.set_data(data[: max(1, len(data) // 2)])
            return resp


class _QuietHandler(WSGIRequestHandler):
    """No access log, and one Date header: the fake's clock, not the host's."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _drop_connection() -> None:
    """Close the client's socket without an answer (the request may already be applied)."""
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def rfc3339(when: datetime, digits: int = 3) -> str:
    """A vendor timestamp in UTC with a Z and `digits` fractional digits (Square sends up to 9)."""
    when = when.astimezone(UTC)
    frac = f"{when.microsecond:06d}"
    frac = (frac + "000")[:digits] if digits else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"
