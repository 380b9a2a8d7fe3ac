"""Foundation benchmark for omnistock: availability reads and movement-batch writes over HTTP.

Builds a scratch PostgreSQL database, migrates and seeds the demo retailer, starts gunicorn,
then measures:

* GET /api/v1/availability (20 random SKUs, all locations serving `web`, with lat/lon)
  at concurrency 1 and 8;
* POST /api/v1/stock/movements with batches of receipts, sequentially and from 4 clients,
  followed by a replay of one batch (which must apply nothing);
* `flask ledger verify` at the end.

It prints a fixed-width table and writes the same figures as JSON to
bench/results/foundation-<timestamp>.json. It is a measurement tool: nothing here asserts
timings. The exit status is non-zero if any request failed, the replay applied rows, or the
ledger does not verify.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_foundation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

try:
    from bench import _common
except ImportError:  # run as a script without the repository root on sys.path
    import _common  # type: ignore[no-redef,import-not-found]

# The generic helpers live in bench/_common.py; these names keep this module's interface.
ROOT = _common.ROOT
BENCH_DIR = _common.BENCH_DIR
RESULTS_DIR = _common.RESULTS_DIR
VENV_BIN = _common.VENV_BIN
ADMIN_DSN = _common.ADMIN_DSN
READY_TIMEOUT_S = _common.READY_TIMEOUT_S
REQUEST_TIMEOUT_S = _common.REQUEST_TIMEOUT_S
BenchError = _common.BenchError
log = _common.log
percentile = _common.percentile
free_port = _common.free_port
cpu_count = _common.cpu_count
cpu_model = _common.cpu_model
git_commit = _common.git_commit
read_keys = _common.read_keys
session_for = _common.session_for
fetch_catalog = _common.fetch_catalog
timed_request = _common.timed_request
describe_failure = _common.describe_failure
fmt_table = _common.fmt_table

DB_NAME = "omnistock_bench"
APP_DB_URL = _common.app_db_url(DB_NAME)

RNG_SEED = 20240601
SKUS_PER_REQUEST = 20
LAT, LON = 51.51, -0.12
WARMUP_REQUESTS = 50
AVAILABILITY_CONCURRENCY = (1, 8)
MOVEMENT_CLIENTS = 4
GUNICORN_THREADS = 4
MAX_ERROR_SAMPLES = 5


# ----------------------------------------------------------------------------- helpers
# The generic helpers live in bench/_common.py; these bind them to this benchmark's database.
def app_env() -> dict[str, str]:
    """The environment for flask/gunicorn: inherited, minus stray OMNISTOCK_* settings, plus ours."""
    return _common.app_env(APP_DB_URL)


def run_flask(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _common.run_flask(args, APP_DB_URL, check=check)


# ----------------------------------------------------------------------------- database + server
def recreate_database() -> str:
    """Drop and recreate the scratch database; return the PostgreSQL server version."""
    return _common.recreate_database(DB_NAME)


class Server(_common.Server):
    """gunicorn (gthread, GUNICORN_THREADS threads) serving app:create_app() on a free local port."""

    def __init__(self, workers: int, log_path: Path) -> None:
        super().__init__(workers, log_path, db_url=APP_DB_URL, threads=GUNICORN_THREADS)


# ----------------------------------------------------------------------------- load driver
@dataclass
class Outcome:
    latency_s: float
    ok: bool
    error: str | None = None
    detail: Any = None


@dataclass
class PhaseResult:
    name: str
    concurrency: int
    count: int
    errors: int
    wall_s: float
    per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    error_samples: list[str] = field(default_factory=list)
    rows: int = 0
    rows_per_s: float = 0.0
    locations_per_item: list[int] = field(default_factory=list)


def drive(
    jobs: Sequence[Any],
    concurrency: int,
    make_session: Callable[[], requests.Session],
    do: Callable[[requests.Session, Any], Outcome],
) -> tuple[list[Outcome], float]:
    """Run every job with `concurrency` threads (each its own Session); return outcomes and wall time."""
    work: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for job in jobs:
        work.put(job)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)

    def worker() -> None:
        with make_session() as http:
            start_gate.wait()
            mine: list[Outcome] = []
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    break
                began = time.perf_counter()
                try:
                    mine.append(do(http, job))
                except Exception as exc:  # a malformed response must not silently drop the job
                    mine.append(Outcome(time.perf_counter() - began, False, f"{type(exc).__name__}: {exc}"))
        with lock:
            outcomes.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return outcomes, time.perf_counter() - began


def summarise(name: str, concurrency: int, outcomes: list[Outcome], wall_s: float) -> PhaseResult:
    latencies = sorted(o.latency_s * 1000.0 for o in outcomes)
    errors = [o for o in outcomes if not o.ok]
    samples: list[str] = []
    for o in errors:
        if o.error and o.error not in samples:
            samples.append(o.error)
        if len(samples) >= MAX_ERROR_SAMPLES:
            break
    return PhaseResult(
        name=name,
        concurrency=concurrency,
        count=len(outcomes),
        errors=len(errors),
        wall_s=wall_s,
        per_s=len(outcomes) / wall_s if wall_s > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        error_samples=samples,
    )


# ----------------------------------------------------------------------------- availability
def availability_phase(
    base_url: str, key: str, sku_lists: Sequence[list[str]], concurrency: int, name: str
) -> PhaseResult:
    url = f"{base_url}/api/v1/availability"

    def do(http: requests.Session, skus: list[str]) -> Outcome:
        params = {"skus": ",".join(skus), "channel": "web", "lat": LAT, "lon": LON}
        latency, result = timed_request(http, "GET", url, params=params)
        if isinstance(result, Exception) or result.status_code != 200:
            return Outcome(latency, False, describe_failure("GET", "/api/v1/availability", result))
        try:
            items = result.json()["items"]
        except (ValueError, KeyError) as exc:
            return Outcome(latency, False, f"GET /api/v1/availability: bad body ({exc}): {result.text[:500]}")
        if len(items) != len(skus):
            return Outcome(
                latency, False, f"GET /api/v1/availability: {len(items)} items for {len(skus)} SKUs"
            )
        counts = [len(item.get("locations", [])) for item in items]
        return Outcome(latency, True, detail=(min(counts), max(counts)))

    outcomes, wall = drive(sku_lists, concurrency, lambda: session_for(key), do)
    phase = summarise(name, concurrency, outcomes, wall)
    spans = [o.detail for o in outcomes if o.ok]
    if spans:
        phase.locations_per_item = [min(a for a, _ in spans), max(b for _, b in spans)]
    return phase


# ----------------------------------------------------------------------------- movements
@dataclass
class Batch:
    body: bytes
    size: int


def make_batches(
    rng: random.Random, skus: Sequence[str], locations: Sequence[str], count: int, size: int, tag: str
) -> list[Batch]:
    batches: list[Batch] = []
    for b in range(count):
        movements = [
            {
                "kind": "receipt",
                "sku": rng.choice(skus),
                "location": rng.choice(locations),
                "qty": rng.randint(1, 10),
                "source": "bench",
                "external_ref": f"{tag}-b{b:05d}-m{i:06d}",
            }
            for i in range(size)
        ]
        batches.append(Batch(json.dumps({"movements": movements}).encode(), size))
    return batches


def post_batch(http: requests.Session, url: str, batch: Batch) -> tuple[float, Any]:
    return timed_request(http, "POST", url, data=batch.body, headers={"Content-Type": "application/json"})


def movement_phase(
    base_url: str, key: str, batches: Sequence[Batch], concurrency: int, name: str
) -> PhaseResult:
    url = f"{base_url}/api/v1/stock/movements"

    def do(http: requests.Session, batch: Batch) -> Outcome:
        latency, result = post_batch(http, url, batch)
        if isinstance(result, Exception) or result.status_code != 201:
            return Outcome(latency, False, describe_failure("POST", "/api/v1/stock/movements", result))
        applied = result.json().get("applied")
        if applied != batch.size:
            return Outcome(
                latency, False, f"POST /api/v1/stock/movements: applied={applied}, expected {batch.size}"
            )
        return Outcome(latency, True, detail=applied)

    outcomes, wall = drive(batches, concurrency, lambda: session_for(key), do)
    phase = summarise(name, concurrency, outcomes, wall)
    phase.rows = sum(int(o.detail) for o in outcomes if o.ok)
    phase.rows_per_s = phase.rows / wall if wall > 0 else 0.0
    return phase


def replay_batch(base_url: str, key: str, batch: Batch) -> dict[str, Any]:
    with session_for(key) as http:
        latency, result = post_batch(http, f"{base_url}/api/v1/stock/movements", batch)
    if isinstance(result, Exception) or result.status_code not in (200, 201):
        return {
            "ok": False,
            "status": None if isinstance(result, Exception) else result.status_code,
            "applied": None,
            "duplicates": None,
            "latency_ms": latency * 1000.0,
            "error": describe_failure("POST", "/api/v1/stock/movements (replay)", result),
        }
    body = result.json()
    applied, duplicates = body.get("applied"), body.get("duplicates")
    return {
        "ok": applied == 0,
        "status": result.status_code,
        "applied": applied,
        "duplicates": duplicates,
        "latency_ms": latency * 1000.0,
        "error": None if applied == 0 else f"replay applied {applied} movement(s)",
    }


# ----------------------------------------------------------------------------- report
def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    p = report["parameters"]
    out = [
        f"omnistock foundation benchmark  {report['timestamp']}  (commit {m['git_commit']})",
        "",
        *fmt_table(
            ["machine", "value"],
            [
                ["nproc", str(m["nproc"])],
                ["cpu", m["cpu_model"]],
                ["platform", m["platform"]],
                ["python", m["python"]],
                ["postgresql", m["postgresql"]],
                ["gunicorn", f"{p['workers']} workers x {p['threads']} threads (gthread)"],
            ],
            left=2,
        ),
        "",
        f"availability: {p['skus_per_request']} random SKUs/request, channel web, lat/lon set, "
        f"{p['warmup_requests']} warm-up requests",
        *fmt_table(
            [
                "phase",
                "conc",
                "requests",
                "errors",
                "locs/item",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
            ],
            [
                [
                    r["name"],
                    str(r["concurrency"]),
                    str(r["count"]),
                    str(r["errors"]),
                    "-".join(str(n) for n in dict.fromkeys(r["locations_per_item"])) or "-",
                    f"{r['per_s']:.1f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p90_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['max_ms']:.1f}",
                ]
                for r in report["availability"]
            ],
        ),
        "",
        f"movement batches: {p['batch_size']} receipts/batch, random SKU x location, unique external_refs",
        *fmt_table(
            [
                "phase",
                "clients",
                "batches",
                "errors",
                "rows",
                "batches/s",
                "rows/s",
                "p50 ms",
                "p99 ms",
                "max ms",
            ],
            [
                [
                    r["name"],
                    str(r["concurrency"]),
                    str(r["count"]),
                    str(r["errors"]),
                    str(r["rows"]),
                    f"{r['per_s']:.2f}",
                    f"{r['rows_per_s']:.0f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['max_ms']:.1f}",
                ]
                for r in report["movements"]
            ],
        ),
        "",
    ]
    replay = report.get("replay")
    if replay is not None:
        out.append(
            f"replay of one batch: status {replay['status']}, applied={replay['applied']}, "
            f"duplicates={replay['duplicates']}, {replay['latency_ms']:.1f} ms -> "
            f"{'ok' if replay['ok'] else 'FAILED'}"
        )
    verify = report.get("ledger_verify")
    if verify is not None:
        out.append(f"ledger verify: {'ok' if verify['ok'] else 'MISMATCH'} (exit {verify['exit_code']})")
    errors = report["error_samples"]
    if errors:
        out += ["", "errors (first occurrences, verbatim):"]
        out += [f"  - {e}" for e in errors]
    out += ["", f"result: {'OK' if report['ok'] else 'FAILED'}"]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=None,
                        help="availability requests measured per concurrency level (default 2000; quick 200)")  # fmt: skip
    parser.add_argument("--batches", type=int, default=None,
                        help="movement batches per phase, sequential and concurrent (default 20; quick 4)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=1000, help="movements per batch (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in under a minute")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 200 if args.quick else 2000
    if args.batches is None:
        args.batches = 4 if args.quick else 20
    for name in ("requests", "batches", "batch_size", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "foundation",
        "timestamp": stamp,
        "parameters": {
            "quick": args.quick,
            "requests": args.requests,
            "warmup_requests": WARMUP_REQUESTS,
            "skus_per_request": SKUS_PER_REQUEST,
            "availability_concurrency": list(AVAILABILITY_CONCURRENCY),
            "batches": args.batches,
            "batch_size": args.batch_size,
            "movement_clients": MOVEMENT_CLIENTS,
            "workers": args.workers,
            "threads": GUNICORN_THREADS,
            "rng_seed": RNG_SEED,
        },
        "machine": {
            "nproc": cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgresql": "unknown",
            "git_commit": git_commit(),
        },
        "availability": [],
        "movements": [],
        "replay": None,
        "ledger_verify": None,
        "error_samples": [],
        "server_log": str((RESULTS_DIR / f"foundation-{stamp}.server.log").relative_to(ROOT)),
        "ok": False,
    }
    rng = random.Random(RNG_SEED)

    log(f"recreating database {DB_NAME}")
    report["machine"]["postgresql"] = recreate_database()
    log("migrating")
    run_flask(["db", "upgrade"])
    with tempfile.TemporaryDirectory(prefix="omnistock-bench-") as tmp:
        keys_file = Path(tmp) / "keys.tsv"
        log("seeding demo data")
        run_flask(["demo", "seed", "--keys-file", str(keys_file)])
        keys = read_keys(keys_file)

    server = Server(args.workers, ROOT / report["server_log"])
    try:
        log(f"starting gunicorn on {server.base_url} ({args.workers} workers x {GUNICORN_THREADS} threads)")
        server.start()
        skus, locations = fetch_catalog(server.base_url, keys["ops"])
        log(f"catalog: {len(skus)} SKUs, {len(locations)} locations")

        def sku_lists(n: int) -> list[list[str]]:
            k = min(SKUS_PER_REQUEST, len(skus))
            return [rng.sample(skus, k) for _ in range(n)]

        log(f"availability warm-up: {WARMUP_REQUESTS} requests")
        warm = availability_phase(
            server.base_url, keys["storefront"], sku_lists(WARMUP_REQUESTS), 1, "warmup"
        )
        report["error_samples"].extend(warm.error_samples)
        if warm.errors:
            report["availability_warmup_errors"] = warm.errors
        for conc in AVAILABILITY_CONCURRENCY:
            log(f"availability: {args.requests} requests at concurrency {conc}")
            phase = availability_phase(
                server.base_url, keys["storefront"], sku_lists(args.requests), conc, f"availability c={conc}"
            )
            report["availability"].append(asdict(phase))
            report["error_samples"].extend(phase.error_samples)

        seq_batches = make_batches(rng, skus, locations, args.batches, args.batch_size, f"{stamp}-seq")
        con_batches = make_batches(rng, skus, locations, args.batches, args.batch_size, f"{stamp}-con")
        log(f"movements: {args.batches} batches of {args.batch_size}, sequential")
        seq = movement_phase(server.base_url, keys["ops"], seq_batches, 1, "sequential")
        report["movements"].append(asdict(seq))
        report["error_samples"].extend(seq.error_samples)
        log(f"movements: {args.batches} batches of {args.batch_size}, {MOVEMENT_CLIENTS} clients")
        con = movement_phase(
            server.base_url, keys["ops"], con_batches, MOVEMENT_CLIENTS, f"concurrent x{MOVEMENT_CLIENTS}"
        )
        report["movements"].append(asdict(con))
        report["error_samples"].extend(con.error_samples)

        log("replaying the first sequential batch")
        replay = replay_batch(server.base_url, keys["ops"], seq_batches[0])
        report["replay"] = replay
        if replay["error"]:
            report["error_samples"].append(replay["error"])
        if not server.alive():
            report["error_samples"].append(f"gunicorn exited during the run:\n{server.log_tail()}")
    finally:
        log("stopping gunicorn")
        server.stop()

    log("flask ledger verify")
    verify = run_flask(["ledger", "verify"], check=False)
    report["ledger_verify"] = {
        "ok": verify.returncode == 0,
        "exit_code": verify.returncode,
        "output": (verify.stdout + verify.stderr).strip()[-4000:],
    }
    if verify.returncode != 0:
        report["error_samples"].append(
            f"flask ledger verify exited {verify.returncode}:\n{verify.stdout}{verify.stderr}"
        )

    request_errors = sum(r["errors"] for r in report["availability"] + report["movements"])
    report["ok"] = (
        request_errors == 0
        and not report.get("availability_warmup_errors")
        and bool(report["replay"] and report["replay"]["ok"])
        and report["ledger_verify"]["ok"]
        and not report["error_samples"]
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except BenchError as exc:
        log(f"benchmark aborted: {exc}")
        return 2
    text = render(report)
    print(text)
    out_path = RESULTS_DIR / f"foundation-{report['timestamp']}.json"
    out_path.write_text(json.dumps({**report, "table": text}, indent=2) + "\n")
    log(f"wrote {out_path.relative_to(ROOT)}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
