"""Serve the app with gunicorn from `flask serve`: the embedded single-process setup."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


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
            "worker_class": "gthread",
            "post_worker_init": post_worker_init,
            "accesslog": None,
            "timeout": 60,
            "graceful_timeout": 10,
            # gunicorn 27's control socket lives in a per-user path; two demos would collide on it.
            "control_socket_disable": True,
        },
    ).run()
