"""Availability benchmark for omnistock: the service's GET /api/v1/availability beside a thin baseline.

The storefront asks for availability on every product and cart page. This script builds a
scratch PostgreSQL database (omnistock_bench_availability) with the demo retailer (240 SKUs,
9 locations serving `web`), then starts two gunicorn servers with the same worker settings:

* the service, `app:create_app()`, asked with the storefront key;
* the baseline, `bench/thin_availability.py`: Flask + psycopg running the service's own statement,
  with no key, no validation, no metrics and no ORM.

It first checks that both answer the same JSON for the same requests. Then, at 1 and at 8
clients, it measures thin, service, thin, service (`--rounds` pairs), so that drift on the
machine hits both alike, and reports req/s, p50 and p99 per cell, pooled per server, and the
ratio service/thin (the issue's target: at least 50%). Every request is
GET /api/v1/availability?skus=<20 random SKUs>&channel=web&lat=51.51&lon=-0.12, sent by
bench/lib/client.KeepAlive, the same random sequence to both servers. Optionally (on by default)
it then profiles the service's availability requests with pyinstrument, as diagnostics.

It prints a fixed-width table and writes the same figures as JSON to
bench/results/availability-<timestamp>.json. It only measures: the target is shown, not asserted.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_availability.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

try:
    from bench.lib import client, profile
except ImportError:  # run as a script without the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.lib import client, profile
from bench.lib.client import KeepAlive
from bench.lib.load import Clients, CpuMeter, Sample, percentile, summarise
from bench.lib.report import (
    busy_warning,
    dirty_app_files,
    dirty_summary,
    fmt_cpu,
    fmt_ms,
    fmt_table,
    loadavg,
    machine,
    machine_rows,
    pg_settings,
    rel,
    results_file,
    write_json,
)
from bench.lib.server import BenchError, Server, log, scratch_database

DB_NAME = "omnistock_bench_availability"
RNG_SEED = 20240611
SKUS_PER_REQUEST = 20
CHANNEL = "web"
LAT, LON = 51.51, -0.12
REQUEST_LISTS = 2000  # distinct SKU lists the clients cycle through
CHECK_REQUESTS = 25  # requests both servers must answer alike
TARGET_RATIO_PCT = 50.0
TARGETS = ("thin", "service")
THIN_SPEC = "bench.thin_availability:app"
PATH = "/api/v1/availability"


def request_paths(skus: Sequence[str], n: int) -> list[str]:
    """n request paths, each for SKUS_PER_REQUEST random SKUs (fixed seed)."""
    rng = random.Random(RNG_SEED)
    k = min(SKUS_PER_REQUEST, len(skus))
    paths = []
    for _ in range(n):
        query = {"skus": ",".join(rng.sample(list(skus), k)), "channel": CHANNEL, "lat": LAT, "lon": LON}
        paths.append(f"{PATH}?{urllib.parse.urlencode(query)}")
    return paths


# ----------------------------------------------------------------------------- same answer
def check_same_json(servers: dict[str, Server], key: str, paths: Sequence[str]) -> dict[str, Any]:
    """Both servers answer each path (and the first without lat/lon) 200 with equal JSON."""
    probe = [*paths[:CHECK_REQUESTS], paths[0].split("&lat=", 1)[0]]
    differ: list[str] = []
    with client.session_for(key) as http:
        for path in probe:
            answers = {}
            for name, server in servers.items():
                resp = http.get(server.base_url + path, timeout=client.REQUEST_TIMEOUT_S)
                answers[name] = (resp.status_code, resp.json() if resp.status_code == 200 else resp.text)
            if answers["thin"] != answers["service"] or answers["service"][0] != 200:
                differ.append(f"{path[:120]}...: thin {str(answers['thin'])[:300]} / "
                              f"service {str(answers['service'])[:300]}")  # fmt: skip
    return {"requests": len(probe), "differ": len(differ), "ok": not differ, "first_differences": differ[:3]}


# ----------------------------------------------------------------------------- cells
def get_step(paths: Sequence[str], tag: str) -> Callable[[KeepAlive, int, int], Sample]:
    """A step sending the next GET of the client's own random sequence (the same for both servers)."""
    rngs: dict[int, random.Random] = {}

    def step(http: KeepAlive, tid: int, _seq: int) -> Sample:
        rng = rngs.get(tid)
        if rng is None:
            rng = rngs[tid] = random.Random(f"{RNG_SEED}-{tag}-{tid}")
        latency, result = client.timed_call(http, "GET", paths[rng.randrange(len(paths))])
        if isinstance(result, Exception):
            return Sample(latency, 0, error=client.describe_failure("GET", PATH, result))
        if result.status_code != 200 or not result.content.startswith(b"{"):
            return Sample(latency, result.status_code, error=client.describe_failure("GET", PATH, result))
        return Sample(latency, 200, units=len(result.content))

    return step


def measure(
    server: Server, key: str, paths: Sequence[str], clients: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """One cell: a warm-up, then `--seconds` of `clients` closed-loop clients against one server."""
    conns = [client.keepalive_for(server.base_url, key) for _ in range(clients)]
    try:
        driver = Clients(conns)
        if args.warmup > 0:
            driver.run(args.warmup, get_step(paths, f"w{clients}"))
        samples, wall, cpu = driver.run(args.seconds, get_step(paths, f"m{clients}"), CpuMeter(server.pid))
    finally:
        for c in conns:
            c.close()
    cell = asdict(summarise(label, clients, args.seconds, samples, wall, cpu, 200))
    cell["bytes_per_response"] = cell.pop("units") / cell["ok"] if cell["ok"] else 0.0
    cell["latencies_ms"] = sorted(s.latency_s * 1000.0 for s in samples if s.status == 200)
    return cell


def pooled(cells: Sequence[dict[str, Any]]) -> dict[str, float]:
    """One server's cells at one concurrency taken together: req/s over their wall time, latencies pooled."""
    ok = sum(c["ok"] for c in cells)
    wall = sum(c["wall_s"] for c in cells)
    lat = sorted(v for c in cells for v in c["latencies_ms"])
    return {"ok": ok, "per_s": ok / wall if wall else 0.0, "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99)}  # fmt: skip


def compare(cells: Sequence[dict[str, Any]], clients_levels: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for n in clients_levels:
        thin = pooled([c for c in cells if c["target"] == "thin" and c["clients"] == n])
        svc = pooled([c for c in cells if c["target"] == "service" and c["clients"] == n])
        pct = 100.0 * svc["per_s"] / thin["per_s"] if thin["per_s"] else 0.0
        rounds = []
        for r in sorted({c["round"] for c in cells}):
            t = next(
                (c for c in cells if c["target"] == "thin" and c["clients"] == n and c["round"] == r), None
            )
            s = next(
                (c for c in cells if c["target"] == "service" and c["clients"] == n and c["round"] == r), None
            )
            if t and s and t["ok_per_s"]:
                rounds.append(round(100.0 * s["ok_per_s"] / t["ok_per_s"], 1))
        rows.append({"clients": n, "thin": thin, "service": svc, "ratio_pct": pct, "ratio_by_round_pct": rounds,
                     "target_pct": TARGET_RATIO_PCT, "met": pct >= TARGET_RATIO_PCT})  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- profile
def profile_service(args: argparse.Namespace, db_url: str, key: str, paths: Sequence[str]) -> dict[str, Any]:
    """pyinstrument on one single-threaded worker while one client asks for availability."""
    prefix = results_file("availability", args.stamp, ".profile")
    server = profile.pyinstrument_server(db_url, prefix, "GET", PATH)
    out: dict[str, Any] = {
        "tool": "pyinstrument",
        "what": "GET /api/v1/availability (20 SKUs x 9 locations)",
        "unit": "req/s",
        "server": server.describe(),
        "clients": 1,
        "seconds": args.profile_seconds,
        "measure": "share of the profiled requests' wall time (one handler thread: Python work + DB waits)",
    }
    try:
        log("profile: starting gunicorn (1 worker x 1 thread, pyinstrument)")
        server.start()
        conns = [client.keepalive_for(server.base_url, key)]
        try:
            driver = Clients(conns)
            driver.run(args.warmup, get_step(paths, "pw"))
            with requests.Session() as http:
                profile.profile_start(http, server)
                log(f"profile: 1 client for {args.profile_seconds:g}s")
                samples, wall, cpu = driver.run(
                    args.profile_seconds, get_step(paths, "pm"), CpuMeter(server.pid)
                )
                log("profile: merging")
                stats = profile.profile_stop(http, server)
        finally:
            conns[0].close()
        out["load"] = asdict(summarise("profiled", 1, args.profile_seconds, samples, wall, cpu, 200))
        out.update(stats)
    finally:
        server.stop()
    return out


# ----------------------------------------------------------------------------- report
CELL_HEADS = ["server", "clients", "round", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "200", "other",
              "KiB/resp", "cpu% cli/app/pg"]  # fmt: skip
COMPARE_HEADS = ["clients", "thin req/s", "service req/s", "service/thin", "by round", "target", "met",
                 "thin p50", "service p50", "thin p99", "service p99"]  # fmt: skip


def cell_row(c: dict[str, Any]) -> list[str]:
    return [
        c["target"], str(c["clients"]), str(c["round"]), f"{c['ok_per_s']:.1f}", fmt_ms(c["p50_ms"]),
        fmt_ms(c["p90_ms"]), fmt_ms(c["p99_ms"]), fmt_ms(c["max_ms"]), str(c["ok"]), str(c["other"]),
        f"{c['bytes_per_response'] / 1024:.1f}", fmt_cpu(c["cpu_pct"]),
    ]  # fmt: skip


def compare_row(r: dict[str, Any]) -> list[str]:
    return [
        str(r["clients"]), f"{r['thin']['per_s']:.1f}", f"{r['service']['per_s']:.1f}",
        f"{r['ratio_pct']:.1f}%", " ".join(f"{v:.0f}%" for v in r["ratio_by_round_pct"]),
        f">= {r['target_pct']:.0f}%", "yes" if r["met"] else "NO",
        fmt_ms(r["thin"]["p50_ms"]), fmt_ms(r["service"]["p50_ms"]),
        fmt_ms(r["thin"]["p99_ms"]), fmt_ms(r["service"]["p99_ms"]),
    ]  # fmt: skip


def render(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["parameters"]
    check = report["check"] or {}
    out = [
        f"omnistock availability benchmark  {report['timestamp']}  (commit {m['git_commit']})",
        "",
        *fmt_table(
            ["machine", "value"],
            [
                *machine_rows(m),
                ["gunicorn (both servers)", p["gunicorn"]],
                ["postgresql settings", " ".join(f"{k}={v}" for k, v in m.get("pg_settings", {}).items())],
                ["ANALYZE after seeding", "yes" if p["analyze"] else "no (--no-analyze)"],
                ["app/ uncommitted changes", dirty_summary(m["dirty_app_files"])],
                ["load average at start / end", f"{m['loadavg_start']} / {m.get('loadavg_end', '?')}"],
            ],
            left=2,
        ),
        "",
        *busy_warning(m),
        f"GET {PATH}?skus=<{p['skus_per_request']} random SKUs of {p['skus']}>&channel={CHANNEL}&lat={LAT}&lon={LON}"
        f" ({p['locations']} locations serve {CHANNEL}); service: storefront key; thin: {THIN_SPEC}",
        f"cells: {p['seconds']:g} s measured after a {p['warmup']:g} s warm-up, closed-loop clients (threads, one "
        "KeepAlive connection each), the same request sequence for both servers",
        f"same JSON from both: {check.get('requests', 0) - check.get('differ', 0)}/{check.get('requests', 0)} "
        f"requests -> {'ok' if check.get('ok') else 'DIFFERENT'}",
        "   cpu% = CPU used during the cell, % of one core: this load generator / the measured gunicorn / postgres",
        *fmt_table(CELL_HEADS, [cell_row(c) for c in report["cells"]]),
        "",
        "service beside thin (rounds pooled; the target is shown, not asserted)",
        *fmt_table(COMPARE_HEADS, [compare_row(r) for r in report["comparison"]]),
    ]
    if check.get("first_differences"):
        out += ["", "first differences:"] + [f"  - {d}" for d in check["first_differences"]]
    if report["error_samples"]:
        out += ["", "errors (first occurrences, verbatim):"]
        out += [f"  - {e}" for e in dict.fromkeys(report["error_samples"])]
    out += ["", f"result: {'OK' if report['ok'] else 'FAILED'}"]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-ups, 3 s profile")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per cell (10; quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per cell (2; quick 1)")
    parser.add_argument("--rounds", type=int, default=2, help="thin+service pairs per concurrency (2)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrency levels (1 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes, each server (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (4)")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"],
                        help="gunicorn worker class (gthread)")  # fmt: skip
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="do not ANALYZE the database after seeding")  # fmt: skip
    parser.add_argument("--skip-profile", action="store_true", help="skip the profile (diagnostics)")
    parser.add_argument("--profile-seconds", type=float, default=None, help="profiled seconds (10; quick 3)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.profile_seconds is None:
        args.profile_seconds = 3.0 if args.quick else 10.0
    for name in ("seconds", "profile_seconds", "workers", "threads", "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0 or min(args.clients) < 1:
        parser.error("--warmup must not be negative and --clients at least 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "benchmark": "availability",
        "timestamp": stamp,
        "parameters": {
            **{k: getattr(args, k) for k in ("quick", "seconds", "warmup", "rounds", "clients", "workers")},
            **{k: getattr(args, k) for k in ("threads", "worker_class", "analyze", "skip_profile")},
            "profile_seconds": args.profile_seconds,
            "skus_per_request": SKUS_PER_REQUEST,
            "request_lists": REQUEST_LISTS,
            "rng_seed": RNG_SEED,
            "thin": THIN_SPEC,
        },
        "machine": {**machine(), "loadavg_start": loadavg(), "dirty_app_files": dirty_app_files()},
        "check": None,
        "cells": [],
        "comparison": [],
        "profile": None,
        "error_samples": [],
        "ok": False,
    }
    db = scratch_database(DB_NAME)
    report["machine"]["postgresql"] = db.pg_version
    if args.analyze:  # stands in for autovacuum (off on this machine): production plans with statistics
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
    report["machine"]["pg_settings"] = pg_settings(db.dsn)
    key = db.keys["storefront"]
    servers = {
        name: Server(args.workers, results_file("availability", stamp, f".{name}.server.log"), db_url=db.url,
                     threads=args.threads, worker_class=args.worker_class,
                     app_spec=THIN_SPEC if name == "thin" else "app:create_app()")
        for name in TARGETS
    }  # fmt: skip
    report["parameters"]["gunicorn"] = servers["service"].describe()
    try:
        for name, server in servers.items():
            log(f"starting gunicorn ({name}) on {server.base_url} ({server.describe()})")
            server.start()
        skus, locations = client.fetch_catalog(servers["service"].base_url, db.keys["ops"])
        report["parameters"].update(skus=len(skus), locations=len(locations))
        paths = request_paths(skus, REQUEST_LISTS)
        report["check"] = check = check_same_json(servers, key, paths)
        log(f"same JSON: {check['requests'] - check['differ']}/{check['requests']}")
        for clients in args.clients:
            for r in range(1, args.rounds + 1):
                for name in TARGETS:
                    log(f"{name} x{clients} round {r}: {args.warmup:g}s warm-up, {args.seconds:g}s measured")
                    cell = measure(servers[name], key, paths, clients, args, f"{name} x{clients}")
                    cell.update(target=name, round=r)
                    report["cells"].append(cell)
                    report["error_samples"].extend(cell["error_samples"])
                    log(
                        f"  {cell['ok_per_s']:.1f} req/s, p50 {cell['p50_ms']:.2f} ms, p99 {cell['p99_ms']:.2f} ms"
                    )
        for name, server in servers.items():
            if not server.alive():
                report["error_samples"].append(
                    f"gunicorn ({name}) exited during the run:\n{server.log_tail()}"
                )
    finally:
        log("stopping gunicorn")
        for server in servers.values():
            server.stop()
    report["comparison"] = compare(report["cells"], args.clients)
    if not args.skip_profile:
        try:
            report["profile"] = profile_service(args, db.url, key, paths)
        except profile.PROFILE_ERRORS as exc:  # diagnostics only: report it, keep the measurements
            report["profile"] = {"tool": "pyinstrument", "error": str(exc)}
            log(f"profile failed: {exc}")
    report["machine"]["loadavg_end"] = loadavg()
    report["ok"] = (
        bool(report["check"]["ok"])
        and not report["error_samples"]
        and all(c["other"] == 0 for c in report["cells"])
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    try:
        report = run(args)
    except BenchError as exc:
        log(f"benchmark aborted: {exc}")
        return 2
    report["elapsed_s"] = round(time.perf_counter() - began, 1)
    text = render(report)
    print(text)
    prof = report.get("profile")
    profile_text = ""
    if prof and "error" not in prof:
        profile_text = profile.render_profile(prof)
        results_file("availability", report["timestamp"], ".profile-top.txt").write_text(profile_text + "\n")
        print("\n(diagnostics, not part of the benchmark table)\n" + profile_text, file=sys.stderr)
    elif prof:
        print(f"\nprofile failed: {prof['error']}", file=sys.stderr)
    for cell in report["cells"]:
        cell.pop("latencies_ms")  # pooled above; too long for the JSON
    write_json(
        results_file("availability", report["timestamp"], ".json"),
        {**report, "table": text, "profile_text": profile_text},
    )
    log(
        f"done in {report['elapsed_s']:.0f} s; server logs: {rel(results_file('availability', args.stamp, '.*.log'))}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
