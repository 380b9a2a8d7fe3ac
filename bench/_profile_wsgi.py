"""The omnistock WSGI app wrapped in a pyinstrument profiler, for bench_orders.py only.

gunicorn serves `bench._profile_wsgi:application`. It is the app from `app:create_app()`. In
addition, every `POST /api/v1/orders` handled between `GET /__bench_profile/start` and
`GET /__bench_profile/stop` is profiled on its own thread (wall clock, 1 ms interval). `stop`
merges the profiles and answers with JSON: the profiled wall time, the number of requests, and
functions ranked by self time and by inclusive time. If `BENCH_PROFILE_OUT` is set, `stop`
also writes `<BENCH_PROFILE_OUT>.txt` (the call tree) and `<BENCH_PROFILE_OUT>.html`.

This is never deployed. The paths under /__bench_profile/ need no key.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.session import Session

from app import create_app

ORDERS_PATH = "/api/v1/orders"
CONTROL_PREFIX = "/__bench_profile/"
INTERVAL_S = 0.001
TOP_N = 40

StartResponse = Callable[..., Any]


def _merge(sessions: list[Session]) -> Session | None:
    """Combine sessions pairwise, round by round (linear copying per round, not quadratic)."""
    while len(sessions) > 1:
        merged = [Session.combine(a, b) for a, b in zip(sessions[::2], sessions[1::2], strict=False)]
        if len(sessions) % 2:
            merged.append(sessions[-1])
        sessions = merged
    return sessions[0] if sessions else None


def _key(frame: Frame) -> tuple[str, str]:
    return (frame.function or "?", frame.file_path_short or "?")


def _package(where: str) -> str:
    if where.startswith("app/"):
        return where
    head = where.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head or "?"


def _rank(root: Frame) -> dict[str, Any]:
    """Self and inclusive wall time per function (recursion counted once for inclusive)."""
    self_time: dict[tuple[str, str], float] = {}
    inclusive: dict[tuple[str, str], float] = {}
    stack: list[tuple[Frame, tuple[str, str] | None, frozenset[tuple[str, str]]]] = [
        (root, None, frozenset())
    ]
    while stack:
        frame, parent_key, on_path = stack.pop()
        # pyinstrument adds synthetic leaves ("[self]", "[await]") for time spent in the parent itself.
        key = parent_key if frame.is_synthetic and parent_key is not None else _key(frame)
        children_time = sum(c.time for c in frame.children)
        self_time[key] = self_time.get(key, 0.0) + max(frame.time - children_time, 0.0)
        if key not in on_path:
            inclusive[key] = inclusive.get(key, 0.0) + frame.time
        for child in frame.children:
            stack.append((child, key, on_path | {key}))
    total = root.time or 1.0
    packages: dict[tuple[str, str], float] = {}
    for (_fn, where), t in self_time.items():
        packages[(_package(where), "")] = packages.get((_package(where), ""), 0.0) + t

    def top(table: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:TOP_N]
        return [
            {"function": fn, "where": where, "seconds": round(t, 4), "pct": round(100.0 * t / total, 2)}
            for (fn, where), t in ranked
        ]

    return {
        "total_s": round(root.time, 4),
        "by_self": top(self_time),
        "by_inclusive": top(inclusive),
        "app_by_inclusive": top({k: t for k, t in inclusive.items() if k[1].startswith("app/")}),
        "by_package": top(packages),
    }


class ProfilingMiddleware:
    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.active = False
        self.sessions: list[Session] = []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(path[len(CONTROL_PREFIX) :], start_response)
        if not (self.active and path == ORDERS_PATH and environ.get("REQUEST_METHOD") == "POST"):
            return self.app(environ, start_response)
        profiler = Profiler(interval=INTERVAL_S, async_mode="disabled")
        profiler.start()
        try:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        finally:
            session = profiler.stop()
        with self.lock:
            if self.active:
                self.sessions.append(session)
        return [body]

    def _control(self, action: str, start_response: StartResponse) -> Iterable[bytes]:
        if action == "start":
            with self.lock:
                self.sessions = []
                self.active = True
            payload: dict[str, Any] = {"profiling": True, "pid": os.getpid()}
        elif action == "stop":
            with self.lock:
                self.active = False
                sessions, self.sessions = self.sessions, []
            payload = {"profiling": False, "pid": os.getpid(), "requests": len(sessions)}
            merged = _merge(sessions)
            root = merged.root_frame() if merged is not None else None
            if merged is not None and root is not None:
                payload.update(_rank(root))
                out = os.environ.get("BENCH_PROFILE_OUT")
                if out:
                    payload["files"] = _write_reports(merged, Path(out))
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown profile action\n"]
        body = json.dumps(payload).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _write_reports(session: Session, prefix: Path) -> list[str]:
    from pyinstrument.renderers import ConsoleRenderer, HTMLRenderer

    written = []
    txt = prefix.with_name(prefix.name + ".txt")
    txt.write_text(ConsoleRenderer(unicode=False, color=False, show_all=False).render(session))
    written.append(str(txt))
    html = prefix.with_name(prefix.name + ".html")
    html.write_text(HTMLRenderer().render(session))
    written.append(str(html))
    return written


application = ProfilingMiddleware(create_app())
