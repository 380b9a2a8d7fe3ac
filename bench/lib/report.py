"""The report: machine facts, fixed-width tables and the results files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from .server import RESULTS_DIR, ROOT, log

PG_SETTINGS = ("autovacuum", "jit", "synchronous_commit", "shared_buffers", "max_connections")


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


def dirty_app_files() -> list[str]:
    """Files under app/ with uncommitted changes: the code measured is HEAD plus these."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def dirty_summary(files: Sequence[str], shown: int = 4) -> str:
    """The uncommitted app/ files for a table cell: the first few and how many more."""
    if not files:
        return "none"
    more = f" (+{len(files) - shown} more)" if len(files) > shown else ""
    return ", ".join(files[:shown]) + more


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def pg_settings(dsn: str) -> dict[str, str]:
    """The PostgreSQL settings that change what these benchmarks measure."""
    with psycopg.connect(dsn) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in PG_SETTINGS}  # type: ignore[index]


def machine(pg_version: str = "unknown") -> dict[str, Any]:
    """What every report says about where it ran."""
    return {
        "nproc": cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "git_commit": git_commit(),
    }


def machine_rows(m: dict[str, Any]) -> list[list[str]]:
    """The machine table's common rows."""
    return [
        ["nproc", str(m["nproc"])],
        ["cpu", m["cpu_model"]],
        ["platform", m["platform"]],
        ["python", m["python"]],
        ["postgresql", m["postgresql"]],
    ]


def busy_warning(m: dict[str, Any]) -> list[str]:
    """A line for the table when other work was using the CPUs as the run started."""
    try:
        load1 = float(str(m.get("loadavg_start", "")).split()[0])
    except (IndexError, ValueError):
        return []
    if load1 <= max(1, m.get("nproc", 1)):
        return []
    return [f"WARNING: load average {load1:.2f} on {m.get('nproc')} CPUs at the start: other work shares "
            "the machine, so these figures do not compare with runs on an idle one", ""]  # fmt: skip


def fmt_ms(v: float) -> str:
    """Milliseconds with two decimals below 10, one above."""
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_cpu(cpu_pct: dict[str, float]) -> str:
    """client/app/pg CPU as % of one core ("-" for a tier not measured)."""
    return "/".join(f"{cpu_pct[k]:.0f}" if k in cpu_pct else "-" for k in ("client", "app", "pg"))


def fmt_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Fixed-width table: the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def results_file(benchmark: str, stamp: str, suffix: str) -> Path:
    """bench/results/<benchmark>-<stamp><suffix> (the directory is git-ignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{benchmark}-{stamp}{suffix}"


def rel(path: Path) -> str:
    """A path relative to the repository root where it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {rel(path)}")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """A markdown table: the first `left` columns left-aligned, the rest right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(headers))]
    return ["| " + " | ".join(r) + " |" for r in (headers, align, *rows)]
