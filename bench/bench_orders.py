"""Order benchmark for omnistock: POST /api/v1/orders over HTTP against a bare-SQL baseline.

The script builds a scratch PostgreSQL database (omnistock_bench_orders). It migrates it, seeds
the scaled demo network (1 warehouse + 19 stores, 10,000 SKUs), starts gunicorn and measures:

A. POST /api/v1/orders with 1-line, 3-line and hot-SKU orders, at 1, 16 and 64 clients. Each
   cell runs for a fixed time after a short warm-up. The order load is sent by
   bench/lib/client.KeepAlive, a minimal HTTP/1.1 client: the load generator shares the CPUs
   with the server it measures, and `requests` would take about 1 ms of CPU per request from it.
   Setup calls (catalog, availability, receipts) use `requests`.
B. The hot-SKU oversell check: units sold against the stock given, and availability afterwards.
C. A bare-SQL baseline through psycopg on the same database (no Flask, no SQLAlchemy). It runs
   the service's own reservation statement, then its effect is undone with compensating releases.
D. Key ratios with their targets. The targets are shown, not asserted.
E. Machine info.

Optionally it also profiles a 3-line load in one gunicorn worker with pyinstrument, as
diagnostics. The profile goes to a separate file and is not part of the table.

It prints a fixed-width table and writes the same figures as JSON to
bench/results/orders-<timestamp>.json. The load driver, CPU meter, server and report helpers
are bench/lib/.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_orders.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
from bench.lib.client import KeepAlive, api
from bench.lib.load import MAX_ERROR_SAMPLES, Cell, Clients, CpuMeter, Sample, summarise
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
from bench.lib.server import BenchError, Server, app_db_url, ledger_verify, libpq_dsn, log, scratch_database

DB_NAME = "omnistock_bench_orders"
DB_URL = app_db_url(DB_NAME)
DSN = libpq_dsn(DB_NAME)

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
PROFILE_CLIENTS = 16
OK_409_CODE = "insufficient_stock"

TARGET_RATIO_PCT = 20.0
TARGET_3LINE_P99_MS = 50.0
TARGET_HOT_P99_MS = 250.0

PHASES: dict[str, int] = {"1-line": 1, "3-line": 3, "hot-sku": 1}  # phase -> lines per order


# ----------------------------------------------------------------------------- HTTP helpers
@dataclass
class Network:
    base_url: str
    storefront_key: str
    ops_key: str
    skus: list[str]
    warehouse: str
    locations: list[str]


def fetch_network(base_url: str, keys: dict[str, str]) -> Network:
    skus, _ = client.fetch_catalog(base_url, keys["ops"])
    with client.session_for(keys["ops"]) as http:
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
    with client.session_for(net.storefront_key) as http:
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
        with client.session_for(self.net.ops_key) as http:
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


def order_clients(net: Network, n: int) -> list[KeepAlive]:
    """`n` light keep-alive HTTP clients with the storefront key, one per client thread."""
    return [client.keepalive_for(net.base_url, net.storefront_key) for _ in range(n)]


def order_step(
    net: Network, pool: Sequence[str], lines: int, hot_sku: str | None, tag: str, idempotency: bool
) -> Callable[[KeepAlive, int, int], Sample]:
    """A step placing one order: `lines` distinct random pool SKUs (or the hot SKU), 1 unit each."""
    path = "/api/v1/orders"
    rngs: dict[int, random.Random] = {}
    no_headers: dict[str, str] = {}

    def step(http: KeepAlive, tid: int, seq: int) -> Sample:
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
        latency, result = client.timed_call(http, "POST", path, body, headers)
        if isinstance(result, Exception):
            return Sample(latency, 0, error=client.describe_failure("POST", "/api/v1/orders", result))
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
            error = None if code == OK_409_CODE else client.describe_failure("POST", "/api/v1/orders", result)
            return Sample(latency, 409, code=code, error=error)
        return Sample(latency, status, error=client.describe_failure("POST", "/api/v1/orders", result))

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
    order_http: list[KeepAlive],
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
    cell = summarise(phase, clients, args.seconds, samples, wall, cpu, 201, 409)
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
# The reservation is the service's own statement (app/services/orders/reservations.py), not a
# copy: if the service's SQL changes, the baseline runs the new one. Its movements are this
# baseline's own ledger record, so that the undo below can give back exactly what it reserved.
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
    """The reservation matched fewer rows than lines: not enough stock (the baseline's 409)."""


def dollar_placeholders(text: str) -> str:
    """`?` placeholders as psycopg's RawCursor takes them ($1, $2, ...), as the app sends them."""
    parts = text.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


def reserve_statement(lines: int) -> str:
    """The service's PostgreSQL reservation statement for `lines` lines."""
    from app.services.orders.reservations import _reserve_sql  # imported here: only C needs the app

    return dollar_placeholders(_reserve_sql(False, lines))


@dataclass
class BareRows:
    """The warehouse rows the baseline reserves from, and the warehouse's default safety stock."""

    keys: list[tuple[int, int]]  # (sku_id, location_id)
    default_safety: int


def bare_step(rows: BareRows, lines: int, tag: str) -> Callable[[psycopg.Connection[Any], int, int], Sample]:
    """One reservation transaction: the service's reservation statement (one round trip) for a web
    order, then the movements as one pipelined executemany, then COMMIT."""
    rngs: dict[int, random.Random] = {}
    reserve_sql = reserve_statement(lines)

    def step(conn: psycopg.Connection[Any], tid: int, _seq: int) -> Sample:
        rng = rngs.get(tid)
        if rng is None:
            rng = rngs[tid] = random.Random(f"{RNG_SEED}-{tag}-{tid}")
        keys = sorted(rng.sample(rows.keys, lines))
        began = time.perf_counter()
        now = datetime.now(UTC)
        params: list[Any] = []
        for s, loc in keys:  # as reservations.reserve() lays them out: online channel, 1 unit a line
            params += (s, loc, 1, 1, rows.default_safety)
        params.append(now)
        try:
            with psycopg.RawCursor(conn) as cur:
                cur.execute(reserve_sql, params)
                if cur.rowcount != len(keys):
                    raise _Short
            with conn.cursor() as cur:
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


def bare_rows(pool: Sequence[str], warehouse: str) -> BareRows:
    with psycopg.connect(DSN) as conn:
        loc = conn.execute(
            "SELECT id, default_safety_stock FROM locations WHERE code = %s", (warehouse,)
        ).fetchone()
        ids = conn.execute("SELECT id FROM skus WHERE code = ANY(%s)", (list(pool),)).fetchall()
    if loc is None or len(ids) != len(pool):
        raise BenchError(
            f"bare SQL: warehouse {warehouse} or pool SKU ids not found ({len(ids)}/{len(pool)})"
        )
    return BareRows(sorted((int(r[0]), int(loc[0])) for r in ids), int(loc[1]))


def wanted_cell(args: argparse.Namespace, phase: str, clients: int) -> bool:
    """--cells narrows a run to some (phase, clients) cells, for quick comparisons."""
    return not args.cells or f"{phase}:{clients}" in args.cells


def bare_phases(args: argparse.Namespace, rows: BareRows, report: dict[str, Any]) -> int:
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
            cell = summarise(phase, clients, args.seconds, samples, wall, cpu, 1, 2)
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
def profile_pyspy(
    args: argparse.Namespace, server: Server, net: Network, pool: list[str], receipts: Receipts
) -> dict[str, Any]:
    """py-spy (GIL holders only) on the benchmark's own gunicorn while 16 clients place 3-line orders."""
    assert server.proc is not None
    raw = results_file("orders", args.stamp, ".pyspy.txt")
    seconds = math.ceil(args.profile_seconds)
    cmd = profile.pyspy_command(server.proc.pid, seconds, raw)
    out: dict[str, Any] = {
        "tool": "py-spy",
        "command": " ".join(cmd[1:]),
        "server": server.describe(),
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
        summarise("3-line (profiled)", PROFILE_CLIENTS, seconds + 1.5, samples, wall, cpu, 201, 409)
    )
    out.update(profile.parse_pyspy_raw(raw.read_text()))
    out["files"] = [str(raw)]
    return out


def profile_pyinstrument(
    args: argparse.Namespace, keys: dict[str, str], pool: list[str], receipts_tag: str
) -> dict[str, Any]:
    """One single-threaded gunicorn worker that profiles every order with pyinstrument (wall clock)."""
    prefix = results_file("orders", args.stamp, ".profile")
    server = profile.pyinstrument_server(DB_URL, prefix, "POST", "/api/v1/orders")
    out: dict[str, Any] = {
        "tool": "pyinstrument",
        "server": server.describe(),
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
                profile.profile_start(http, server)
                log(f"profile: 3-line x{PROFILE_CLIENTS} for {args.profile_seconds:g}s")
                samples, wall, cpu = driver.run(
                    args.profile_seconds,
                    order_step(net, pool, 3, None, f"{args.stamp}-prof-m", args.idempotency),
                    CpuMeter(server.pid),
                )
                log("profile: merging")
                stats = profile.profile_stop(http, server)
        finally:
            for c in order_http:
                c.close()
        out["load"] = asdict(
            summarise(
                "3-line (profiled)", PROFILE_CLIENTS, args.profile_seconds, samples, wall, cpu, 201, 409
            )
        )
        out.update(stats)
    finally:
        server.stop()
    return out


# ----------------------------------------------------------------------------- report
def _cell_row(c: dict[str, Any]) -> list[str]:
    first = c.get("first_conflict_s")
    return [
        c["phase"], str(c["clients"]), f"{c['ok_per_s']:.1f}", f"{c['requests_per_s']:.1f}",
        fmt_ms(c["p50_ms"]), fmt_ms(c["p90_ms"]), fmt_ms(c["p99_ms"]), fmt_ms(c["max_ms"]),
        str(c["ok"]), str(c["conflicts"]), str(c["other"]),
        "-" if first is None else f"{first:.1f}", fmt_cpu(c["cpu_pct"]),
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
                *machine_rows(m),
                ["gunicorn", p["gunicorn"]],
                ["postgresql settings", " ".join(f"{k}={v}" for k, v in m.get("pg_settings", {}).items())],
                ["ANALYZE after seeding", "yes" if p["analyze"] else "no (--no-analyze)"],
                ["VACUUM ANALYZE before each cell", "yes" if p.get("vacuum") else "no (--no-vacuum)"],
                ["app/ uncommitted changes", dirty_summary(m["dirty_app_files"])],
                ["load average at start", m["loadavg_start"]],
                ["load average at end", m.get("loadavg_end", "?")],
            ],
            left=2,
        ),
        "",
        *busy_warning(m),
        f"network: {p['seed_skus']} SKUs, {p['locations']} locations (1 warehouse + stores); "
        f"order pool {p['pool_size']} random SKUs with stock (seed {p['rng_seed']}); "
        f"hot SKU {report['hot']['sku']}",
        f"cells: {p['seconds']:g} s measured after a {p['warmup']:g} s warm-up; clients are threads, "
        f"each with its own psycopg connection (bare SQL) or persistent HTTP/1.1 connection (orders:",
        "bench/lib/client.KeepAlive, a minimal raw-socket client instead of requests, because the load generator",
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
                        fmt_ms(c["ok_p50_ms"]),
                        fmt_ms(c["ok_p99_ms"]),
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
            "   BEGIN; the service's reservation statement (app/services/orders/reservations.py, one round trip,",
            "   rows locked in key order); INSERT movements x lines (one pipelined executemany); COMMIT.",
            "   ok = committed, short = the reservation matched fewer rows than lines",
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
        args.profiler = "py-spy" if profile.PYSPY.exists() else "pyinstrument"
    elif args.profiler == "py-spy" and not profile.PYSPY.exists():
        parser.error(f"--profiler py-spy: {profile.PYSPY} not found (pip install py-spy into .venv)")
    return args


def gunicorn_desc(args: argparse.Namespace) -> str:
    if args.worker_class == "gthread":
        return f"{args.workers} workers x {args.threads} threads (gthread), --no-control-socket"
    return f"{args.workers} workers ({args.worker_class}), --no-control-socket"


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
            "bare_sql": "the service's reservation statement (one round trip), then the movements as one "
            "psycopg executemany (pipeline mode)",
            "order_http_client": "bench/lib/client.KeepAlive (minimal HTTP/1.1 over one socket per client thread)",
        },
        "machine": {**machine(), "loadavg_start": loadavg(), "dirty_app_files": dirty_app_files()},
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
        "server_log": rel(results_file("orders", stamp, ".server.log")),
        "ok": False,
    }

    db = scratch_database(DB_NAME, ["--skus", str(SEED_SKUS), "--locations", str(SEED_LOCATIONS)])
    report["machine"]["postgresql"] = db.pg_version
    report["seed_s"] = db.seed_s
    keys = db.keys
    if args.analyze:
        # autovacuum may be off (it is on this machine's server): a freshly seeded database then
        # has no statistics, and the planner's row estimates are off by orders of magnitude.
        log("ANALYZE")
        report["analyze_s"] = round(analyze(), 1)
    report["machine"]["pg_settings"] = pg_settings(DSN)

    server = Server(
        args.workers, results_file("orders", stamp, ".server.log"), db_url=DB_URL, threads=args.threads,
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
        meter = CpuMeter(server.pid)
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
            except profile.PROFILE_ERRORS as exc:  # diagnostics only: report it, keep the measurements
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
        except profile.PROFILE_ERRORS as exc:  # diagnostics only: report it, keep the measurements
            report["profile"] = {"tool": "pyinstrument", "error": str(exc)}
            log(f"profile failed: {exc}")

    report["receipts"] = {"units": receipts_units, "count": receipts_count}
    report["routing_mix"] = routing_mix()
    report["ledger_verify"] = verify = ledger_verify(DB_URL)
    if not verify["ok"]:
        report["error_samples"].append(
            f"flask ledger verify exited {verify['exit_code']}:\n{verify['output']}"
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
    prof = report.get("profile")
    profile_text = ""
    if prof and "error" not in prof:
        profile_text = profile.render_profile(prof)
        results_file("orders", report["timestamp"], ".profile-top.txt").write_text(profile_text + "\n")
        print("\n(diagnostics, not part of the benchmark table)\n" + profile_text, file=sys.stderr)
    elif prof:
        print(f"\nprofile failed: {prof['error']}", file=sys.stderr)
    write_json(
        results_file("orders", report["timestamp"], ".json"),
        {**report, "table": text, "profile_text": profile_text},
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
