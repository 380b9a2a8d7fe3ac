"""gunicorn settings for the production image; every value can be overridden with GUNICORN_* env."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers, a few per core: the order path is CPU-bound Python, and one request per process
# means a transaction holding a hot row lock is never left waiting for the GIL (bench/README.md
# has the measurements: sync x3 beat gthread 2x16 on throughput and tail latency).
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
# The app's subclasses of gunicorn's workers: a request gunicorn itself refuses (request line over
# 4 KiB, a control character in a header) answers problem+json like the app, not an HTML page.
_PROBLEM_WORKERS = {"sync": "app.server.SyncWorker", "gthread": "app.server.ThreadWorker"}
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
worker_class = _PROBLEM_WORKERS.get(worker_class, worker_class)
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Restart workers now and then so a slow leak can never take a node down.
max_requests = 20000
max_requests_jitter = 2000
accesslog = None  # the app logs every request as JSON with its request id
# Runtime control goes through the orchestrator, not gunicorn's per-user control socket.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # Prometheus multiprocess mode: drop a dead worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
