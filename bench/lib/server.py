"""What a benchmark runs against: a scratch PostgreSQL database and gunicorn on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = ROOT / ".venv" / "bin"

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
READY_TIMEOUT_S = 60.0


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


def recreate_database(db_name: str) -> str:
    """Drop and recreate the scratch database; return the PostgreSQL server version."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        version_row = conn.execute("SHOW server_version").fetchone()
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    return str(version_row[0]) if version_row else "unknown"


def drop_database(db_name: str) -> None:
    """Drop a scratch database, ending any connection still open to it."""
    log(f"dropping database {db_name}")
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


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


@dataclass
class ScratchDb:
    """A freshly migrated and seeded database of the benchmark's own."""

    name: str
    url: str  # for the app (SQLAlchemy)
    dsn: str  # for psycopg
    pg_version: str
    keys: dict[str, str]  # role -> API key
    seed_s: float


def scratch_database(name: str, seed_args: Sequence[str] = ()) -> ScratchDb:
    """Drop and recreate `name`, run `flask db upgrade`, then `flask demo seed <seed_args>` with keys."""
    url = app_db_url(name)
    log(f"recreating database {name}")
    version = recreate_database(name)
    log("migrating")
    run_flask(["db", "upgrade"], url)
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        keys_file = Path(tmp) / "keys.tsv"
        log(f"seeding demo data {' '.join(seed_args)}".rstrip())
        began = time.perf_counter()
        run_flask(["demo", "seed", *seed_args, "--keys-file", str(keys_file)], url)
        seed_s = time.perf_counter() - began
        keys = read_keys(keys_file)
    return ScratchDb(name, url, libpq_dsn(name), version, keys, round(seed_s, 1))


def ledger_verify(db_url: str) -> dict[str, Any]:
    """`flask ledger verify` on the database: ok, exit code and the (tail of the) output."""
    log("flask ledger verify")
    proc = run_flask(["ledger", "verify"], db_url, check=False)
    return {
        "ok": proc.returncode == 0,
        "exit_code": proc.returncode,
        "output": (proc.stdout + proc.stderr).strip()[-4000:],
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """gunicorn serving `app_spec` (default app:create_app()) on a free local port.

    The spec may be any WSGI app importable from the repository root (the thin baseline, the
    profiling wrapper); it must answer GET /readyz with 200 once it can serve.
    """

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

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self) -> str:
        if self.worker_class == "gthread":
            return f"{self.workers} worker(s) x {self.threads} thread(s) (gthread)"
        return f"{self.workers} worker(s) ({self.worker_class})"

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
