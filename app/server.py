"""Serve the app with gunicorn: `flask serve` (the embedded single-process setup), and the worker
classes every setup uses so that gunicorn's own refusals answer problem+json like the app."""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker
from gunicorn.workers.sync import SyncWorker as _GunicornSyncWorker

from app.web.errors import PROBLEM_TYPE, TITLES

# gunicorn's refusals by exception, where the class name alone would make a poor code.
_CODES = {
    "LimitRequestLine": "request_line_too_long",
    "LimitRequestHeaders": "request_headers_too_large",
}
_MORE_TITLES = {
    414: "URI too long",
    417: "Expectation failed",
    431: "Request header fields too large",
    501: "Not implemented",
}
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")
_PAGE_MESSAGE = re.compile(rb"</h1>(.*)</body>", re.DOTALL)


class _Page:
    """Stands in for the client socket while gunicorn writes its error page, to read it back."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # gunicorn then writes with one sendall

    def setblocking(self, _flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


def _code(status: int, exc: BaseException) -> str:
    if status >= 500 and status != 501:
        return "internal_error"  # the app's code for what went wrong on our side
    name = type(exc).__name__  # InvalidHeader -> invalid_header, InvalidHTTPVersion -> invalid_http_version
    return _CODES.get(name) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def problem_refusal(status: int, reason: str, exc: BaseException, message: str) -> bytes:
    """The HTTP response for a request gunicorn refused: app.web.errors' problem shape."""
    code = _code(status, exc)
    body = json.dumps({
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status) or _MORE_TITLES.get(status) or reason,
        "status": status,
        "code": code,
        "detail": message or "the request could not be read; the error was logged",
        "instance": None,
        "request_id": None,  # the app never saw the request
    }).encode()  # fmt: skip
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode("latin-1") + body


def answer_as_problem(gunicorn_handle_error: Callable[..., None], req: Any, client: Any, addr: Any,
                      exc: BaseException) -> None:  # fmt: skip
    """Let gunicorn log the refusal and pick its status, then answer it as problem+json."""
    page = _Page()
    gunicorn_handle_error(req, page, addr, exc)
    status_line = _STATUS_LINE.match(page.data)
    message = _PAGE_MESSAGE.search(page.data)
    if status_line is None:  # a page this code does not know: send it as gunicorn wrote it
        answer = page.data
    else:
        text = html.unescape(message.group(1).decode("latin-1")).strip() if message else ""
        answer = problem_refusal(int(status_line.group(1)), status_line.group(2).decode("latin-1"), exc, text)
    with contextlib.suppress(OSError):  # the client may be gone, as gunicorn allows for too
        util.write_nonblock(client, answer)


class SyncWorker(_GunicornSyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker, refusing unreadable requests as problem+json."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer_as_problem(super().handle_error, req, client, addr, exc)


class ThreadWorker(_GunicornThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, refusing unreadable requests as problem+json."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer_as_problem(super().handle_error, req, client, addr, exc)


# What a gunicorn worker_class setting names, as the worker that answers like the app.
WORKER_CLASSES = {"sync": "app.server.SyncWorker", "gthread": "app.server.ThreadWorker"}


class EmbeddedServer(BaseApplication):  # type: ignore[misc]
    """One gunicorn worker with threads, optionally running the scheduler beside the app."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(app: Flask, host: str, port: int, threads: int, *, with_scheduler: bool) -> None:
    """Run until interrupted; the scheduler (if embedded) starts inside the worker."""

    def post_worker_init(_worker: Any) -> None:
        if with_scheduler:
            from app.sync.scheduler import start_background

            start_background(app)

    EmbeddedServer(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "threads": threads,
            "worker_class": WORKER_CLASSES["gthread"],
            "post_worker_init": post_worker_init,
            "accesslog": None,
            "timeout": 60,
            "graceful_timeout": 10,
            # gunicorn 27's control socket lives in a per-user path; two demos would collide on it.
            "control_socket_disable": True,
        },
    ).run()
