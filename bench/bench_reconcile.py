"""Reconciliation benchmark (issue 9): a CSV stock snapshot over HTTP, reconciled end to end.

Per size (default 100,000 and 1,000,000 rows = SKUs x --locations) it builds a scratch database
migrated to head, with every (SKU, location) holding stock and one receipt movement each (so
`ledger verify` holds), and a stock file in which --diff of the rows differ from the ledger by
1-3 units. A host in its own process serves the file over HTTP (bench/lib/fake_csv_server.py).
Rounds alternate, the database restored to the same state before each:

* bare: what PostgreSQL alone needs for the same result: the file streamed from the host into
  COPY of a TEMP table (sku code, location code, qty), then one statement inserting a
  count_adjustment movement per differing row (codes resolved to ids by joins, differences found
  against stock_levels) and moving stock_levels by the same amounts, in one transaction.
  Nothing else: no file checks, no quiet-key rule, no discrepancy limit, no quarantine.
* service: `run_feed` of a CSV source feed (match by SKU code, locations mapped to themselves,
  auto_apply_limit 1000, settle_s 0) in a fresh child process: download, parse, map, stage,
  reconcile, commit. Wall time of the call, the child's peak RSS, its counts.

Each round's movements are checked against the differences written into the file (same keys,
same deltas, for both); after every service round `ledger verify` must be clean. Targets: the
service within 4x of bare, peak RSS under 400 MB, 100,000 rows under 5 s (shown, not asserted).

    PYTHONPATH=. .venv/bin/python bench/bench_reconcile.py [--sizes 100000,1000000] [--repeat 2]
    PYTHONPATH=. .venv/bin/python bench/bench_reconcile.py --sizes 20000 --repeat 1   # smoke

Exit 0: every check passed; 1: a check failed (see the table); 2: setup failed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy.engine import make_url

try:
    from bench.lib.fake_csv_server import FakeCsvServer
except ImportError:  # run as a script without the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.lib.fake_csv_server import FakeCsvServer
from bench.lib.report import (
    busy_warning,
    dirty_app_files,
    dirty_summary,
    fmt_table,
    loadavg,
    machine,
    machine_rows,
    pg_settings,
    results_file,
    write_json,
)
from bench.lib.server import BenchError, log

# Per process: two runs at once on a shared machine would otherwise drop each other's database.
DB_NAME = f"bench_reconcile_{os.getpid()}"
FEED = "bench-file"
BARE_SOURCE = "bench-bare"
SEED_SOURCE = "bench-seed"
RNG_SEED = 20261209
DELTAS = (-3, -2, -1, 1, 2, 3)
TARGET_RATIO, TARGET_RSS_MB, TARGET_100K_S = 4.0, 400.0, 5.0
# What a run leaves behind besides movements (emptied between rounds, where the schema has them).
SYNC_TABLES = ("sync_snapshot_rows", "sync_key_state", "sync_discrepancies", "sync_quarantine")


def on_hand(i: int, j: int) -> int:
    """The ledger's on_hand of SKU i at location j; the SQL seed below uses the same formula.
    At least 20, so a difference of 1-3 units never crosses zero (no stock events)."""
    return 20 + (i * 7 + j * 13) % 181


def sku_code(i: int) -> str:
    return f"SKU{i:07d}"


def loc_code(j: int) -> str:
    return f"ST{j:03d}"


# ----------------------------------------------------------------------------- setup
def recreate(admin_dsn: str, dsn: str, url: str, skus: int, locs: int) -> float:
    """Drop, create and migrate the scratch database, then seed it in SQL; returns seconds taken."""
    from alembic import command

    from app.cli import alembic_config

    began = time.perf_counter()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    command.upgrade(alembic_config(url), "head")
    # Generated inside PostgreSQL: a million rows never cross the wire (faster than COPY).
    seeded_at = "now() - interval '1 day'"  # long before any file's time: every key is quiet
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            # Consistent by construction: no per-row foreign-key checks (pg_restore --disable-triggers).
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "INSERT INTO locations (id, code, name, kind, created_at, updated_at) "
                "SELECT j, 'ST' || lpad(j::text, 3, '0'), 'Store ' || j, 'store', now(), now() "
                "FROM generate_series(1, %s) j",
                (locs,),
            )
            conn.execute(
                "INSERT INTO skus (id, code, name, active, created_at, updated_at) "
                "SELECT i, 'SKU' || lpad(i::text, 7, '0'), 'Item ' || i, true, now(), now() "
                "FROM generate_series(1, %s) i",
                (skus,),
            )
            for table in ("locations", "skus"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
            conn.execute(
                "INSERT INTO stock_levels (sku_id, location_id, on_hand, reserved, incoming, updated_at) "
                f"SELECT i, j, 20 + (i * 7 + j * 13) %% 181, 0, 0, {seeded_at} "
                "FROM generate_series(1, %s) i, generate_series(1, %s) j",
                (skus, locs),
            )
            conn.execute(
                "INSERT INTO movements (kind, sku_id, location_id, qty, on_hand_delta, reserved_delta, "
                "incoming_delta, reason, source, external_ref, leg, occurred_at, recorded_at) "
                "SELECT 'receipt', sku_id, location_id, on_hand, on_hand, 0, 0, 'bench seed', %s, "
                f"'seed:' || sku_id || ':' || location_id, 0, {seeded_at}, {seeded_at} FROM stock_levels",
                (SEED_SOURCE,),
            )
            conn.execute("CREATE TABLE bench_expected (sku_id int, location_id int, delta int, "
                         "PRIMARY KEY (sku_id, location_id))")  # fmt: skip
        # autovacuum is off on this machine: without statistics the plans would be guesses.
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def stock_file(skus: int, locs: int, diff: float) -> tuple[bytes, list[tuple[int, int, int]]]:
    """The file (sku,location,on_hand; SKU-major) and its differences as (sku_id, location_id, delta)."""
    rows = skus * locs
    rng = random.Random(RNG_SEED)
    differing = {n: rng.choice(DELTAS) for n in rng.sample(range(rows), round(rows * diff))}
    lines = ["sku,location,on_hand"]
    expected = []
    codes = [loc_code(j) for j in range(locs + 1)]
    for i in range(1, skus + 1):
        sku = sku_code(i)
        base = (i - 1) * locs
        for j in range(1, locs + 1):
            qty = on_hand(i, j)
            delta = differing.get(base + j - 1)
            if delta is not None:
                qty += delta
                expected.append((i, j, delta))
            lines.append(f"{sku},{codes[j]},{qty}")
    return ("\n".join(lines) + "\n").encode(), expected


def configure(dsn: str, url: str, file_url: str, locs: int, expected: list[tuple[int, int, int]]) -> None:
    """The CSV source feed, through the service's own configuration path; the expected differences."""
    from app import create_app
    from app.db import unit_of_work
    from app.schemas.sync import FeedIn
    from app.services.sync import feeds

    cfg = FeedIn(
        code=FEED, name="Benchmark stock file", role="source", connector="csv", base_url=file_url,
        locations={loc_code(j): loc_code(j) for j in range(1, locs + 1)}, match_items_by_sku=True,
        settings={"auto_apply_limit": 1000, "settle_s": 0},  # type: ignore[arg-type]
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as instance:
        app = create_app(_overrides(url, instance))
        with unit_of_work(app.extensions["session_factory"]) as s:
            feeds.upsert(s, cfg)
        app.extensions["engine"].dispose()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy("COPY bench_expected (sku_id, location_id, delta) FROM STDIN") as copy,
    ):
        for row in expected:
            copy.write_row(row)


def _overrides(url: str, instance: str) -> dict[str, Any]:
    # The default (production) profile: a benchmark measures what runs in production. Errors only:
    # a failed run is reported from its result, not its log line.
    return {"DATABASE_URL": url, "INSTANCE_PATH": instance, "LOG_LEVEL": "ERROR", "SECRET_KEY": "bench"}


# ----------------------------------------------------------------------------- checks and reset
def check_movements(dsn: str, source: str, expected: int) -> dict[str, Any]:
    """The round's movements against the file's differences: same keys, same deltas, none else."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE e.delta IS DISTINCT FROM m.on_hand_delta), count(m.sku_id) "
            "FROM bench_expected e FULL JOIN (SELECT sku_id, location_id, on_hand_delta FROM movements "
            "WHERE source = %s) m USING (sku_id, location_id)",
            (source,),
        ).fetchone()
    wrong, written = (int(row[0]), int(row[1])) if row else (-1, -1)
    return {
        "written": written,
        "expected": expected,
        "wrong": wrong,
        "ok": wrong == 0 and written == expected,
    }


def reset(dsn: str) -> float:
    """Back to the seeded state: the rounds' movements removed and their stock moved back."""
    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(
                "WITH gone AS (DELETE FROM movements WHERE source IN (%s, %s) "
                "RETURNING sku_id, location_id, on_hand_delta), "
                "per_key AS (SELECT sku_id, location_id, sum(on_hand_delta) AS d FROM gone GROUP BY 1, 2) "
                "UPDATE stock_levels sl SET on_hand = sl.on_hand - k.d FROM per_key k "
                "WHERE sl.sku_id = k.sku_id AND sl.location_id = k.location_id",
                (FEED, BARE_SOURCE),
            )
            tables = [
                t for t in SYNC_TABLES if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() != (None,)
            ]
            for table in tables:
                conn.execute(f"DELETE FROM {table}")
        # The same pages and statistics before every round, whichever ran last.
        conn.execute(f"VACUUM ANALYZE {', '.join(['movements', 'stock_levels', *tables])}")
        off = conn.execute(
            "SELECT count(*) FROM stock_levels sl JOIN movements m ON m.source = %s "
            "AND m.sku_id = sl.sku_id AND m.location_id = sl.location_id WHERE sl.on_hand <> m.on_hand_delta",
            (SEED_SOURCE,),
        ).fetchone()
    if off is None or off[0] != 0:
        raise BenchError(f"reset left {off and off[0]} stock levels off their seed")
    return time.perf_counter() - began


# ----------------------------------------------------------------------------- bare round
BARE_SQL = """
WITH diff AS (
    SELECT sl.sku_id, sl.location_id, t.on_hand AS qty, t.on_hand - sl.on_hand AS delta
    FROM bare_snapshot t
    JOIN skus k ON k.code = t.sku
    JOIN locations l ON l.code = t.location
    JOIN stock_levels sl ON sl.sku_id = k.id AND sl.location_id = l.id
    WHERE t.on_hand <> sl.on_hand
), moved AS (
    INSERT INTO movements (kind, sku_id, location_id, qty, on_hand_delta, reserved_delta, incoming_delta,
                           reason, source, external_ref, leg, occurred_at, recorded_at, vendor_at, note)
    SELECT 'count_adjustment', sku_id, location_id, qty, delta, 0, 0, 'reconcile', %(source)s,
           'bare:' || sku_id || ':' || location_id, 0, %(t)s, now(), %(t)s, 'bare baseline'
    FROM diff
    RETURNING sku_id, location_id, on_hand_delta
)
UPDATE stock_levels sl SET on_hand = sl.on_hand + m.on_hand_delta, updated_at = now()
FROM moved m WHERE sl.sku_id = m.sku_id AND sl.location_id = m.location_id
"""


def bare_round(dsn: str, file_url: str) -> dict[str, Any]:
    """Download into COPY, then the differences as movements plus the level update: one transaction."""
    began = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bare_snapshot (sku text, location text, on_hand int) ON COMMIT DROP")
        with requests.get(file_url, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            with cur.copy("COPY bare_snapshot FROM STDIN (FORMAT csv, HEADER true)") as copy:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    copy.write(chunk)
        cur.execute("ANALYZE bare_snapshot")  # what anyone writing this by hand does before the join
        copied = time.perf_counter()
        cur.execute(BARE_SQL, {"source": BARE_SOURCE, "t": datetime.now(UTC)})
        adjusted = cur.rowcount
        conn.commit()
    done = time.perf_counter()
    return {"seconds": done - began, "download_copy_s": copied - began, "diff_sql_commit_s": done - copied,
            "adjusted": adjusted}  # fmt: skip


# ----------------------------------------------------------------------------- service round
def _vm(field: str) -> float:
    """A /proc/self/status memory figure in MB (VmRSS now, VmHWM the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# (module, attribute, phase): the run's steps as the code names them (staging.stage before the
# spool, staging.load after). A phase none of whose functions exist is reported missing, not an
# error: app/ may move under this benchmark.
PHASES = (
    ("app.sync.csvfeed", "CsvConnector._fetch", "download"),
    ("app.sync.csvfeed", "parse_stock_file", "parse"),
    ("app.sync.source_run", "_snapshot", "map"),
    ("app.services.sync.staging", "stage", "stage"),
    ("app.services.sync.staging", "load", "stage"),
    ("app.sync.source_run", "reconcile_staged", "reconcile"),
    ("app.services.sync.staging", "drop", "drop_staged"),
)
PHASE_NAMES = ("download", "parse", "map", "stage", "reconcile", "drop_staged")


def _phase_timers() -> dict[str, Any]:
    """Wrap the run's steps (a handful of calls per run: no measurable cost) for each one's own
    seconds, without the wrapped steps it calls (so `map` is the snapshot loop's own work), and
    the RSS as it ended. Diagnostics only: run_feed itself is called unchanged."""
    import importlib

    phases: dict[str, Any] = {"missing": []}
    nested: list[float] = []  # per active wrapper: seconds spent in wrapped steps it called

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            nested.append(0.0)
            began = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                phases[label + "_s"] = phases.get(label + "_s", 0.0) + spent - nested.pop()
                if nested:
                    nested[-1] += spent
                phases[label + "_rss_mb"] = round(_vm("VmRSS"), 1)

        setattr(owner, name, timed)

    found = set()
    for module, attr, label in PHASES:
        owner: Any = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is not None and hasattr(owner, name):
            wrap(owner, name, label)
            found.add(label)
    phases["missing"] = [label for label in PHASE_NAMES if label not in found]
    return phases


def _service_child(conn: Any, url: str, profile_path: str | None) -> None:
    """One service round in a fresh process, so its peak RSS is its own."""
    import resource

    try:
        from app import create_app
        from app.db import read_only
        from app.services import ledger
        from app.sync.runner import run_feed

        with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as instance:
            app = create_app(_overrides(url, instance))
            factory = app.extensions["session_factory"]
            phases = _phase_timers()
            idle = _vm("VmRSS")
            profiler = None
            if profile_path:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001)
                profiler.start()
            cpu0, began = time.process_time(), time.perf_counter()
            result = run_feed(factory, app.config, FEED)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
            ranked = None
            if profiler is not None and profile_path:
                ranked = _rank_profile(profiler.stop())
                Path(profile_path + ".txt").write_text(profiler.output_text(unicode=True, show_all=False))
                Path(profile_path + ".html").write_text(profiler.output_html())
            verify_began = time.perf_counter()
            with read_only(factory) as s:
                mismatches = ledger.verify(s)
            verify_s = time.perf_counter() - verify_began
            app.extensions["engine"].dispose()
        conn.send({"ok": True, "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak, "idle_rss_mb": idle,
                   "vmhwm_mb": _vm("VmHWM"), "status": result["status"], "counts": result["counts"],
                   "error": result.get("error"), "phases": phases, "verify_s": verify_s,
                   "ledger_mismatches": len(mismatches), "first_mismatches": [str(m) for m in mismatches[:3]],
                   "profile": ranked})  # fmt: skip
    except BaseException:
        conn.send({"ok": False, "error": traceback.format_exc()})
    finally:
        conn.close()


def service_round(url: str, profile_path: str | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a fresh interpreter: no memory inherited from this process
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_service_child, args=(child, url, profile_path))
    proc.start()
    child.close()
    try:
        out: dict[str, Any] = parent.recv()
    except EOFError:
        out = {"ok": False, "error": "the service child died without a word"}
    proc.join(timeout=60)
    if not out.get("ok"):
        raise BenchError(f"service round failed:\n{str(out.get('error'))[-3000:]}")
    return out


def _rank_profile(session: Any) -> dict[str, Any]:
    """Self and inclusive wall time per function (bench/lib/profile.py views) from a pyinstrument run."""
    from bench.lib.profile import profile_views

    root = session.root_frame()
    self_t: dict[tuple[str, str], float] = {}
    incl: dict[tuple[str, str], float] = {}
    stack: list[tuple[Any, tuple[tuple[str, str], ...]]] = [(root, ())]
    while stack:
        frame, path = stack.pop()
        synthetic = frame.is_synthetic and bool(path)  # "[self]" leaves: time of the parent itself
        if not synthetic:
            path = (*path, (frame.function or "?", frame.file_path_short or "?"))
        key = path[-1]
        self_t[key] = self_t.get(key, 0.0) + max(frame.time - sum(c.time for c in frame.children), 0.0)
        if not synthetic and key not in path[:-1]:
            incl[key] = incl.get(key, 0.0) + frame.time
        stack.extend((c, path) for c in frame.children)
    return {"total_s": root.time, **profile_views(self_t, incl, {}, root.time or 1.0, "seconds")}


# ----------------------------------------------------------------------------- one size
def service_problems(out: dict[str, Any], rows: int, expected: int, check: dict[str, Any]) -> list[str]:
    """What is wrong with a service round's result (nothing, for a good run)."""
    c = out["counts"]
    wrong = [] if out["status"] == "succeeded" else [f"status {out['status']}: {out.get('error')}"]
    for name, want in (("seen", rows), ("staged", rows), ("adjusted", expected), ("discrepancies", 0),
                       ("deferred", 0), ("quarantined", 0)):  # fmt: skip
        if c.get(name, 0) != want:
            wrong.append(f"{name} {c.get(name, 0)} != {want}")
    if out["ledger_mismatches"]:
        wrong.append(f"ledger verify: {out['ledger_mismatches']} levels differ {out['first_mismatches']}")
    if not check["ok"]:
        wrong.append(f"movements: {check['written']} written, {check['wrong']} keys differ from the file")
    return wrong


def run_size(
    args: argparse.Namespace, urls: dict[str, str], wanted: int, work: Path, stamp: str
) -> dict[str, Any]:
    locs = args.locations
    skus = -(-wanted // locs)
    rows = skus * locs
    log(f"{rows:,} rows ({skus:,} SKUs x {locs} locations): recreating, migrating and seeding {DB_NAME}")
    setup_s = recreate(urls["admin"], urls["dsn"], urls["app"], skus, locs)
    began = time.perf_counter()
    data, expected = stock_file(skus, locs, args.diff)
    file_s = time.perf_counter() - began
    path = work / f"reconcile-{stamp}-{rows}.csv"
    path.write_bytes(data)
    log(f"seeded in {setup_s:.1f} s; file {len(data) / 1e6:.1f} MB with {len(expected):,} differing rows")
    rounds: list[dict[str, Any]] = []
    failures: list[str] = []
    profile = None
    with FakeCsvServer(path) as host:
        configure(urls["dsn"], urls["app"], host.url, locs, expected)
        for r in range(args.repeat):
            for kind in ("bare", "service") if r % 2 == 0 else ("service", "bare"):
                reset_s = reset(urls["dsn"])
                if kind == "bare":
                    out = bare_round(urls["dsn"], host.url)
                    check = check_movements(urls["dsn"], BARE_SOURCE, len(expected))
                    wrong = [] if check["ok"] and out["adjusted"] == len(expected) else [f"bare: {check}"]
                else:
                    out = service_round(urls["app"])
                    check = check_movements(urls["dsn"], FEED, len(expected))
                    wrong = service_problems(out, rows, len(expected), check)
                for w in wrong:
                    log(f"CHECK FAILED ({rows:,} rows, {kind} round {r + 1}): {w.splitlines()[0][:300]}")
                failures += wrong
                rounds.append({"kind": kind, "round": r + 1, "reset_s": round(reset_s, 2), **out, "check": check,
                               "problems": wrong})  # fmt: skip
                extra = f", peak RSS {out['peak_rss_mb']:.0f} MB" if kind == "service" else ""
                log(f"{kind} round {r + 1}: {out['seconds']:.2f} s{extra}")
        if args.profile and wanted == max(args.sizes):
            reset(urls["dsn"])
            prefix = results_file("reconcile", stamp, f"-{rows}.profile")
            log(f"profiled service round (pyinstrument, 1 ms): {prefix}.txt")
            out = service_round(urls["app"], str(prefix))
            profile = {
                "seconds": out["seconds"],
                "files": [f"{prefix}.txt", f"{prefix}.html"],
                **out["profile"],
            }
        served = requests.get(host.base_url + "/__stats", timeout=10).json()
    return {"rows": rows, "skus": skus, "locations": locs, "differing": len(expected), "file_bytes": len(data),
            "setup_s": round(setup_s, 1), "file_s": round(file_s, 2), "served": served, "rounds": rounds,
            "failures": failures, "profile": profile}  # fmt: skip


def summarise(size: dict[str, Any]) -> dict[str, Any]:
    """Medians over the rounds (peak RSS: the highest); the ratio is of the medians."""
    bare = [r for r in size["rounds"] if r["kind"] == "bare"]
    svc = [r for r in size["rounds"] if r["kind"] == "service"]
    bare_s = statistics.median(r["seconds"] for r in bare)
    svc_s = statistics.median(r["seconds"] for r in svc)
    phases = {k: statistics.median(r["phases"].get(f"{k}_s", 0.0) for r in svc) for k in PHASE_NAMES}
    phases["rest"] = svc_s - sum(phases.values())
    return {
        "service_failed": any(r["status"] != "succeeded" for r in svc),
        "adjusted": min(r["counts"].get("adjusted", 0) for r in svc),
        "bare_s": bare_s, "service_s": svc_s, "ratio": svc_s / bare_s, "rows_per_s": size["rows"] / svc_s,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in svc), "idle_rss_mb": max(r["idle_rss_mb"] for r in svc),
        "cpu_s": statistics.median(r["cpu_s"] for r in svc), "verify_s": statistics.median(r["verify_s"] for r in svc),
        "bare_copy_s": statistics.median(r["download_copy_s"] for r in bare),
        "bare_sql_s": statistics.median(r["diff_sql_commit_s"] for r in bare),
        "phases": phases, "rss_after": {k: max(r["phases"].get(f"{k}_rss_mb", 0.0) for r in svc)
                                         for k in ("parse", "map", "reconcile")},
        "bare_rounds_s": [round(r["seconds"], 2) for r in bare], "service_rounds_s": [round(r["seconds"], 2) for r in svc],
    }  # fmt: skip


# ----------------------------------------------------------------------------- report
def render(report: dict[str, Any]) -> list[str]:
    sizes = report["sizes"]
    lines = [*busy_warning(report["machine"]), "Reconcile a CSV stock snapshot over HTTP: bare PostgreSQL vs the "
             f"service (median of {report['args']['repeat']} round(s) each; {report['args']['diff'] * 100:g}% of rows differ)"]  # fmt: skip
    rows = []
    for s in sizes:
        m = s["summary"]
        failed = m["service_failed"]  # its time is the time to the failure, not a result
        rows.append([f"{s['rows']:,}", f"{m['bare_s']:.2f}", f"{m['service_s']:.2f}" + (" (run failed)" if failed else ""),
                     "n/a" if failed else f"{m['ratio']:.1f}x", "n/a" if failed else f"{m['rows_per_s']:,.0f}",
                     f"{m['peak_rss_mb']:.0f}", f"{m['idle_rss_mb']:.0f}", f"{m['adjusted']:,} of {s['differing']:,}",
                     "ok" if not s["failures"] else f"FAIL ({len(s['failures'])})"])  # fmt: skip
    lines += fmt_table(["rows", "bare s", "service s", "svc/bare", "service rows/s", "peak RSS MB",
                        "idle RSS MB", "adjusted (fewest)", "checks"], rows)  # fmt: skip
    lines += ["", "service round by phase (seconds, median; RSS MB when the phase ended):"]
    rows = []
    for s in sizes:
        p, rss = s["summary"]["phases"], s["summary"]["rss_after"]
        rows.append([f"{s['rows']:,}", *(f"{p[k]:.2f}" for k in (*PHASE_NAMES, "rest")), f"{s['summary']['cpu_s']:.1f}",
                     f"{rss['parse']:.0f}", f"{rss['map']:.0f}", f"{s['summary']['verify_s']:.1f}"])  # fmt: skip
    lines += fmt_table(["rows", "download", "parse", "map", "stage", "reconcile", "drop staged", "rest",
                        "CPU s", "RSS parse", "RSS snapshot", "verify s"], rows)  # fmt: skip
    missing = sorted(
        {m for s in sizes for r in s["rounds"] if r["kind"] == "service" for m in r["phases"]["missing"]}
    )
    lines += ["  each step's own time: map = the snapshot loop (refs to ids, checks, batches, their commits); stage =",
              "  COPY of the mapped rows; rest = lease, run record, quarantine, the commit; CPU s = the service",
              "  process's CPU time; verify = ledger verify after the round, not in the service time.",
              *([f"  (not timed, the code has no such step now: {', '.join(missing)})"] if missing else []),
              "", "bare round (seconds, median):"]  # fmt: skip
    lines += fmt_table(["rows", "download + COPY + ANALYZE", "differences + levels + commit"],
                       [[f"{s['rows']:,}", f"{s['summary']['bare_copy_s']:.2f}", f"{s['summary']['bare_sql_s']:.2f}"]
                        for s in sizes])  # fmt: skip
    big = max(sizes, key=lambda s: s["rows"])["summary"]
    big_rows = max(s["rows"] for s in sizes)
    small = next((s["summary"] for s in sizes if s["rows"] == 100_000), None)

    def met(summary: dict[str, Any] | None, ok: bool) -> str:
        return (
            "-" if summary is None else "RUN FAILED" if summary["service_failed"] else "yes" if ok else "NO"
        )

    targets = [
        [f"service/bare at {big_rows:,} rows", "n/a" if big["service_failed"] else f"{big['ratio']:.1f}x", f"<= {TARGET_RATIO:g}x",
         met(big, big["ratio"] <= TARGET_RATIO)],
        [f"peak RSS at {big_rows:,} rows", f"{big['peak_rss_mb']:.0f} MB", f"< {TARGET_RSS_MB:g} MB",
         met(big, big["peak_rss_mb"] < TARGET_RSS_MB)],
        ["100,000 rows end to end", "-" if small is None else f"{small['service_s']:.2f} s", f"< {TARGET_100K_S:g} s",
         met(small, small is not None and small["service_s"] < TARGET_100K_S)],
    ]  # fmt: skip
    lines += ["", *fmt_table(["target", "figure", "target", "met"], targets)]
    mach = report["machine"]
    lines += ["", *fmt_table(["machine", ""], [*machine_rows(mach), ["pg settings", " ".join(
        f"{k}={v}" for k, v in mach["pg_settings"].items())], ["app/ uncommitted", dirty_summary(mach["dirty_app_files"])],
        ["load avg start/end", f"{mach['loadavg_start']} / {mach['loadavg_end']}"]], left=2)]  # fmt: skip
    for s in sizes:
        for f in dict.fromkeys(s["failures"]):  # each distinct failure once, its first line
            times = s["failures"].count(f)
            lines.append(f"CHECK FAILED ({s['rows']:,} rows, {times} round(s)): {f.splitlines()[0][:300]}")
        if s.get("profile"):
            lines += ["", *render_profile(s)]
    return lines


def render_profile(size: dict[str, Any], top: int = 15) -> list[str]:
    prof = size["profile"]
    lines = [f"profile of one service round at {size['rows']:,} rows (pyinstrument, wall clock, 1 ms; "
             f"{prof['seconds']:.2f} s with the profiler on):"]  # fmt: skip
    for view, title in (("by_self", "self"), ("app_by_inclusive", "inclusive, app/ only")):
        lines.append(f"top {top} by {title}:")
        lines += fmt_table(["s", "%", "function", "where"], [[f"{r['seconds']:.2f}", f"{r['pct']:.1f}", r["function"],
                           r["where"]] for r in prof[view][:top]], left=0)  # fmt: skip
    return [*lines, *(f"  written: {f}" for f in prof["files"])]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Reconcile benchmark: bare PostgreSQL vs the service, same run.")
    p.add_argument(
        "--sizes", default="100000,1000000", help="comma-separated row counts (default: %(default)s)"
    )
    p.add_argument("--rows", type=int, help="one size only (e.g. 20000 for a smoke run)")
    p.add_argument("--locations", type=int, default=20, help="locations; SKUs = rows / locations")
    p.add_argument("--diff", type=float, default=0.02, help="share of rows that differ (default 0.02)")
    p.add_argument("--repeat", type=int, default=2, help="bare + service round pairs per size, alternating")
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                   help="an existing database to connect to for CREATE/DROP DATABASE")  # fmt: skip
    p.add_argument("--keep", action="store_true", help=f"keep {DB_NAME} (the last size) and the CSV files")
    p.add_argument(
        "--profile", action="store_true", help="one more service round at the largest size, profiled"
    )
    args = p.parse_args(argv)
    args.sizes = [args.rows] if args.rows else [int(x) for x in args.sizes.split(",") if x.strip()]
    if args.repeat < 1 or not 0 < args.diff < 1 or min(args.sizes) < args.locations:
        p.error("need --repeat >= 1, 0 < --diff < 1 and every size >= --locations")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin = make_url(args.pg_url)
    urls = {
        "admin": admin.set(drivername="postgresql").render_as_string(hide_password=False),
        "dsn": admin.set(drivername="postgresql", database=DB_NAME).render_as_string(hide_password=False),
        "app": admin.set(database=DB_NAME).render_as_string(hide_password=False),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mach = machine()
    mach["loadavg_start"] = loadavg()
    mach["dirty_app_files"] = dirty_app_files()
    sizes = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
            work = results_file("reconcile", stamp, "").parent if args.keep else Path(tmp)
            for wanted in args.sizes:
                size = run_size(args, urls, wanted, work, stamp)
                size["summary"] = summarise(size)
                sizes.append(size)
        with psycopg.connect(urls["dsn"]) as conn:
            mach["postgresql"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        mach["pg_settings"] = pg_settings(urls["dsn"])
    except (BenchError, OSError, psycopg.Error, requests.RequestException) as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        if not args.keep:
            with psycopg.connect(urls["admin"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    if args.keep:
        log(f"kept database {DB_NAME} (the last size) and the stock files in bench/results/")
    mach["loadavg_end"] = loadavg()
    report = {"benchmark": "reconcile", "stamp": stamp, "args": {k: v for k, v in vars(args).items()},
              "machine": mach, "sizes": sizes}  # fmt: skip
    print("\n".join(render(report)))
    write_json(results_file("reconcile", stamp, ".json"), report)
    return 1 if any(s["failures"] for s in sizes) else 0


if __name__ == "__main__":
    sys.exit(main())
