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
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

try:
    from bench.lib import client, load
except ImportError:  # run as a script without the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.lib import client, load
from bench.lib.load import Sample
from bench.lib.report import fmt_table, machine, machine_rows, rel, results_file, write_json
from bench.lib.server import BenchError, Server, ledger_verify, log, scratch_database

DB_NAME = "omnistock_bench"

RNG_SEED = 20240601
SKUS_PER_REQUEST = 20
LAT, LON = 51.51, -0.12
WARMUP_REQUESTS = 50
AVAILABILITY_CONCURRENCY = (1, 8)
MOVEMENT_CLIENTS = 4
GUNICORN_THREADS = 4


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


def summarise(name: str, concurrency: int, samples: list[Sample], wall_s: float) -> PhaseResult:
    latencies = sorted(s.latency_s * 1000.0 for s in samples)
    return PhaseResult(
        name=name,
        concurrency=concurrency,
        count=len(samples),
        errors=sum(1 for s in samples if s.error is not None),
        wall_s=wall_s,
        per_s=len(samples) / wall_s if wall_s > 0 else 0.0,
        p50_ms=load.percentile(latencies, 50),
        p90_ms=load.percentile(latencies, 90),
        p99_ms=load.percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        error_samples=load.first_errors(s.error for s in samples),
    )


def drive(
    key: str, jobs: Sequence[Any], concurrency: int, step: Callable[[requests.Session, int, Any], Sample]
) -> tuple[list[Sample], float]:
    """Every job once, shared out over `concurrency` threads, each with its own keep-alive Session."""
    sessions = [client.session_for(key) for _ in range(concurrency)]
    try:
        samples, wall, _cpu = load.Clients(sessions).run_jobs(jobs, step)
    finally:
        for http in sessions:
            http.close()
    return samples, wall


def failed(latency: float, message: str) -> Sample:
    return Sample(latency, 0, error=message)


# ----------------------------------------------------------------------------- availability
def availability_phase(
    base_url: str, key: str, sku_lists: Sequence[list[str]], concurrency: int, name: str
) -> PhaseResult:
    url = f"{base_url}/api/v1/availability"

    def step(http: requests.Session, _tid: int, skus: list[str]) -> Sample:
        params = {"skus": ",".join(skus), "channel": "web", "lat": LAT, "lon": LON}
        latency, result = client.timed_request(http, "GET", url, params=params)
        if isinstance(result, Exception) or result.status_code != 200:
            return failed(latency, client.describe_failure("GET", "/api/v1/availability", result))
        try:
            items = result.json()["items"]
        except (ValueError, KeyError) as exc:
            return failed(latency, f"GET /api/v1/availability: bad body ({exc}): {result.text[:500]}")
        if len(items) != len(skus):
            return failed(latency, f"GET /api/v1/availability: {len(items)} items for {len(skus)} SKUs")
        counts = [len(item.get("locations", [])) for item in items]
        return Sample(latency, 200, detail=(min(counts), max(counts)))

    samples, wall = drive(key, sku_lists, concurrency, step)
    phase = summarise(name, concurrency, samples, wall)
    spans = [s.detail for s in samples if s.error is None]
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
    return client.timed_request(
        http, "POST", url, data=batch.body, headers={"Content-Type": "application/json"}
    )


def movement_phase(
    base_url: str, key: str, batches: Sequence[Batch], concurrency: int, name: str
) -> PhaseResult:
    url = f"{base_url}/api/v1/stock/movements"

    def step(http: requests.Session, _tid: int, batch: Batch) -> Sample:
        latency, result = post_batch(http, url, batch)
        if isinstance(result, Exception) or result.status_code != 201:
            return failed(latency, client.describe_failure("POST", "/api/v1/stock/movements", result))
        applied = result.json().get("applied")
        if applied != batch.size:
            return failed(latency, f"POST /api/v1/stock/movements: applied={applied}, expected {batch.size}")
        return Sample(latency, 201, detail=applied)

    samples, wall = drive(key, batches, concurrency, step)
    phase = summarise(name, concurrency, samples, wall)
    phase.rows = sum(int(s.detail) for s in samples if s.error is None)
    phase.rows_per_s = phase.rows / wall if wall > 0 else 0.0
    return phase


def replay_batch(base_url: str, key: str, batch: Batch) -> dict[str, Any]:
    with client.session_for(key) as http:
        latency, result = post_batch(http, f"{base_url}/api/v1/stock/movements", batch)
    if isinstance(result, Exception) or result.status_code not in (200, 201):
        return {
            "ok": False,
            "status": None if isinstance(result, Exception) else result.status_code,
            "applied": None,
            "duplicates": None,
            "latency_ms": latency * 1000.0,
            "error": client.describe_failure("POST", "/api/v1/stock/movements (replay)", result),
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
            [*machine_rows(m), ["gunicorn", f"{p['workers']} workers x {p['threads']} threads (gthread)"]],
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
    server_log = results_file("foundation", stamp, ".server.log")
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
        "machine": machine(),
        "availability": [],
        "movements": [],
        "replay": None,
        "ledger_verify": None,
        "error_samples": [],
        "server_log": rel(server_log),
        "ok": False,
    }
    rng = random.Random(RNG_SEED)

    db = scratch_database(DB_NAME)
    report["machine"]["postgresql"] = db.pg_version
    keys = db.keys
    server = Server(args.workers, server_log, db_url=db.url, threads=GUNICORN_THREADS)
    try:
        log(f"starting gunicorn on {server.base_url} ({args.workers} workers x {GUNICORN_THREADS} threads)")
        server.start()
        skus, locations = client.fetch_catalog(server.base_url, keys["ops"])
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

    report["ledger_verify"] = verify = ledger_verify(db.url)
    if not verify["ok"]:
        report["error_samples"].append(
            f"flask ledger verify exited {verify['exit_code']}:\n{verify['output']}"
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
    write_json(results_file("foundation", report["timestamp"], ".json"), {**report, "table": text})
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
