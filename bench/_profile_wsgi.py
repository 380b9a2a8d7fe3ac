"""The omnistock WSGI app wrapped in a pyinstrument profiler, for the benchmarks' profiles only.

gunicorn serves `bench._profile_wsgi:application`. It is the app from `app:create_app()`. In
addition, every request to `BENCH_PROFILE_METHOD BENCH_PROFILE_PATH` (default
`POST /api/v1/orders`) handled between `GET /__bench_profile/start` and
`GET /__bench_profile/stop` is profiled on its own thread (wall clock, 1 ms interval). `stop`
merges the profiles and answers with JSON: the profiled wall time, the number of requests, and
the views of bench/lib/profile.py (functions by self and inclusive time, packages, layers). If
`BENCH_PROFILE_OUT` is set, `stop` also writes `<BENCH_PROFILE_OUT>.txt` (the call tree) and
`<BENCH_PROFILE_OUT>.html`.

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
from bench.lib.profile import Key, layer_of, profile_views

PROFILED_METHOD = os.environ.get("BENCH_PROFILE_METHOD", "POST")
PROFILED_PATH = os.environ.get("BENCH_PROFILE_PATH", "/api/v1/orders")
CONTROL_PREFIX = "/__bench_profile/"
INTERVAL_S = 0.001

StartResponse = Callable[..., Any]


def _merge(sessions: list[Session]) -> Session | None:
    """Combine sessions pairwise, round by round (linear copying per round, not quadratic)."""
    while len(sessions) > 1:
        merged = [Session.combine(a, b) for a, b in zip(sessions[::2], sessions[1::2], strict=False)]
        if len(sessions) % 2:
            merged.append(sessions[-1])
        sessions = merged
    return sessions[0] if sessions else None


def _key(frame: Frame) -> Key:
    return (frame.function or "?", frame.file_path_short or "?")


def _rank(root: Frame) -> dict[str, Any]:
    """Self and inclusive wall time per function (recursion counted once for inclusive), and per layer."""
    self_time: dict[Key, float] = {}
    inclusive: dict[Key, float] = {}
    layers: dict[str, float] = {}
    stack: list[tuple[Frame, tuple[Key, ...]]] = [(root, ())]
    while stack:
        frame, path = stack.pop()
        # pyinstrument adds synthetic leaves ("[self]", "[await]") for time spent in the parent itself.
        synthetic = frame.is_synthetic and bool(path)
        if not synthetic:
            path = (*path, _key(frame))
        key = path[-1]
        own = max(frame.time - sum(c.time for c in frame.children), 0.0)
        self_time[key] = self_time.get(key, 0.0) + own
        if not synthetic and key not in path[:-1]:
            inclusive[key] = inclusive.get(key, 0.0) + frame.time
        if own:
            layer = layer_of(path)
            layers[layer] = layers.get(layer, 0.0) + own
        for child in frame.children:
            stack.append((child, path))
    total = root.time or 1.0
    return {"total_s": round(root.time, 4), **profile_views(self_time, inclusive, layers, total, "seconds")}


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
        if not (self.active and path == PROFILED_PATH and environ.get("REQUEST_METHOD") == PROFILED_METHOD):
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
