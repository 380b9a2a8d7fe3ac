"""Profiles of a server under load: pyinstrument (bench/_profile_wsgi.py) or py-spy, ranked and rendered.

Both tools give stacks of (function, where) frames. From them come: self and inclusive time per
function, inclusive time of app/ functions, self time per package, and self time per *layer* of
a request (auth guard, query validation, SQLAlchemy, the driver and its waits, serialisation,
metrics, logging, Flask, ...), which sums to 100%.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from .client import api
from .report import fmt_table, rel
from .server import ROOT, VENV_BIN, BenchError, Server

PYSPY = VENV_BIN / "py-spy"
PYSPY_RATE = 200  # samples per second per process
TOP_N = 40
# A failed profile is reported and does not stop the benchmark.
PROFILE_ERRORS = (BenchError, OSError, subprocess.SubprocessError, requests.RequestException)

Key = tuple[str, str]  # (function, where)

# Layers that own everything below them (the outermost match on a stack decides): what a
# request spends inside the auth guard is the guard's, SQLAlchemy and psycopg included.
# (function, files it may live in: the names before and after the issue-8 reshape)
SUBTREE_LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("auth guard (API key, role)", "_guard", ("app/routes/common.py", "app/web/auth.py")),
    ("request id, metrics, access log", "_start", ("app/observability.py",)),
    ("request id, metrics, access log", "_finish", ("app/observability.py",)),
    ("query/body validation (flask-openapi3, pydantic)", "_validate_request", ("flask_openapi3/request.py",)),
    ("session begin/end (read_only: checkout, ROLLBACK)", "read_only", ("app/db.py", "app/db/uow.py")),
    ("response (Out schema, JSON encoding)", "respond", ("app/web/respond.py",)),
    ("response (Out schema, JSON encoding)", "make_response", ("flask/app.py",)),
)
# Otherwise the innermost frame whose file is in one of these decides (checked in this order).
PACKAGE_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("psycopg (driver, waits on PostgreSQL)", ("psycopg/", "psycopg_binary/", "psycopg_pool/")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("logging", ("logging/",)),
    ("app/ (route, service, domain)", ("app/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("flask-openapi3 (other)", ("flask_openapi3/",)),
    ("Flask, Werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn", ("gunicorn/",)),
)


def layer_of(stack: Sequence[Key]) -> str:
    """The layer a stack's leaf time belongs to (stack: outermost frame first)."""
    for fn, where in stack:
        for name, f, files in SUBTREE_LAYERS:
            if fn == f and where in files:
                return name
    for _fn, where in reversed(stack):
        for name, prefixes in PACKAGE_LAYERS:
            if where.startswith(prefixes):
                return name
    return "other (stdlib, profiler)"


def short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    root = str(ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    marker = "/lib/python3."
    if marker in path:  # the standard library
        return path.split(marker, 1)[1].split("/", 1)[-1]
    return path


def _ranked(table: dict[Key, float], total: float, unit: str) -> list[dict[str, Any]]:
    ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:TOP_N]
    return [
        {
            "function": fn,
            "where": where,
            unit: round(n, 4),
            "pct": round(100.0 * n / total, 2) if total else 0.0,
        }
        for (fn, where), n in ranked
    ]


def _package(where: str) -> str:
    """What to group self time by: the module for app/ code, else the top-level package."""
    if where.startswith("app/"):
        return where
    head = where.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head or "?"


def profile_views(
    self_n: dict[Key, float],
    incl_n: dict[Key, float],
    layers: dict[str, float],
    total: float,
    unit: str = "samples",
) -> dict[str, Any]:
    """Ranked views: self and inclusive per function, app/ code only, self per package, per layer.

    `unit` names the amounts (py-spy samples, pyinstrument seconds); `pct` is of `total`.
    """
    packages: dict[Key, float] = {}
    for (_fn, where), n in self_n.items():
        key = (_package(where), "")
        packages[key] = packages.get(key, 0.0) + n
    app_only = {k: n for k, n in incl_n.items() if k[1].startswith("app/")}
    return {
        "by_self": _ranked(self_n, total, unit),
        "by_inclusive": _ranked(incl_n, total, unit),
        "app_by_inclusive": _ranked(app_only, total, unit),
        "by_package": _ranked(packages, total, unit),
        "by_layer": _ranked({(name, ""): n for name, n in layers.items()}, total, unit),
    }


def parse_pyspy_raw(text: str) -> dict[str, Any]:
    """Self (leaf) and inclusive sample counts per function from `py-spy record --format raw`."""
    self_n: dict[Key, float] = {}
    incl_n: dict[Key, float] = {}
    layers: dict[str, float] = {}
    total = 0.0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = float(count)
        keys = []
        for frame in stack.split(";"):
            if frame.startswith("process ") or frame.startswith("thread "):
                continue  # the process/thread pseudo-frames py-spy adds
            fn, sep, where = frame.rpartition(" (")
            key = (fn, short_path(where.rstrip(")"))) if sep else (frame, "")
            keys.append(key)
        if not keys:
            continue
        total += n
        self_n[keys[-1]] = self_n.get(keys[-1], 0.0) + n
        for key in set(keys):
            incl_n[key] = incl_n.get(key, 0.0) + n
        layer = layer_of(keys)
        layers[layer] = layers.get(layer, 0.0) + n
    return {"total_samples": int(total), **profile_views(self_n, incl_n, layers, total)}


def pyspy_command(pid: int, seconds: int, raw: Path) -> list[str]:
    """py-spy on a gunicorn master and its workers: GIL holders only, raw collapsed stacks."""
    return [str(PYSPY), "record", "--pid", str(pid), "--subprocesses", "--gil", "--nolineno",
            "--rate", str(PYSPY_RATE), "--duration", str(seconds), "--format", "raw", "-o", str(raw)]  # fmt: skip


def pyinstrument_server(db_url: str, prefix: Path, method: str, path: str) -> Server:
    """gunicorn, 1 worker x 1 thread, serving the app wrapped so that each `method path` is profiled.

    One handler thread keeps GIL hand-offs out of the wall-clock profile: each request's time is
    its own Python work plus its waits on PostgreSQL. Concurrent clients queue in gunicorn.
    Reports go to <prefix>.txt and <prefix>.html.
    """
    return Server(
        1,
        prefix.with_name(prefix.name + ".server.log"),
        db_url=db_url,
        threads=1,
        app_spec="bench._profile_wsgi:application",
        extra_env={
            "BENCH_PROFILE_OUT": str(prefix),
            "BENCH_PROFILE_METHOD": method,
            "BENCH_PROFILE_PATH": path,
        },
    )


def profile_start(http: requests.Session, server: Server) -> None:
    api(http, "GET", f"{server.base_url}/__bench_profile/start", 200)


def profile_stop(http: requests.Session, server: Server) -> dict[str, Any]:
    """Stop profiling; the merged profile's figures (requests, total_s, the ranked views, files)."""
    return api(http, "GET", f"{server.base_url}/__bench_profile/stop", 200)  # type: ignore[no-any-return]


def render_profile(profile: dict[str, Any], top: int = 15) -> str:
    load = profile.get("load")
    what = profile.get("what", "3-line orders")
    lines = [
        f"profile ({profile['tool']}): {what} from {profile['clients']} clients for "
        f"{profile['seconds']:g} s, gunicorn {profile['server']}",
        f"  % = {profile['measure']}",
    ]
    if profile["tool"] == "py-spy":
        lines.append(f"  {profile.get('total_samples', 0)} samples; py-spy {profile['command']}")
    else:
        lines.append(
            f"  {profile.get('requests', 0)} requests, {profile.get('total_s', 0):.1f} s of request time"
        )
    if load:
        lines.append(
            f"  load while profiling: {load['ok_per_s']:.1f} {profile.get('unit', 'orders/s')}, "
            f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms"
        )
    lines.append(f"top {top} by self time:")
    rows = [[f"{r['pct']:.1f}", r["function"], r["where"]] for r in profile.get("by_self", [])[:top]]
    lines += fmt_table(["self %", "function", "where"], rows, left=0)
    lines.append(f"top {top} app/ functions by inclusive time:")
    rows = [[f"{r['pct']:.1f}", r["function"], r["where"]] for r in profile.get("app_by_inclusive", [])[:top]]
    lines += fmt_table(["incl %", "function", "where"], rows, left=0)
    lines.append("self time by package (app/ by module):")
    rows = [[f"{r['pct']:.1f}", r["function"]] for r in profile.get("by_package", [])[:top]]
    lines += fmt_table(["self %", "package"], rows, left=0)
    if profile.get("by_layer"):
        lines.append("time by layer (a guard, validation, session or response step owns what it calls):")
        timed = profile["tool"] == "pyinstrument"  # shares of request wall time: also ms per request
        per_request_ms = 1000.0 * profile.get("total_s", 0.0) / max(profile.get("requests", 0), 1)
        rows = [
            [f"{r['pct']:.1f}", f"{r['pct'] * per_request_ms / 100:.2f}" if timed else "-", r["function"]]
            for r in profile["by_layer"]
        ]
        lines += fmt_table(["%", "ms/request", "layer"], rows, left=0)
    for f in profile.get("files", []):
        lines.append(f"  written: {rel(Path(f))}")
    return "\n".join(lines)
