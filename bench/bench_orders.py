"""Order benchmark for omnistock: POST /api/v1/orders over HTTP against a bare-SQL baseline.

The script builds a scratch PostgreSQL database (omnistock_bench_orders). It migrates it, seeds
the scaled demo network (1 warehouse + 19 stores, 10,000 SKUs), starts gunicorn and measures:

A. POST /api/v1/orders with 1-line, 3-line and hot-SKU orders, at 1, 16 and 64 clients. Each
   cell runs for a fixed time after a short warm-up. The order load is sent by
   _common.KeepAlive, a minimal HTTP/1.1 client: the load generator shares the CPUs with the
   server it measures, and `requests` would take about 1 ms of CPU per request from it.
   Setup calls (catalog, availability, receipts) use `requests`.
B. The hot-SKU oversell check: units sold against the stock given, and availability afterwards.
C. A bare-SQL baseline through psycopg on the same database (no Flask, no SQLAlchemy). It runs
   the service's reservation statements, then its effect is undone with compensating releases.
D. Key ratios with their targets. The targets are shown, not asserted.
E. Machine info.

Optionally it also profiles a 3-line load in one gunicorn worker with pyinstrument, as
diagnostics. The profile goes to a separate file and is not part of the table.

It prints a fixed-width table and writes the same figures as JSON to
bench/results/orders-<timestamp>.json.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_orders.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
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
from typing import Any, Generic, TypeVar

import psycopg
import requests

try:
    from bench import _common
except ImportError:  # run as a script without the repository root on sys.path
    import _common  # type: ignore[no-redef,import-not-found]

BenchError = _common.BenchError
log = _common.log
fmt_table = _common.fmt_table
percentile = _common.percentile

ROOT = _common.ROOT
RESULTS_DIR = _common.RESULTS_DIR
DB_NAME = "omnistock_bench_orders"
DB_URL = _common.app_db_url(DB_NAME)
DSN = _common.libpq_dsn(DB_NAME)

SEED_SKUS = 10_000
SEED_LOCATIONS = 20
CLIENTS = (1, 16, 64)
RNG_SEED = 20240607
POOL_SIZE = 1000  # SKUs the 1- and 3-line orders draw from (random, fixed seed, all with stock)
HOT_STOCK = 2000  # units of the hot SKU made available before each hot-SKU cell
LAT, LON = 51.51, -0.12  # ship-to point: central London
AVAILABILITY_CHUNK = 200  # MAX_AVAILABILITY_SKUS in config/default.py
RECEIPT_BATCH = 5000  # MAX_BATCH_MOVEMENTS in config/default.py
# Top-ups are sized for rates no run on this kind of machine comes near, so stock cannot run out.
MAX_PLAUSIBLE_ORDERS_PER_S = 1000.0
MAX_PLAUSIBLE_BARE_TX_PER_S = 10000.0
PROFILE_WORKERS = 1
PROFILE_THREADS = 16
PROFILE_CLIENTS = 16
MAX_ERROR_SAMPLES = 5
OK_409_CODE = "insufficient_stock"

TARGET_RATIO_PCT = 20.0
TARGET_3LINE_P99_MS = 50.0
TARGET_HOT_P99_MS = 250.0

PHASES: dict[str, int] = {"1-line": 1, "3-line": 3, "hot-sku": 1}  # phase -> lines per order

S = TypeVar("S")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ----------------------------------------------------------------------------- CPU accounting
def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds (Linux /proc), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds used by the gunicorn processes ("app") and by every PostgreSQL process ("pg")."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def snapshot(self) -> dict[str, dict[int, float]]:
        groups: dict[str, list[int]] = {"pg": _postgres_pids()}
        if self.server_pid is not None:
            groups["app"] = [self.server_pid, *_descendants(self.server_pid)]
        snap: dict[str, dict[int, float]] = {}
        for name, pids in groups.items():
            snap[name] = {}
            for pid in pids:
                cpu = _proc_cpu_s(pid)
                if cpu is not None:
                    snap[name][pid] = cpu
        return snap

    @staticmethod
    def delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        return {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }


# ----------------------------------------------------------------------------- load driver
@dataclass
class Sample:
    """One request (or bare-SQL transaction)."""

    latency_s: float
    status: int  # HTTP status; 0 = transport error. Bare SQL: 1 committed, 2 short, 0 error
    t_end_s: float = 0.0  # when it finished, from the start of the cell
    units: int = 0  # units reserved (201 / committed)
    code: str | None = None  # the `code` of a 409 body
    error: str | None = None


class Clients(Generic[S]):
    """A fixed set of client threads, each with its own state (a KeepAlive client or a psycopg connection)."""

    def __init__(self, states: Sequence[S]) -> None:
        self.states = list(states)

    def run(
        self, seconds: float, step: Callable[[S, int, int], Sample], meter: CpuMeter | None = None
    ) -> tuple[list[Sample], float, dict[str, float]]:
        """Every thread calls step(state, thread_index, seq) until `seconds` have passed.

        A request in flight at the deadline is finished and counted. Returns the samples, the wall
        time (until the last thread finished) and CPU seconds over the run: this process's
        ("client") and, with a meter, the server's ("app") and PostgreSQL's ("pg").
        """
        n = len(self.states)
        gate = threading.Barrier(n + 1)
        results: list[list[Sample]] = [[] for _ in range(n)]
        clock: dict[str, float] = {}

        def worker(index: int) -> None:
            state = self.states[index]
            mine = results[index]
            gate.wait()
            began, deadline = clock["began"], clock["deadline"]
            seq = 0
            while time.perf_counter() < deadline:
                try:
                    sample = step(state, index, seq)
                except Exception as exc:  # a broken response must not silently end the thread
                    sample = Sample(0.0, 0, error=f"client error: {type(exc).__name__}: {exc}")
                sample.t_end_s = time.perf_counter() - began
                mine.append(sample)
                seq += 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        snap0 = meter.snapshot() if meter else {}
        cpu0 = time.process_time()
        clock["began"] = time.perf_counter()
        clock["deadline"] = clock["began"] + seconds
        gate.wait()
        for t in threads:
            t.join()
        wall = time.perf_counter() - clock["began"]
        cpu = {"client": time.process_time() - cpu0}
        if meter:
            cpu.update(CpuMeter.delta(snap0, meter.snapshot()))
        return [s for r in results for s in r], wall, cpu


@dataclass
class Cell:
    """The figures of one (phase, clients) cell."""

    phase: str
    clients: int
    seconds: float
    wall_s: float
    requests: int
    ok: int  # 201 (HTTP) or committed (bare SQL)
    conflicts: int  # 409 (HTTP) or short: a conditional UPDATE matched no row (bare SQL)
    other: int
    ok_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_pct: dict[str, float]  # CPU over the cell, % of one core: client, app (gunicorn), pg
    units: int  # units reserved by the successful requests
    first_conflict_s: float | None = None
    ok_per_s_until_conflict: float | None = None  # successes per second before the first conflict
    ok_p50_ms: float = 0.0  # latencies of the successful requests only
    ok_p99_ms: float = 0.0
    conflict_codes: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    warmup_requests: int = 0
    warmup_units: int = 0
    stock: dict[str, Any] = field(default_factory=dict)


def summarise(
    phase: str,
    clients: int,
    seconds: float,
    samples: list[Sample],
    wall: float,
    cpu_s: dict[str, float],
    ok_status: int,
) -> Cell:
    latencies = sorted(s.latency_s * 1000.0 for s in samples)
    conflict_status = 409 if ok_status == 201 else 2
    ok = [s for s in samples if s.status == ok_status]
    conflicts = [s for s in samples if s.status == conflict_status]
    other = [s for s in samples if s.status not in (ok_status, conflict_status)]
    codes: dict[str, int] = {}
    for s in conflicts:
        codes[s.code or "?"] = codes.get(s.code or "?", 0) + 1
    first_conflict = min((s.t_end_s for s in conflicts), default=None)
    ok_latencies = sorted(s.latency_s * 1000.0 for s in ok)
    errors: list[str] = []
    for s in samples:
        if s.error and s.error not in errors:
            errors.append(s.error)
        if len(errors) >= MAX_ERROR_SAMPLES:
            break
    return Cell(
        phase=phase,
        clients=clients,
        seconds=seconds,
        wall_s=wall,
        requests=len(samples),
        ok=len(ok),
        conflicts=len(conflicts),
        other=len(other),
        ok_per_s=len(ok) / wall if wall > 0 else 0.0,
        requests_per_s=len(samples) / wall if wall > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        cpu_pct={k: 100.0 * v / wall if wall > 0 else 0.0 for k, v in cpu_s.items()},
        units=sum(s.units for s in ok),
        first_conflict_s=first_conflict,
        ok_per_s_until_conflict=(
            sum(1 for s in ok if s.t_end_s <= first_conflict) / first_conflict if first_conflict else None
        ),
        ok_p50_ms=percentile(ok_latencies, 50),
        ok_p99_ms=percentile(ok_latencies, 99),
        conflict_codes=codes,
        error_samples=errors,
    )


# ----------------------------------------------------------------------------- HTTP helpers
@dataclass
class Network:
    base_url: str
    storefront_key: str
    ops_key: str
    skus: list[str]
    warehouse: str
    locations: list[str]


def api(http: requests.Session, method: str, url: str, expect: int, **kwargs: Any) -> Any:
    resp = http.request(method, url, timeout=_common.REQUEST_TIMEOUT_S, **kwargs)
    if resp.status_code != expect:
        path = url.split("127.0.0.1", 1)[-1]
        raise BenchError(f"{method} {path} -> {resp.status_code} (expected {expect}): {resp.text[:2000]}")
    return resp.json()


def fetch_network(base_url: str, keys: dict[str, str]) -> Network:
    skus, _ = _common.fetch_catalog(base_url, keys["ops"])
    with _common.session_for(keys["ops"]) as http:
        items = api(http, "GET", f"{base_url}/api/v1/locations", 200)["items"]
    warehouses = [i["code"] for i in items if i.get("kind") == "warehouse"]
    if len(warehouses) != 1:
        raise BenchError(f"expected one warehouse, found {warehouses}")
    return Network(base_url, keys["storefront"], keys["ops"], skus, warehouses[0], [i["code"] for i in items])


@dataclass
class Avail:
    total: int
    by_location: dict[str, int]


def availability(net: Network, codes: Sequence[str]) -> dict[str, Avail]:
    """total_available and per-location available (channel web) for each SKU."""
    out: dict[str, Avail] = {}
    with _common.session_for(net.storefront_key) as http:
        for start in range(0, len(codes), AVAILABILITY_CHUNK):
            chunk = codes[start : start + AVAILABILITY_CHUNK]
            body = api(
                http,
                "GET",
                f"{net.base_url}/api/v1/availability",
                200,
                params={"skus": ",".join(chunk), "channel": "web"},
            )
            for item in body["items"]:
                out[item["sku"]] = Avail(
                    int(item["total_available"]),
                    {loc["location"]: int(loc["available"]) for loc in item["locations"]},
                )
    missing = [c for c in codes if c not in out]
    if missing:
        raise BenchError(f"availability had no item for {missing[:5]}")
    return out


class Receipts:
    """Stock top-ups as receipts through POST /api/v1/stock/movements (source `bench`)."""

    def __init__(self, net: Network, tag: str) -> None:
        self.net = net
        self.tag = tag
        self.count = 0
        self.units = 0

    def post(self, lines: Sequence[tuple[str, str, int]]) -> int:
        """Receive (sku, location, qty) rows; returns the units received."""
        added = 0
        with _common.session_for(self.net.ops_key) as http:
            for start in range(0, len(lines), RECEIPT_BATCH):
                part = lines[start : start + RECEIPT_BATCH]
                movements = []
                for sku, loc, qty in part:
                    self.count += 1
                    movements.append({"kind": "receipt", "sku": sku, "location": loc, "qty": qty,
                                      "source": "bench", "external_ref": f"{self.tag}-r{self.count:07d}"})  # fmt: skip
                body = api(http, "POST", f"{self.net.base_url}/api/v1/stock/movements", 201,
                           json={"movements": movements})  # fmt: skip
                if body.get("applied") != len(part):
                    raise BenchError(f"receipts: applied={body.get('applied')} of {len(part)}: {body}")
                added += sum(q for _, _, q in part)
        self.units += added
        return added


def top_up_pool(net: Network, receipts: Receipts, pool: Sequence[str], floor: int) -> int:
    """Receive stock at the warehouse for every pool SKU whose warehouse availability is below `floor`.

    The warehouse is what counts: the stores' daily shipping capacity runs out early in the run,
    after which only the warehouse can ship, whatever the stores hold.
    """
    avail = availability(net, pool)
    lines = []
    for sku in pool:
        have = avail[sku].by_location.get(net.warehouse, 0)
        if have < floor:
            lines.append((sku, net.warehouse, 2 * floor - have))
    return receipts.post(lines) if lines else 0


def set_hot_stock(net: Network, receipts: Receipts, sku: str, stock: int) -> tuple[int, Avail]:
    """Receive at the warehouse what makes total_available exactly `stock`; return (units added, after)."""
    before = availability(net, [sku])[sku]
    if before.total > stock:
        raise BenchError(f"hot SKU {sku} already has {before.total} available, more than {stock}")
    added = receipts.post([(sku, net.warehouse, stock - before.total)]) if before.total < stock else 0
    after = availability(net, [sku])[sku]
    if after.total != stock:
        raise BenchError(f"hot SKU {sku}: total_available {after.total} after the top-up, wanted {stock}")
    return added, after


def order_clients(net: Network, n: int) -> list[_common.KeepAlive]:
    """`n` light keep-alive HTTP clients with the storefront key, one per client thread."""
    return [_common.keepalive_for(net.base_url, net.storefront_key) for _ in range(n)]


def order_step(
    net: Network, pool: Sequence[str], lines: int, hot_sku: str | None, tag: str, idempotency: bool
) -> Callable[[_common.KeepAlive, int, int], Sample]:
    """A step placing one order: `lines` distinct random pool SKUs (or the hot SKU), 1 unit each."""
    path = "/api/v1/orders"
    rngs: dict[int, random.Random] = {}
    no_headers: dict[str, str] = {}

    def step(http: _common.KeepAlive, tid: int, seq: int) -> Sample:
        rng = rngs.get(tid)
        if rng is None:
            rng = rngs[tid] = random.Random(f"{RNG_SEED}-{tag}-{tid}")
        skus = [hot_sku] if hot_sku else rng.sample(pool, lines)
        body = json.dumps({
            "channel": "web", "customer_ref": f"bench-{tid}",
            "lines": [{"sku": s, "qty": 1} for s in skus],
            "delivery": {"type": "ship", "lat": LAT, "lon": LON},
            "allow_split": True, "allow_partial": False,
        }).encode()  # fmt: skip
        # Authorization and Content-Type are in the client's prebuilt request head
        headers = {"Idempotency-Key": f"{tag}-{tid}-{seq}"} if idempotency else no_headers
        latency, result = _common.timed_call(http, "POST", path, body, headers)
        if isinstance(result, Exception):
            return Sample(latency, 0, error=_common.describe_failure("POST", "/api/v1/orders", result))
        status = result.status_code
        if status == 201:
            if hot_sku:  # count what the service says it reserved, not what was asked
                order = result.json()
                units = sum(int(ln["reserved"]) for f in order["fulfilments"] for ln in f["lines"])
            else:
                units = len(skus)
            return Sample(latency, 201, units=units)
        if status == 409:
            try:
                code = str(result.json().get("code"))
            except ValueError:
                code = "?"
            error = (
                None if code == OK_409_CODE else _common.describe_failure("POST", "/api/v1/orders", result)
            )
            return Sample(latency, 409, code=code, error=error)
        return Sample(latency, status, error=_common.describe_failure("POST", "/api/v1/orders", result))

    return step


# ----------------------------------------------------------------------------- A + B: HTTP phases
@dataclass
class HotLedger:
    """Hot-SKU accounting over the whole phase, warm-ups included."""

    sku: str
    initial_available: int = 0
    received: int = 0
    sold: int = 0
    final_available: int | None = None


def pool_floor(seconds: float, warmup: float, lines: int, pool_size: int, rate: float) -> int:
    """Warehouse units per pool SKU that `rate` orders/s cannot use up in one cell (x3 margin)."""
    return max(100, math.ceil(3.0 * rate * (seconds + warmup) * lines / pool_size))


def http_phases(
    net: Network,
    args: argparse.Namespace,
    pool: list[str],
    hot: HotLedger,
    receipts: Receipts,
    meter: CpuMeter,
    report: dict[str, Any],
) -> None:
    for phase, lines in PHASES.items():
        for clients in CLIENTS:
            if not wanted_cell(args, phase, clients):
                continue
            if args.vacuum:
                # This machine's PostgreSQL runs with autovacuum off; production's does not. Without
                # it the hot stock rows pile up dead versions cell after cell and every later cell
                # measures table bloat instead of the service.
                vacuum()
            order_http = order_clients(net, clients)
            try:
                cell = http_cell(net, args, pool, hot, receipts, meter, phase, lines, clients, order_http)
            finally:
                for c in order_http:
                    c.close()
            report["http"].append(asdict(cell))
            report["error_samples"].extend(cell.error_samples)
            log(
                f"  {phase} x{clients}: {cell.ok_per_s:.1f} orders/s, p50 {cell.p50_ms:.1f} ms, "
                f"p99 {cell.p99_ms:.1f} ms, 201={cell.ok} 409={cell.conflicts} other={cell.other}"
            )


def http_cell(
    net: Network,
    args: argparse.Namespace,
    pool: list[str],
    hot: HotLedger,
    receipts: Receipts,
    meter: CpuMeter,
    phase: str,
    lines: int,
    clients: int,
    order_http: list[_common.KeepAlive],
) -> Cell:
    is_hot = phase == "hot-sku"
    hot_sku = hot.sku if is_hot else None
    driver = Clients(order_http)
    stamp = args.stamp
    if is_hot:
        added, _ = set_hot_stock(net, receipts, hot.sku, args.hot_stock)
        hot.received += added
    else:
        floor = pool_floor(args.seconds, args.warmup, lines, len(pool), MAX_PLAUSIBLE_ORDERS_PER_S)
        top_up_pool(net, receipts, pool, floor)
    log(f"{phase} x{clients}: warm-up {args.warmup:g}s")
    warm_step = order_step(net, pool, lines, hot_sku, f"{stamp}-{phase}-{clients}-w", args.idempotency)
    warm, _, _ = driver.run(args.warmup, warm_step)
    if args.vacuum:
        analyze_written()
    warm_units = sum(s.units for s in warm if s.status == 201)
    stock: dict[str, Any] = {}
    if is_hot:
        hot.sold += warm_units
        added, before = set_hot_stock(net, receipts, hot.sku, args.hot_stock)
        hot.received += added
        stock = {"given": args.hot_stock, "at_warehouse": before.by_location.get(net.warehouse, 0)}
    log(f"{phase} x{clients}: measuring {args.seconds:g}s")
    main_step = order_step(net, pool, lines, hot_sku, f"{stamp}-{phase}-{clients}-m", args.idempotency)
    samples, wall, cpu = driver.run(args.seconds, main_step, meter)
    cell = summarise(phase, clients, args.seconds, samples, wall, cpu, 201)
    cell.warmup_requests = len(warm)
    cell.warmup_units = warm_units
    cell.error_samples = list(
        dict.fromkeys(cell.error_samples + [s.error for s in warm if s.error][:MAX_ERROR_SAMPLES])
    )[:MAX_ERROR_SAMPLES]
    if is_hot:
        hot.sold += cell.units
        after = availability(net, [hot.sku])[hot.sku]
        sold = cell.units
        stock.update({
            "sold": sold,
            "oversell": max(0, sold - args.hot_stock),
            "available_after": after.total,
            "expected_after": args.hot_stock - sold,
            "available_ok": after.total == args.hot_stock - sold,
        })  # fmt: skip
        cell.stock = stock
    return cell


def choose_skus(net: Network, rng: random.Random, pool_size: int) -> tuple[list[str], str, int]:
    """Random SKUs with stock: the order pool, and one more as the hot SKU (fewest units <= HOT_STOCK)."""
    order = list(net.skus)
    rng.shuffle(order)
    with_stock: list[str] = []
    totals: dict[str, int] = {}
    for start in range(0, len(order), AVAILABILITY_CHUNK * 5):
        chunk = order[start : start + AVAILABILITY_CHUNK * 5]
        for sku, a in availability(net, chunk).items():
            if a.total > 0:
                totals[sku] = a.total
        with_stock.extend(s for s in chunk if s in totals)
        if len(with_stock) > pool_size:
            break
    if len(with_stock) <= pool_size:
        raise BenchError(f"only {len(with_stock)} SKUs have stock; need {pool_size + 1}")
    pool = with_stock[:pool_size]
    hot_sku = with_stock[pool_size]
    return pool, hot_sku, totals[hot_sku]


# ----------------------------------------------------------------------------- C: bare SQL
# The same conditional UPDATE as app/services/orders.py (_RESERVE_SQL), with the online safety
# stock term as the brief gives it (COALESCE(safety_stock, 0)): the rows used are warehouse rows,
# whose default safety stock is 0, so it is the same condition the service evaluates there.
BARE_RESERVE_SQL = """
UPDATE stock_levels SET reserved = reserved + %s, updated_at = %s
WHERE sku_id = %s AND location_id = %s
  AND on_hand - reserved - COALESCE(safety_stock, 0) >= %s
"""
BARE_MOVEMENT_SQL = """
INSERT INTO movements (kind, sku_id, location_id, qty, on_hand_delta, reserved_delta, incoming_delta,
                       source, leg, occurred_at, recorded_at)
VALUES ('reservation', %s, %s, %s, 0, %s, 0, 'bench', 0, %s, %s)
"""
BARE_UNDO_SQL = """
WITH agg AS (
    SELECT sku_id, location_id, SUM(reserved_delta)::int AS n
    FROM movements WHERE source = 'bench' AND kind = 'reservation'
    GROUP BY sku_id, location_id
), moved AS (
    INSERT INTO movements (kind, sku_id, location_id, qty, on_hand_delta, reserved_delta, incoming_delta,
                           reason, source, external_ref, leg, occurred_at, recorded_at, note)
    SELECT 'release', sku_id, location_id, n, 0, -n, 0, NULL, 'bench',
           'bare-sql-undo:' || sku_id || ':' || location_id, 0, now(), now(),
           'undoes the bare-SQL baseline reservations of bench/bench_orders.py'
    FROM agg WHERE n <> 0
    RETURNING reserved_delta
), levels AS (
    UPDATE stock_levels s SET reserved = s.reserved - agg.n, updated_at = now()
    FROM agg WHERE s.sku_id = agg.sku_id AND s.location_id = agg.location_id AND agg.n <> 0
    RETURNING agg.n
)
SELECT (SELECT COALESCE(-SUM(reserved_delta), 0) FROM moved),
       (SELECT COUNT(*) FROM moved),
       (SELECT COALESCE(SUM(n), 0) FROM levels)
"""


class _Short(Exception):
    """A conditional UPDATE matched no row: not enough stock (the baseline's 409)."""


def bare_step(
    rows: Sequence[tuple[int, int]], lines: int, tag: str
) -> Callable[[psycopg.Connection[Any], int, int], Sample]:
    """One reservation transaction: the UPDATEs then the INSERTs, each sent as one pipelined executemany."""
    rngs: dict[int, random.Random] = {}

    def step(conn: psycopg.Connection[Any], tid: int, _seq: int) -> Sample:
        rng = rngs.get(tid)
        if rng is None:
            rng = rngs[tid] = random.Random(f"{RNG_SEED}-{tag}-{tid}")
        keys = sorted(rng.sample(rows, lines))
        began = time.perf_counter()
        now = datetime.now(UTC)
        try:
            with conn.cursor() as cur:
                cur.executemany(BARE_RESERVE_SQL, [(1, now, s, loc, 1) for s, loc in keys])
                if cur.rowcount != len(keys):
                    raise _Short
                cur.executemany(BARE_MOVEMENT_SQL, [(s, loc, 1, 1, now, now) for s, loc in keys])
            conn.commit()
        except _Short:
            conn.rollback()
            return Sample(time.perf_counter() - began, 2, code="short")
        except psycopg.Error as exc:
            conn.rollback()
            return Sample(time.perf_counter() - began, 0, error=f"bare SQL: {type(exc).__name__}: {exc}")
        return Sample(time.perf_counter() - began, 1, units=len(keys))

    return step


def bare_rows(pool: Sequence[str], warehouse: str) -> list[tuple[int, int]]:
    with psycopg.connect(DSN) as conn:
        loc = conn.execute("SELECT id FROM locations WHERE code = %s", (warehouse,)).fetchone()
        ids = conn.execute("SELECT id FROM skus WHERE code = ANY(%s)", (list(pool),)).fetchall()
    if loc is None or len(ids) != len(pool):
        raise BenchError(
            f"bare SQL: warehouse {warehouse} or pool SKU ids not found ({len(ids)}/{len(pool)})"
        )
    return sorted((int(r[0]), int(loc[0])) for r in ids)


def wanted_cell(args: argparse.Namespace, phase: str, clients: int) -> bool:
    """--cells narrows a run to some (phase, clients) cells, for quick comparisons."""
    return not args.cells or f"{phase}:{clients}" in args.cells


def bare_phases(args: argparse.Namespace, rows: list[tuple[int, int]], report: dict[str, Any]) -> int:
    """Run every bare-SQL cell; return the units reserved (warm-ups included)."""
    units = 0
    for phase, lines in (("1-line", 1), ("3-line", 3)):
        for clients in CLIENTS:
            if not wanted_cell(args, phase, clients):
                continue
            if args.vacuum:  # as before every service cell, so both start from the same state
                vacuum()
            conns = [psycopg.connect(DSN) for _ in range(clients)]
            try:
                driver = Clients(conns)
                log(f"bare SQL {phase} x{clients}: warm-up {args.warmup:g}s")
                warm, _, _ = driver.run(args.warmup, bare_step(rows, lines, f"{phase}-{clients}-w"))
                log(f"bare SQL {phase} x{clients}: measuring {args.seconds:g}s")
                samples, wall, cpu = driver.run(
                    args.seconds, bare_step(rows, lines, f"{phase}-{clients}-m"), CpuMeter(None)
                )
            finally:
                for c in conns:
                    c.close()
            cell = summarise(phase, clients, args.seconds, samples, wall, cpu, 1)
            cell.warmup_requests = len(warm)
            cell.warmup_units = sum(s.units for s in warm if s.status == 1)
            units += cell.units + cell.warmup_units
            report["bare"].append(asdict(cell))
            report["error_samples"].extend(cell.error_samples)
            log(f"  bare {phase} x{clients}: {cell.ok_per_s:.1f} tx/s, p50 {cell.p50_ms:.2f} ms, "
                f"p99 {cell.p99_ms:.2f} ms, short={cell.conflicts} errors={cell.other}")  # fmt: skip
    return units


def undo_bare(expected_units: int) -> dict[str, Any]:
    """Release what the baseline reserved, as ledger movements, in one transaction."""
    with psycopg.connect(DSN) as conn:
        row = conn.execute(BARE_UNDO_SQL).fetchone()
        conn.commit()
    released, movement_rows, level_units = (int(v) for v in row) if row else (0, 0, 0)
    return {
        "released_units": released,
        "release_movements": movement_rows,
        "level_units": level_units,
        "expected_units": expected_units,
        "ok": released == expected_units == level_units,
    }


# ----------------------------------------------------------------------------- profile
PYSPY = _common.VENV_BIN / "py-spy"
PYSPY_RATE = 200  # samples per second per process
TOP_N = 40
# A failed profile is reported and does not stop the benchmark.
PROFILE_ERRORS = (BenchError, OSError, subprocess.SubprocessError, requests.RequestException)


def _short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    root = str(ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    marker = "/lib/python3."
    if marker in path:  # the standard library
        return path.split(marker, 1)[1].split("/", 1)[-1]
    return path


def _ranked(table: dict[tuple[str, str], float], total: float) -> list[dict[str, Any]]:
    ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:TOP_N]
    return [
        {"function": fn, "where": where, "samples": n, "pct": round(100.0 * n / total, 2) if total else 0.0}
        for (fn, where), n in ranked
    ]


def _package(where: str) -> str:
    """What to group self time by: the module for app/ code, else the top-level package."""
    if where.startswith("app/"):
        return where
    head = where.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head or "?"


def profile_views(
    self_n: dict[tuple[str, str], float], incl_n: dict[tuple[str, str], float], total: float
) -> dict[str, Any]:
    """Ranked views of a profile: self and inclusive per function, app/ code only, self per package."""
    packages: dict[tuple[str, str], float] = {}
    for (_fn, where), n in self_n.items():
        key = (_package(where), "")
        packages[key] = packages.get(key, 0.0) + n
    app_only = {k: n for k, n in incl_n.items() if k[1].startswith("app/")}
    return {
        "by_self": _ranked(self_n, total),
        "by_inclusive": _ranked(incl_n, total),
        "app_by_inclusive": _ranked(app_only, total),
        "by_package": _ranked(packages, total),
    }


def parse_pyspy_raw(text: str) -> dict[str, Any]:
    """Self (leaf) and inclusive sample counts per function from `py-spy record --format raw`."""
    self_n: dict[tuple[str, str], float] = {}
    incl_n: dict[tuple[str, str], float] = {}
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
            key = (fn, _short_path(where.rstrip(")"))) if sep else (frame, "")
            keys.append(key)
        if not keys:
            continue
        total += n
        self_n[keys[-1]] = self_n.get(keys[-1], 0.0) + n
        for key in set(keys):
            incl_n[key] = incl_n.get(key, 0.0) + n
    return {"total_samples": int(total), **profile_views(self_n, incl_n, total)}


def profile_pyspy(
    args: argparse.Namespace, server: _common.Server, net: Network, pool: list[str], receipts: Receipts
) -> dict[str, Any]:
    """py-spy (GIL holders only) on the benchmark's own gunicorn while 16 clients place 3-line orders."""
    assert server.proc is not None
    raw = RESULTS_DIR / f"orders-{args.stamp}.pyspy.txt"
    seconds = math.ceil(args.profile_seconds)
    cmd = [str(PYSPY), "record", "--pid", str(server.proc.pid), "--subprocesses", "--gil", "--nolineno",
           "--rate", str(PYSPY_RATE), "--duration", str(seconds), "--format", "raw", "-o", str(raw)]  # fmt: skip
    out: dict[str, Any] = {
        "tool": "py-spy",
        "command": " ".join(cmd[1:]),
        "server": server_desc(server),
        "clients": PROFILE_CLIENTS,
        "seconds": seconds,
        "measure": "share of py-spy samples of a gunicorn worker thread holding the GIL (Python CPU time)",
    }
    floor = pool_floor(seconds + 2, args.warmup, 3, len(pool), MAX_PLAUSIBLE_ORDERS_PER_S)
    top_up_pool(net, receipts, pool, floor)
    order_http = order_clients(net, PROFILE_CLIENTS)
    spy: subprocess.Popen[str] | None = None
    try:
        driver = Clients(order_http)
        driver.run(args.warmup, order_step(net, pool, 3, None, f"{args.stamp}-prof-w", args.idempotency))
        log(f"profile: py-spy on gunicorn pid {server.proc.pid}, 3-line x{PROFILE_CLIENTS} for {seconds}s")
        spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)  # let it attach; the load below outlasts its window by a second or two
        if spy.poll() is not None:
            raise BenchError(f"py-spy exited {spy.returncode} at start: {spy.communicate()[0]}")
        samples, wall, cpu = driver.run(
            seconds + 1.5,
            order_step(net, pool, 3, None, f"{args.stamp}-prof-m", args.idempotency),
            CpuMeter(server.proc.pid),
        )
        spy_out, _ = spy.communicate(timeout=60)
    finally:
        if spy is not None and spy.poll() is None:  # a failure above: stop it, it is ours
            spy.kill()
            spy.communicate()
        for c in order_http:
            c.close()
    out["pyspy_output"] = spy_out.strip()[-2000:]
    if spy.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy exited {spy.returncode}: {spy_out.strip()[-2000:]}")
    out["load"] = asdict(
        summarise("3-line (profiled)", PROFILE_CLIENTS, seconds + 1.5, samples, wall, cpu, 201)
    )
    out.update(parse_pyspy_raw(raw.read_text()))
    out["files"] = [str(raw)]
    return out


def profile_pyinstrument(
    args: argparse.Namespace, keys: dict[str, str], pool: list[str], receipts_tag: str
) -> dict[str, Any]:
    """One single-threaded gunicorn worker that profiles every order with pyinstrument (wall clock).

    One handler thread keeps GIL hand-offs out of the wall-clock profile: each request's time is
    its own Python work plus its waits on PostgreSQL. The 16 clients queue in gunicorn.
    """
    prefix = RESULTS_DIR / f"orders-{args.stamp}.profile"
    server = _common.Server(
        1,
        RESULTS_DIR / f"orders-{args.stamp}.profile.server.log",
        db_url=DB_URL,
        threads=1,
        app_spec="bench._profile_wsgi:application",
        extra_env={"BENCH_PROFILE_OUT": str(prefix)},
    )
    out: dict[str, Any] = {
        "tool": "pyinstrument",
        "server": server_desc(server),
        "clients": PROFILE_CLIENTS,
        "seconds": args.profile_seconds,
        "measure": "share of the profiled requests' wall time (one handler thread: Python work + DB waits)",
    }
    try:
        log("profile: starting gunicorn (1 worker x 1 thread, pyinstrument)")
        server.start()
        net = fetch_network(server.base_url, keys)
        receipts = Receipts(net, receipts_tag)
        floor = pool_floor(args.profile_seconds, args.warmup, 3, len(pool), MAX_PLAUSIBLE_ORDERS_PER_S)
        top_up_pool(net, receipts, pool, floor)
        order_http = order_clients(net, PROFILE_CLIENTS)
        try:
            driver = Clients(order_http)
            driver.run(args.warmup, order_step(net, pool, 3, None, f"{args.stamp}-prof-w", args.idempotency))
            with requests.Session() as http:
                api(http, "GET", f"{server.base_url}/__bench_profile/start", 200)
                log(f"profile: 3-line x{PROFILE_CLIENTS} for {args.profile_seconds:g}s")
                samples, wall, cpu = driver.run(
                    args.profile_seconds,
                    order_step(net, pool, 3, None, f"{args.stamp}-prof-m", args.idempotency),
                    CpuMeter(server.proc.pid if server.proc else None),
                )
                log("profile: merging")
                stats = api(http, "GET", f"{server.base_url}/__bench_profile/stop", 200)
        finally:
            for c in order_http:
                c.close()
        out["load"] = asdict(
            summarise("3-line (profiled)", PROFILE_CLIENTS, args.profile_seconds, samples, wall, cpu, 201)
        )
        out.update(stats)
    finally:
        server.stop()
    return out


def server_desc(server: _common.Server) -> str:
    if server.worker_class == "gthread":
        return f"{server.workers} worker(s) x {server.threads} thread(s) (gthread)"
    return f"{server.workers} worker(s) ({server.worker_class})"


def render_profile(profile: dict[str, Any], top: int = 15) -> str:
    load = profile.get("load")
    lines = [
        f"profile ({profile['tool']}): 3-line orders from {profile['clients']} clients for "
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
            f"  load while profiling: {load['ok_per_s']:.1f} orders/s, p50 {load['p50_ms']:.1f} ms, "
            f"p99 {load['p99_ms']:.1f} ms"
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
    for f in profile.get("files", []):
        path = Path(f)
        lines.append(f"  written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report
def _ms(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _cpu(c: dict[str, Any]) -> str:
    pct = c["cpu_pct"]
    return "/".join(f"{pct[k]:.0f}" if k in pct else "-" for k in ("client", "app", "pg"))


def _cell_row(c: dict[str, Any]) -> list[str]:
    first = c.get("first_conflict_s")
    return [
        c["phase"], str(c["clients"]), f"{c['ok_per_s']:.1f}", f"{c['requests_per_s']:.1f}",
        _ms(c["p50_ms"]), _ms(c["p90_ms"]), _ms(c["p99_ms"]), _ms(c["max_ms"]),
        str(c["ok"]), str(c["conflicts"]), str(c["other"]),
        "-" if first is None else f"{first:.1f}", _cpu(c),
    ]  # fmt: skip


def _find(cells: list[dict[str, Any]], phase: str, clients: int) -> dict[str, Any] | None:
    return next((c for c in cells if c["phase"] == phase and c["clients"] == clients), None)


def key_figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    http, bare = report["http"], report["bare"]
    svc3, bare3 = _find(http, "3-line", 16), _find(bare, "3-line", 16)
    hot64 = _find(http, "hot-sku", 64)
    figs: list[dict[str, Any]] = []
    if svc3 and bare3 and bare3["ok_per_s"] > 0:
        pct = 100.0 * svc3["ok_per_s"] / bare3["ok_per_s"]
        figs.append({"figure": "service 3-line orders/s @16 as % of bare-SQL 3-line tx/s @16",
                     "value": f"{pct:.1f}% ({svc3['ok_per_s']:.1f} / {bare3['ok_per_s']:.1f})",
                     "target": f">= {TARGET_RATIO_PCT:.0f}%", "met": pct >= TARGET_RATIO_PCT})  # fmt: skip
    else:
        figs.append({"figure": "service 3-line orders/s @16 as % of bare-SQL 3-line tx/s @16",
                     "value": "n/a (bare SQL skipped)", "target": f">= {TARGET_RATIO_PCT:.0f}%", "met": None})  # fmt: skip
    if svc3:
        figs.append({"figure": "service 3-line p99 @16 clients", "value": f"{svc3['p99_ms']:.1f} ms",
                     "target": f"< {TARGET_3LINE_P99_MS:.0f} ms", "met": svc3["p99_ms"] < TARGET_3LINE_P99_MS})  # fmt: skip
    if hot64:
        over = hot64["stock"].get("oversell", 0)
        figs.append({"figure": "hot SKU @64 clients oversell", "value": f"{over} units",
                     "target": "0", "met": over == 0})  # fmt: skip
        figs.append({"figure": "hot SKU @64 clients p99", "value": f"{hot64['p99_ms']:.1f} ms",
                     "target": f"< {TARGET_HOT_P99_MS:.0f} ms", "met": hot64["p99_ms"] < TARGET_HOT_P99_MS})  # fmt: skip
    return figs


def render(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["parameters"]
    heads = ["phase", "clients", "ok/s", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
             "ok", "short", "error", "1st short s", "cpu% cli/app/pg"]  # fmt: skip
    http_heads = ["phase", "clients", "orders/s", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                  "201", "409", "other", "1st 409 s", "cpu% cli/app/pg"]  # fmt: skip
    out = [
        f"omnistock order benchmark  {report['timestamp']}  (commit {m['git_commit']})",
        "",
        "E. machine",
        *fmt_table(
            ["machine", "value"],
            [
                ["nproc", str(m["nproc"])],
                ["cpu", m["cpu_model"]],
                ["platform", m["platform"]],
                ["python", m["python"]],
                ["postgresql", m["postgresql"]],
                ["gunicorn", p["gunicorn"]],
                ["postgresql settings", " ".join(f"{k}={v}" for k, v in m.get("pg_settings", {}).items())],
                ["ANALYZE after seeding", "yes" if p["analyze"] else "no (--no-analyze)"],
                ["VACUUM ANALYZE before each cell", "yes" if p.get("vacuum") else "no (--no-vacuum)"],
                ["app/ uncommitted changes", ", ".join(m["dirty_app_files"]) or "none"],
                ["load average at start", m["loadavg_start"]],
                ["load average at end", m.get("loadavg_end", "?")],
            ],
            left=2,
        ),
        "",
        f"network: {p['seed_skus']} SKUs, {p['locations']} locations (1 warehouse + stores); "
        f"order pool {p['pool_size']} random SKUs with stock (seed {p['rng_seed']}); "
        f"hot SKU {report['hot']['sku']}",
        f"cells: {p['seconds']:g} s measured after a {p['warmup']:g} s warm-up; clients are threads, "
        f"each with its own psycopg connection (bare SQL) or persistent HTTP/1.1 connection (orders:",
        "bench/_common.KeepAlive, a minimal raw-socket client instead of requests, because the load generator",
        "shares the CPUs with the server; gunicorn sync workers close the connection after every response)",
        "",
        "A. POST /api/v1/orders over HTTP (ship to 51.51,-0.12, 1 unit per line, allow_split, no partial, "
        + ("a fresh Idempotency-Key per request)" if p["idempotency"] else "no Idempotency-Key)"),
        "   orders/s = 201s per second of wall time; latencies cover every request (201, 409 and other);",
        f"   cpu% = CPU used during the cell, % of one core (nproc {m['nproc']}): this load generator / "
        "gunicorn master+workers / all postgres processes",
        *fmt_table(http_heads, [_cell_row(c) for c in report["http"]]),
    ]
    hot = report["hot"]
    hot_cells = [c for c in report["http"] if c["phase"] == "hot-sku"]
    if hot_cells:
        out += [
            "",
            f"B. hot SKU oversell check: {hot['sku']}, total_available set to exactly {p['hot_stock']} "
            f"(receipts at the warehouse) before each cell; sold = units reserved by 201s;",
            "   at WH = of which at the warehouse; sell/s = 201s per second until the first 409 (sell-out);",
            "   201 p50/p99 = latency (ms) of the 201 responses only",
            *fmt_table(
                [
                    "cell",
                    "stock",
                    "at WH",
                    "sold",
                    "oversell",
                    "avail after",
                    "expected",
                    "check",
                    "sold out s",
                    "sell/s",
                    "201 p50",
                    "201 p99",
                ],
                [
                    [
                        f"hot-sku x{c['clients']}",
                        str(c["stock"]["given"]),
                        str(c["stock"]["at_warehouse"]),
                        str(c["stock"]["sold"]),
                        str(c["stock"]["oversell"]),
                        str(c["stock"]["available_after"]),
                        str(c["stock"]["expected_after"]),
                        "ok" if c["stock"]["available_ok"] and c["stock"]["oversell"] == 0 else "FAILED",
                        "-" if c["first_conflict_s"] is None else f"{c['first_conflict_s']:.1f}",
                        f"{c['ok_per_s_until_conflict'] or c['ok_per_s']:.1f}",
                        _ms(c["ok_p50_ms"]),
                        _ms(c["ok_p99_ms"]),
                    ]
                    for c in hot_cells
                ]
                + [
                    [
                        "whole phase (warm-ups incl.)",
                        str(hot["given"]),
                        "",
                        str(hot["sold"]),
                        str(hot["oversell"]),
                        str(hot["final_available"]),
                        str(hot["given"] - hot["sold"]),
                        "ok" if hot["ok"] else "FAILED",
                        "",
                        "",
                        "",
                        "",
                    ]
                ],
            ),
        ]
    if report["bare"]:
        undo = report["bare_undo"] or {}
        out += [
            "",
            "C. bare-SQL reservation transaction via psycopg (no Flask/SQLAlchemy), same database, warehouse rows",
            "   BEGIN; conditional UPDATE stock_levels x lines (one pipelined executemany, sorted keys);",
            "   INSERT movements x lines (one pipelined executemany); COMMIT. ok = committed, conflict = short",
            *fmt_table(heads, [_cell_row(c) for c in report["bare"]]),
            f"   undo: {undo.get('release_movements', 0)} 'release' movements gave back "
            f"{undo.get('released_units', 0)} reserved units (baseline reserved {undo.get('expected_units', 0)}) "
            f"-> {'ok' if undo.get('ok') else 'FAILED'}",
        ]
    out += ["", "D. key figures (targets shown, not asserted)"]
    out += fmt_table(
        ["figure", "value", "target", "met"],
        [
            [f["figure"], f["value"], f["target"], "-" if f["met"] is None else ("yes" if f["met"] else "NO")]
            for f in report["key_figures"]
        ],
    )
    out.append("")
    mix = report.get("routing_mix")
    if mix:
        out.append("fulfilments by location kind: " + ", ".join(f"{k} {v}" for k, v in mix.items()))
    out.append(f"stock received by the benchmark: {report['receipts']['units']} units in "
               f"{report['receipts']['count']} receipts (outside the timed windows)")  # fmt: skip
    verify = report.get("ledger_verify")
    if verify is not None:
        out.append(f"ledger verify: {'ok' if verify['ok'] else 'MISMATCH'} (exit {verify['exit_code']})")
    if report["error_samples"]:
        out += ["", "errors (first occurrences, verbatim):"]
        out += [f"  - {e}" for e in dict.fromkeys(report["error_samples"])]
    out += ["", f"result: {'OK' if report['ok'] else 'FAILED'}"]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="3 s cells, 1 s warm-ups, 5 s profile (explicit flags still win)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per cell (15; quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per cell (2; quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    parser.add_argument("--threads", type=int, default=16, help="threads per gthread worker (16)")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"],
                        help="gunicorn worker class (gthread)")  # fmt: skip
    parser.add_argument(
        "--hot-stock", type=int, default=HOT_STOCK, help=f"hot-SKU units per cell ({HOT_STOCK})"
    )
    parser.add_argument("--no-idempotency-key", dest="idempotency", action="store_false",
                        help="send orders without an Idempotency-Key header")  # fmt: skip
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="do not ANALYZE the database after seeding")  # fmt: skip
    parser.add_argument("--no-vacuum", dest="vacuum", action="store_false",
                        help="do not VACUUM ANALYZE the written tables before each cell")  # fmt: skip
    parser.add_argument("--skip-bare", action="store_true", help="skip the bare-SQL baseline (C)")
    parser.add_argument("--cells", nargs="*", default=None, metavar="PHASE:CLIENTS",
                        help="only these cells, e.g. 3-line:16 hot-sku:64 (default: all)")  # fmt: skip
    parser.add_argument("--skip-profile", action="store_true", help="skip the profile (diagnostics)")
    parser.add_argument("--profiler", default="auto", choices=["auto", "py-spy", "pyinstrument"],
                        help="auto: py-spy if .venv/bin/py-spy exists, else pyinstrument")  # fmt: skip
    parser.add_argument(
        "--profile-seconds", type=float, default=None, help="profiled load seconds (30; quick 5)"
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 15.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    if args.profile_seconds is None:
        args.profile_seconds = 5.0 if args.quick else 30.0
    for name in ("seconds", "profile_seconds", "workers", "threads", "hot_stock"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.profiler == "auto":
        args.profiler = "py-spy" if PYSPY.exists() else "pyinstrument"
    elif args.profiler == "py-spy" and not PYSPY.exists():
        parser.error(f"--profiler py-spy: {PYSPY} not found (pip install py-spy into .venv)")
    return args


def gunicorn_desc(args: argparse.Namespace) -> str:
    if args.worker_class == "gthread":
        return f"{args.workers} workers x {args.threads} threads (gthread), --no-control-socket"
    return f"{args.workers} workers ({args.worker_class}), --no-control-socket"


PG_SETTINGS = ("autovacuum", "jit", "synchronous_commit", "shared_buffers", "max_connections")


def pg_settings() -> dict[str, str]:
    with psycopg.connect(DSN) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in PG_SETTINGS}  # type: ignore[index]


def vacuum() -> None:
    """VACUUM ANALYZE the tables each order writes, then CHECKPOINT (outside any timed window).

    Without the checkpoint, the first cell after seeding pays for flushing the seed's dirty
    buffers (PostgreSQL's CPU per order was 2.3x that of later cells).
    """
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE stock_levels, location_day_usage, orders, order_lines, fulfilments, "
                     "fulfilment_lines, movements, outbox_events")  # fmt: skip
        conn.execute("CHECKPOINT")


def analyze_written() -> None:
    """ANALYZE the tables orders write, after the warm-up has put rows in them.

    Stands in for autovacuum's analyze (off on this machine). Statistics taken while a table
    was still empty leave cached plans (foreign-key checks included) on sequential scans,
    which a growing table then pays for on every insert until the next analyze.
    """
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("ANALYZE orders, order_lines, fulfilments, fulfilment_lines, movements, outbox_events")


def analyze() -> float:
    """ANALYZE the scratch database; returns the seconds it took."""
    began = time.perf_counter()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - began


def dirty_app_files() -> list[str]:
    """Files under app/ with uncommitted changes: the code measured is HEAD plus these."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def routing_mix() -> dict[str, int]:
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT l.kind, COUNT(*) FROM fulfilments f JOIN locations l ON l.id = f.location_id "
            "GROUP BY l.kind ORDER BY l.kind"
        ).fetchall()
    return {str(k): int(n) for k, n in rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.stamp = stamp
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(RNG_SEED)
    report: dict[str, Any] = {
        "benchmark": "orders",
        "timestamp": stamp,
        "parameters": {
            "quick": args.quick,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "clients": list(CLIENTS),
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": args.worker_class,
            "gunicorn": gunicorn_desc(args),
            "seed_skus": SEED_SKUS,
            "locations": SEED_LOCATIONS,
            "pool_size": POOL_SIZE,
            "hot_stock": args.hot_stock,
            "rng_seed": RNG_SEED,
            "idempotency": args.idempotency,
            "skip_bare": args.skip_bare,
            "skip_profile": args.skip_profile,
            "profile_seconds": args.profile_seconds,
            "profiler": args.profiler,
            "analyze": args.analyze,
            "vacuum": args.vacuum,
            "bare_sql": "UPDATEs and INSERTs each sent as one psycopg executemany (pipeline mode)",
            "order_http_client": "bench/_common.KeepAlive (minimal HTTP/1.1 over one socket per client thread)",
        },
        "machine": {
            "nproc": _common.cpu_count(),
            "cpu_model": _common.cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgresql": "unknown",
            "git_commit": _common.git_commit(),
            "loadavg_start": loadavg(),
            "dirty_app_files": dirty_app_files(),
        },
        "http": [],
        "hot": {},
        "bare": [],
        "bare_undo": None,
        "key_figures": [],
        "receipts": {},
        "routing_mix": {},
        "ledger_verify": None,
        "profile": None,
        "error_samples": [],
        "server_log": str((RESULTS_DIR / f"orders-{stamp}.server.log").relative_to(ROOT)),
        "ok": False,
    }

    log(f"recreating database {DB_NAME}")
    report["machine"]["postgresql"] = _common.recreate_database(DB_NAME)
    log("migrating")
    _common.run_flask(["db", "upgrade"], DB_URL)
    with tempfile.TemporaryDirectory(prefix="omnistock-bench-orders-") as tmp:
        keys_file = Path(tmp) / "keys.tsv"
        log(f"seeding demo data: {SEED_SKUS} SKUs, {SEED_LOCATIONS} locations")
        began = time.perf_counter()
        _common.run_flask(
            ["demo", "seed", "--skus", str(SEED_SKUS), "--locations", str(SEED_LOCATIONS),
             "--keys-file", str(keys_file)],
            DB_URL,
        )  # fmt: skip
        report["seed_s"] = round(time.perf_counter() - began, 1)
        keys = _common.read_keys(keys_file)
    if args.analyze:
        # autovacuum may be off (it is on this machine's server): a freshly seeded database then
        # has no statistics, and the planner's row estimates are off by orders of magnitude.
        log("ANALYZE")
        report["analyze_s"] = round(analyze(), 1)
    report["machine"]["pg_settings"] = pg_settings()

    server = _common.Server(
        args.workers, ROOT / report["server_log"], db_url=DB_URL, threads=args.threads,
        worker_class=args.worker_class,
    )  # fmt: skip
    report["parameters"]["gunicorn_command"] = " ".join(server.command()[1:])
    pool: list[str] = []
    warehouse = ""
    receipts_units = receipts_count = 0
    try:
        log(f"starting gunicorn on {server.base_url} ({gunicorn_desc(args)})")
        server.start()
        net = fetch_network(server.base_url, keys)
        warehouse = net.warehouse
        log(f"catalog: {len(net.skus)} SKUs, {len(net.locations)} locations, warehouse {warehouse}")
        pool, hot_sku, hot_initial = choose_skus(net, rng, POOL_SIZE)
        receipts = Receipts(net, f"{stamp}-bench")
        hot = HotLedger(hot_sku, initial_available=hot_initial)
        meter = CpuMeter(server.proc.pid if server.proc else None)
        http_phases(net, args, pool, hot, receipts, meter, report)
        hot.final_available = availability(net, [hot.sku])[hot.sku].total
        given = hot.initial_available + hot.received
        report["hot"] = {
            "sku": hot.sku, "initial_available": hot.initial_available, "received": hot.received,
            "given": given, "sold": hot.sold, "oversell": max(0, hot.sold - given),
            "final_available": hot.final_available,
            "ok": hot.sold <= given and hot.final_available == given - hot.sold,
        }  # fmt: skip
        if not args.skip_profile and args.profiler == "py-spy":
            try:
                report["profile"] = profile_pyspy(args, server, net, pool, receipts)
            except PROFILE_ERRORS as exc:  # diagnostics only: report it, keep the measurements
                report["profile"] = {"tool": "py-spy", "error": str(exc)}
                log(f"profile failed: {exc}")
        if not args.skip_bare:
            # Stock for the whole baseline, received while the server still runs (the baseline
            # releases what it reserves afterwards, so this stock stays on hand).
            floor = pool_floor(args.seconds, args.warmup, 12, len(pool), MAX_PLAUSIBLE_BARE_TX_PER_S)
            log(f"receiving stock for the bare-SQL baseline (warehouse >= {floor} per pool SKU)")
            top_up_pool(net, receipts, pool, floor)
        if not server.alive():
            report["error_samples"].append(f"gunicorn exited during the run:\n{server.log_tail()}")
        receipts_units, receipts_count = receipts.units, receipts.count
    finally:
        log("stopping gunicorn")
        server.stop()

    if not args.skip_bare:
        rows = bare_rows(pool, warehouse)
        expected = bare_phases(args, rows, report)
        log("undoing the bare-SQL reservations with compensating release movements")
        report["bare_undo"] = undo_bare(expected)
        if not report["bare_undo"]["ok"]:
            report["error_samples"].append(f"bare-SQL undo mismatch: {report['bare_undo']}")

    if not args.skip_profile and args.profiler == "pyinstrument":
        try:
            report["profile"] = profile_pyinstrument(args, keys, pool, f"{stamp}-profile")
        except PROFILE_ERRORS as exc:  # diagnostics only: report it, keep the measurements
            report["profile"] = {"tool": "pyinstrument", "error": str(exc)}
            log(f"profile failed: {exc}")

    report["receipts"] = {"units": receipts_units, "count": receipts_count}
    report["routing_mix"] = routing_mix()
    log("flask ledger verify")
    verify = _common.run_flask(["ledger", "verify"], DB_URL, check=False)
    report["ledger_verify"] = {
        "ok": verify.returncode == 0,
        "exit_code": verify.returncode,
        "output": (verify.stdout + verify.stderr).strip()[-4000:],
    }
    if verify.returncode != 0:
        report["error_samples"].append(
            f"flask ledger verify exited {verify.returncode}:\n{verify.stdout}{verify.stderr}"
        )
    report["machine"]["loadavg_end"] = loadavg()
    report["key_figures"] = key_figures(report)
    other = sum(c["other"] for c in report["http"] + report["bare"])
    hot_cells_ok = all(
        c["stock"].get("available_ok") and c["stock"].get("oversell") == 0
        for c in report["http"]
        if c["phase"] == "hot-sku"
    )
    report["ok"] = (
        other == 0
        and hot_cells_ok
        and bool(report["hot"].get("ok"))
        and (args.skip_bare or bool(report["bare_undo"] and report["bare_undo"]["ok"]))
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
    out_path = RESULTS_DIR / f"orders-{report['timestamp']}.json"
    profile = report.get("profile")
    profile_text = ""
    if profile and "error" not in profile:
        profile_text = render_profile(profile)
        (RESULTS_DIR / f"orders-{report['timestamp']}.profile-top.txt").write_text(profile_text + "\n")
        print("\n(diagnostics, not part of the benchmark table)\n" + profile_text, file=sys.stderr)
    elif profile:
        print(f"\nprofile failed: {profile['error']}", file=sys.stderr)
    out_path.write_text(json.dumps({**report, "table": text, "profile_text": profile_text}, indent=2) + "\n")
    log(f"wrote {out_path.relative_to(ROOT)}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
