"""Helpers shared by the omnistock benchmarks (bench_foundation.py, bench_orders.py).

Scratch-database setup, the flask CLI, gunicorn start/stop, machine facts, percentiles and
fixed-width tables. Nothing here measures anything by itself.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = ROOT / ".venv" / "bin"

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """The benchmark could not run (setup failed, server died)."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def app_db_url(db_name: str) -> str:
    """The SQLAlchemy URL the app uses for a scratch database."""
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{db_name}"


def libpq_dsn(db_name: str) -> str:
    """A plain libpq DSN (for psycopg) for a scratch database."""
    return f"postgresql://postgres@127.0.0.1:5432/{db_name}"


def app_env(db_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for flask/gunicorn: inherited, minus stray OMNISTOCK_* settings, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNISTOCK_")}
    env["OMNISTOCK_DATABASE_URL"] = db_url
    env["OMNISTOCK_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(ROOT)
    if extra:
        env.update(extra)
    return env


def run_flask(args: Sequence[str], db_url: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(VENV_BIN / "flask"), "--app", "app", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=app_env(db_url), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd[1:])} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile of already-sorted values (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or "unknown"


def recreate_database(db_name: str) -> str:
    """Drop and recreate the scratch database; return the PostgreSQL server version."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        version_row = conn.execute("SHOW server_version").fetchone()
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    return str(version_row[0]) if version_row else "unknown"


def read_keys(path: Path) -> dict[str, str]:
    """role -> key (the first key of each role) from a `demo seed --keys-file` file."""
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            keys.setdefault(parts[0].strip(), parts[2].strip())
    for role in ("storefront", "ops"):
        if role not in keys:
            raise BenchError(f"no {role} key in {path}: {path.read_text()!r}")
    return keys


class Server:
    """gunicorn serving `app_spec` (default app:create_app()) on a free local port."""

    def __init__(
        self,
        workers: int,
        log_path: Path,
        *,
        db_url: str,
        threads: int,
        worker_class: str = "gthread",
        app_spec: str = "app:create_app()",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workers = workers
        self.threads = threads
        self.worker_class = worker_class
        self.app_spec = app_spec
        self.db_url = db_url
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None

    def command(self) -> list[str]:
        cmd = [str(VENV_BIN / "gunicorn"), "-w", str(self.workers), "-k", self.worker_class]
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads)]
        cmd += [
            "-b", f"127.0.0.1:{self.port}",
            # gunicorn 27 otherwise claims the shared ~/.gunicorn/gunicorn.ctl control socket
            "--no-control-socket",
            self.app_spec,
        ]  # fmt: skip
        return cmd

    def start(self) -> None:
        self._log_fh = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=app_env(self.db_url, self.extra_env),
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"gunicorn exited {self.proc.returncode} on start:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise BenchError(f"/readyz not 200 after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # gunicorn master: SIGTERM stops it and its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def session_for(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def fetch_catalog(base_url: str, ops_key: str) -> tuple[list[str], list[str]]:
    """All SKU codes and all location codes."""
    with session_for(ops_key) as http:
        skus: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            resp = http.get(f"{base_url}/api/v1/skus", params=params, timeout=REQUEST_TIMEOUT_S)
            if resp.status_code != 200:
                raise BenchError(f"GET /api/v1/skus -> {resp.status_code}: {resp.text}")
            page = resp.json()
            skus.extend(item["code"] for item in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        resp = http.get(f"{base_url}/api/v1/locations", timeout=REQUEST_TIMEOUT_S)
        if resp.status_code != 200:
            raise BenchError(f"GET /api/v1/locations -> {resp.status_code}: {resp.text}")
        locations = [item["code"] for item in resp.json()["items"]]
    if not skus or not locations:
        raise BenchError(f"empty catalog: {len(skus)} SKUs, {len(locations)} locations")
    return skus, locations


def timed_request(http: requests.Session, method: str, url: str, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, response or exception) for one request; the body is read inside the timing."""
    began = time.perf_counter()
    try:
        resp = http.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        _ = resp.content
    except requests.RequestException as exc:
        return time.perf_counter() - began, exc
    return time.perf_counter() - began, resp


def describe_failure(method: str, path: str, result: Any) -> str:
    if isinstance(result, Exception):
        return f"{method} {path}: {type(result).__name__}: {result}"
    return f"{method} {path} -> {result.status_code}: {result.text[:2000]}"


def fmt_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Fixed-width table: the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
