"""Pickup queue benchmark: a store's /pickup screen with 1,000 open pickups, beside a thin baseline.

A scratch PostgreSQL database of its own (omnistock_bench_pickup_<pid>, dropped at the end unless
--keep-db), migrated with `flask db upgrade` and seeded through the app's services: the demo
retailer (300 SKUs), deep stock at three stores, then 1,000 open pickups at the measured store
(to pick, being picked, ready, a few overdue), 2,000 closed ones there (collected, cancelled) and
250 open at each of two other stores, each placed by orders.place_order and moved by the counter's
services, so fulfilments, lines, reservations and movements are real; `flask ledger verify` must
be clean. Two gunicorn servers with the same settings serve:

* the service, `app:create_app()`: GET /pickup/<store>?tab=to_pick and ?tab=ready signed in as
  staff (the sign-in form's session cookie), GET /api/v1/locations/<store>/pickups with a staff key;
* the baseline, `bench.bench_pickup_queue:thin_app()`: Flask and one psycopg statement selecting
  the to_pick tab's 200 rows with their lines, rendered by a minimal Jinja template (no session,
  no tab counts, no ORM, no page shell).

It checks that page, API and baseline list the same orders in the same order, then at 1 and 4
clients runs rounds of the four targets (every other round in reverse order, so drift on the
machine hits all alike) and reports req/s, p50 and p99 per target, pooled over the rounds, and
p50 and p99 as a multiple of the baseline's. It only measures; nothing about speed is asserted.

    PYTHONPATH=. .venv/bin/python bench/bench_pickup_queue.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests

try:
    from bench.lib import client
    from bench.lib import report as rep
    from bench.lib import server as srv
except ImportError:  # run as a script without the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.lib import client
    from bench.lib import report as rep
    from bench.lib import server as srv
from bench.lib.load import Clients, CpuMeter, Sample, percentile, summarise
from bench.lib.server import BenchError, Server, log

STORE, OTHER_STORES = "ST-COVENT", ("ST-CAMDEN", "ST-SHOREDITCH")
SKUS, RNG_SEED, BATCH, SEED_PROCS = 300, 20240612, 250, 2  # BATCH: orders per seeding transaction
OPEN = {"to_pick": 500, "picking": 180, "ready": 300, "overdue": 20}  # the 1,000 open pickups at STORE
CLOSED = {"collected": 1200, "cancelled": 800}  # at STORE over the last ten days (quick: a tenth)
OTHER_OPEN = 250  # at each of OTHER_STORES (quick: a tenth)
USERNAME, ROWS = "bench-counter", 200  # the page shows at most 200 rows of a tab
TARGETS = ("thin", "page_to_pick", "page_ready", "api")
PATHS = {
    "thin": f"/thin/{STORE}", "page_to_pick": f"/pickup/{STORE}?tab=to_pick",
    "page_ready": f"/pickup/{STORE}?tab=ready", "api": f"/api/v1/locations/{STORE}/pickups?tab=to_pick&limit={ROWS}",
}  # fmt: skip
ORDER_REF = re.compile(rb'">#(\d+)</a></td>')  # the order column of a queue row (page and thin alike)
AGO = {"to_pick": (60, 1800), "picking": (1200, 2400), "ready": (7200, 172800), "overdue": (86400, 97200)}
Plan = list[tuple[str, str, datetime, tuple[tuple[str, int], ...]]]  # store, fate, placed at, lines


# ----------------------------------------------------------------------------- seeding
def app_config(db_url: str, secret: str, instance: str) -> dict[str, Any]:
    from app.settings import load_config

    return load_config({"DATABASE_URL": db_url, "SECRET_KEY": secret, "INSTANCE_PATH": instance}, environ={})


def seed(db_url: str, secret: str, instance: str, quick: bool) -> dict[str, Any]:
    """Retailer, stock, staff account and key through the app's services, then the pickups."""
    from sqlalchemy import select

    from app import demo
    from app.db import make_engine, make_session_factory, unit_of_work, utcnow
    from app.domain.ledger import Deltas, Kind
    from app.models import Sku
    from app.services import catalog, keys, ledger, staff
    from app.services.pickup import bins

    engine = make_engine(app_config(db_url, secret, instance))
    rng, now, password = random.Random(RNG_SEED), utcnow(), secrets.token_urlsafe(16)
    with unit_of_work(make_session_factory(engine)) as s:
        demo.seed(s, sku_count=SKUS)
        sku_ids = dict(s.execute(select(Sku.code, Sku.id).order_by(Sku.code)).tuples().all())
        codes, ids = list(sku_ids), catalog.location_ids(s, [STORE, *OTHER_STORES])
        legs = [ledger.Leg(Kind.RECEIPT, sku_ids[c], ids[loc], 400, Deltas(on_hand=400), source="bench",
                           external_ref=f"bench:{c}:{loc}") for c in codes for loc in ids]  # fmt: skip
        ledger.record(s, legs, now)
        bins.set_bins(s, STORE, [(c, f"{chr(65 + i // 25)}-{i % 25 + 1:02d}") for i, c in enumerate(codes)])
        staff.create_user(
            s, username=USERNAME, display_name="Bench", password=password, location_codes=[STORE]
        )
        _, key = keys.create_key(s, role="staff", name="bench pickup", locations=[STORE])
    engine.dispose()
    share = 10 if quick else 1
    fates = [(STORE, f) for f, n in OPEN.items() for _ in range(n)]
    fates += [(STORE, f) for f, n in CLOSED.items() for _ in range(n // share)]
    fates += [(store, "to_pick") for store in OTHER_STORES for _ in range(OTHER_OPEN // share)]
    rng.shuffle(fates)
    log(f"seeding {len(fates)} pickups: {sum(OPEN.values())} open at {STORE}, {sum(CLOSED.values()) // share} closed "
        f"there, {OTHER_OPEN // share} open at each of {', '.join(OTHER_STORES)}; {SEED_PROCS} processes")  # fmt: skip
    # Each seeding process orders from its own half of the SKUs: their stock locks never meet.
    plans: list[Plan] = [[] for _ in range(SEED_PROCS)]
    for n, (store, fate) in enumerate(fates):
        half = codes[n % SEED_PROCS :: SEED_PROCS]
        lines = tuple((c, rng.choice((1, 1, 2))) for c in rng.sample(half, rng.choice((1, 1, 2, 2, 3, 4))))
        low, high = AGO.get(fate, (0, 864000))
        plans[n % SEED_PROCS].append((store, fate, now - timedelta(seconds=rng.uniform(low, high)), lines))
    began = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(SEED_PROCS) as pool:  # leaving it ends the processes
        placed = sum(pool.starmap(place_plan, [(db_url, secret, instance, now, plan) for plan in plans]))
    with psycopg.connect(srv.libpq_dsn(engine.url.database or ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # stands in for autovacuum (off on this machine)
        counts: dict[str, int] = dict(conn.execute(
            "SELECT f.status, count(*) FROM fulfilments f JOIN locations l ON l.id = f.location_id "
            "WHERE l.code = %s AND f.type = 'pickup' GROUP BY 1 ORDER BY 1", (STORE,)).fetchall())  # fmt: skip
    return {"password": password, "key": key, "orders": placed, "other_open": OTHER_OPEN // share,
            "statuses": counts, "place_s": round(time.perf_counter() - began, 1)}  # fmt: skip


def place_plan(db_url: str, secret: str, instance: str, now: datetime, plan: Plan) -> int:
    """One seeding process: place its orders BATCH a transaction and move them to their fate."""
    from app.db import make_engine, make_session_factory, unit_of_work
    from app.domain.fulfilment import Status
    from app.services import orders
    from app.services.orders.lifecycle import transition
    from app.services.pickup import counter

    config = app_config(db_url, secret, instance)
    engine = make_engine(config)
    factory, minute = make_session_factory(engine), timedelta(minutes=1)
    rules, policy = counter.CounterRules.from_config(config), orders.policy_from_config(config)
    for start in range(0, len(plan), BATCH):
        with unit_of_work(factory) as s:
            for n, (store, fate, at, lines) in enumerate(plan[start : start + BATCH], start):
                cmd = orders.PlaceOrder(channel="web", lines=lines, delivery=orders.Delivery("pickup", location=store),
                                        customer_ref=f"bench-{os.getpid()}-{n}", customer_name=f"Customer {n}")  # fmt: skip
                order = orders.place_order(s, cmd, policy, now=at).order
                fid = next(f.id for f in order.fulfilments if f.type == "pickup")
                if fate == "cancelled":
                    transition(s, fid, Status.CANCELLED, now=at + 30 * minute)
                elif fate in ("picking", "ready", "collected"):
                    counter.start_picking(s, fid, rules, at + 5 * minute)
                    if fate != "picking":
                        ready = counter.mark_ready(s, fid, rules, at + 40 * minute)
                        if fate == "collected":
                            counter.collect(s, fid, ready.code, rules, min(at + 180 * minute, now))
        log(f"  seeding process {os.getpid()}: {min(start + BATCH, len(plan))}/{len(plan)} pickups")
    engine.dispose()
    return len(plan)


# ----------------------------------------------------------------------------- the thin baseline
THIN_SQL = """
WITH f AS (
    SELECT f.id, f.order_id, f.location_id, f.status, f.at_risk, f.promised_at
    FROM fulfilments f JOIN locations l ON l.id = f.location_id
    WHERE l.code = %(store)s AND f.type = 'pickup' AND f.status IN ('allocated', 'picking')
      AND (f.promised_at IS NULL OR f.promised_at >= %(now)s)
    ORDER BY f.promised_at, f.id LIMIT %(limit)s)
SELECT f.id, f.order_id, f.status, f.at_risk, f.promised_at, o.customer_name, o.customer_ref, fl.qty, s.name
FROM f JOIN orders o ON o.id = f.order_id
LEFT JOIN fulfilment_lines fl ON fl.fulfilment_id = f.id LEFT JOIN skus s ON s.id = fl.sku_id
LEFT JOIN sku_bins b ON b.sku_id = fl.sku_id AND b.location_id = f.location_id
ORDER BY f.promised_at, f.id, b.bin, s.code"""
THIN_TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pickup · {{ store }}</title></head>
<body><h1>To pick <span>({{ rows|length }})</span></h1><table><thead><tr><th>Order</th><th>Customer</th><th>Items</th>
<th>Status</th><th>Promised</th></tr></thead><tbody>
{% for p in rows %}<tr><td><a href="/pickup/{{ store }}/{{ p.id }}">#{{ p.order_id }}</a></td><td>{{ p.customer or "—" }}</td>
<td>{% for qty, name in p.lines %}{{ qty }} \u00d7 {{ name }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td>{{ p.status }}{% if p.at_risk %} <strong>at risk</strong>{% endif %}</td>
<td>{% if p.promised_at %}<time datetime="{{ p.promised_at.isoformat() }}">{{ p.promised_at.strftime("%H:%M") }}</time>{% else %}—{% endif %}</td></tr>
{% endfor %}</tbody></table></body></html>"""


def thin_app() -> Any:
    """The baseline WSGI app (gunicorn `bench.bench_pickup_queue:thin_app()`): OMNISTOCK_DATABASE_URL."""
    import threading

    from flask import Flask

    dsn = os.environ["OMNISTOCK_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    app, local = Flask(__name__), threading.local()
    template = app.jinja_env.from_string(THIN_TEMPLATE)  # compiled once, as Flask caches a template file

    def conn() -> psycopg.Connection[Any]:
        if getattr(local, "conn", None) is None or local.conn.closed:
            local.conn = psycopg.connect(dsn)
        return local.conn  # type: ignore[no-any-return]

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        conn().execute("SELECT 1")
        conn().rollback()
        return {"status": "ready"}

    @app.get("/thin/<store>")
    def to_pick(store: str) -> str:
        c = conn()
        try:
            found = c.execute(THIN_SQL, {"store": store, "now": datetime.now(UTC), "limit": ROWS}).fetchall()
        finally:
            c.rollback()
        rows: dict[int, dict[str, Any]] = {}
        for fid, oid, status, risk, promised, name, ref, qty, sku_name in found:
            row = rows.setdefault(fid, {"id": fid, "order_id": oid, "status": status, "at_risk": risk,
                                        "promised_at": promised, "customer": name or ref, "lines": []})  # fmt: skip
            if qty is not None:
                row["lines"].append((qty, sku_name))
        return template.render(store=store, rows=list(rows.values()))

    return app


# ----------------------------------------------------------------------------- the service's session
def sign_in(base_url: str, password: str) -> str:
    """The session cookie of the staff account, signed in through the form as a browser does."""
    with requests.Session() as http:
        form = http.get(f"{base_url}/sign-in", timeout=client.REQUEST_TIMEOUT_S)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text)
        if form.status_code != 200 or token is None:
            raise BenchError(f"GET /sign-in -> {form.status_code}, no csrf_token: {form.text[:500]}")
        form_data = {
            "username": USERNAME,
            "password": password,
            "csrf_token": token[1],
            "next": PATHS["page_to_pick"],
        }
        resp = http.post(
            f"{base_url}/sign-in", data=form_data, timeout=client.REQUEST_TIMEOUT_S, allow_redirects=False
        )
        cookie = http.cookies.get("omnistock_session")
        if resp.status_code != 303 or not cookie:
            raise BenchError(
                f"POST /sign-in -> {resp.status_code}, expected 303 and a cookie: {resp.text[:500]}"
            )
    return f"omnistock_session={cookie}"


def headers_for(target: str, cookie: str, key: str) -> dict[str, str]:
    """The page goes with the signed-in session's cookie, the API with the staff key, thin with neither."""
    return {"page_to_pick": {"Cookie": cookie}, "page_ready": {"Cookie": cookie},
            "api": {"Authorization": f"Bearer {key}"}}.get(target, {})  # fmt: skip


def listed(target: str, body: bytes) -> list[int]:
    """The order numbers a response lists, in order."""
    if target == "api":
        return [item["order_id"] for item in json.loads(body)["items"]]
    return [int(m) for m in ORDER_REF.findall(body)]


def check_same_rows(servers: dict[str, Server], cookie: str, key: str) -> dict[str, Any]:
    """Page to_pick, API and thin list the same orders in the same order; the ready page its 200."""
    seen = {}
    for target in TARGETS:
        with client.KeepAlive(servers[target].base_url, headers_for(target, cookie, key)) as http:
            resp = http.request("GET", PATHS[target])
        seen[target] = listed(target, resp.content) if resp.status_code == 200 else [resp.status_code]
    same = seen["page_to_pick"] == seen["api"] == seen["thin"] and len(seen["thin"]) == ROWS
    ok = same and len(seen["page_ready"]) == ROWS
    return {"ok": ok, "rows": {t: len(v) for t, v in seen.items()},
            "first": {t: v[:5] for t, v in seen.items()}}  # fmt: skip


# ----------------------------------------------------------------------------- cells
def measure(server: Server, target: str, headers: dict[str, str], clients: int, args: Any) -> dict[str, Any]:
    """One cell: a warm-up, then `--seconds` of `clients` closed-loop clients asking for one path."""
    path = PATHS[target]
    marker = b'"items"' if target == "api" else b"</table>"

    def step(http: client.KeepAlive, _tid: int, _seq: int) -> Sample:
        latency, result = client.timed_call(http, "GET", path)
        if isinstance(result, Exception) or result.status_code != 200 or marker not in result.content:
            failed = client.describe_failure("GET", path, result)
            return Sample(latency, getattr(result, "status_code", 0), error=failed)
        return Sample(latency, 200, units=len(result.content))

    conns = [client.KeepAlive(server.base_url, headers) for _ in range(clients)]
    try:
        driver = Clients(conns)
        if args.warmup > 0:
            driver.run(args.warmup, step)
        samples, wall, cpu = driver.run(args.seconds, step, CpuMeter(server.pid))
    finally:
        for c in conns:
            c.close()
    cell = asdict(summarise(target, clients, args.seconds, samples, wall, cpu, 200))
    cell["bytes_per_response"] = cell.pop("units") / cell["ok"] if cell["ok"] else 0.0
    cell["latencies_ms"] = sorted(s.latency_s * 1000.0 for s in samples if s.status == 200)
    return cell


def compare(cells: Sequence[dict[str, Any]], levels: Sequence[int]) -> list[dict[str, Any]]:
    """Per concurrency and target, the rounds pooled, and p50/p99 as a multiple of the thin baseline's."""
    rows = []
    for n in levels:
        pooled = {}
        for target in TARGETS:
            mine = [c for c in cells if c["phase"] == target and c["clients"] == n]
            lat = sorted(v for c in mine for v in c["latencies_ms"])
            wall = sum(c["wall_s"] for c in mine)
            pooled[target] = {"ok": len(lat), "per_s": len(lat) / wall if wall else 0.0,
                              "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}  # fmt: skip
        thin = pooled["thin"]
        for target, p in pooled.items():
            p.update(clients=n, target=target,
                     x_p50=p["p50_ms"] / thin["p50_ms"] if thin["p50_ms"] else 0.0,
                     x_p99=p["p99_ms"] / thin["p99_ms"] if thin["p99_ms"] else 0.0)  # fmt: skip
            rows.append(p)
    return rows


# ----------------------------------------------------------------------------- report
def render(report: dict[str, Any]) -> str:
    m, p, check, seeded = report["machine"], report["parameters"], report["check"] or {}, report["seed"] or {}
    machine_table = [
        *rep.machine_rows(m),
        ["gunicorn (both servers)", p["gunicorn"]],
        ["postgresql settings", " ".join(f"{k}={v}" for k, v in m.get("pg_settings", {}).items())],
        ["app/ uncommitted changes", rep.dirty_summary(m["dirty_app_files"])],
        ["load average at start / end", f"{m['loadavg_start']} / {m.get('loadavg_end', '?')}"],
    ]
    pooled = [
        [str(r["clients"]), r["target"], f"{r['per_s']:.1f}", rep.fmt_ms(r["p50_ms"]), rep.fmt_ms(r["p99_ms"]),
         f"{r['x_p50']:.2f}x", f"{r['x_p99']:.2f}x"]
        for r in report["comparison"]
    ]  # fmt: skip
    cells = [
        [c["phase"], str(c["clients"]), str(c["round"]), f"{c['ok_per_s']:.1f}", rep.fmt_ms(c["p50_ms"]),
         rep.fmt_ms(c["p90_ms"]), rep.fmt_ms(c["p99_ms"]), rep.fmt_ms(c["max_ms"]), str(c["ok"]), str(c["other"]),
         f"{c['bytes_per_response'] / 1024:.1f}", rep.fmt_cpu(c["cpu_pct"])]
        for c in report["cells"]
    ]  # fmt: skip
    same = "ok" if check.get("ok") else f"DIFFERENT {check.get('first')}"
    out = [
        f"## omnistock pickup queue benchmark {report['timestamp']} (commit {m['git_commit']})", "",
        *rep.md_table(["machine", "value"], machine_table, left=2), "", *rep.busy_warning(m),
        f"{STORE}: pickups by status {seeded.get('statuses')}; {seeded.get('orders')} orders placed in "
        f"{seeded.get('place_s')} s, {seeded.get('other_open')} of them open at each of {', '.join(OTHER_STORES)}; "
        f"ledger verify: {'clean' if report['ledger']['ok'] else 'MISMATCHES'}; same rows: {check.get('rows')} {same}",
        f"cells: {p['seconds']:g} s measured after {p['warmup']:g} s warm-up, closed-loop clients (one KeepAlive "
        f"connection each), {p['rounds']} rounds per concurrency, every other round in reverse order", "",
        *rep.md_table(["target", "request"], [[t, f"`GET {PATHS[t]}`"] for t in TARGETS], left=2), "",
        "### Per target, rounds pooled (p50 and p99 as a multiple of thin's)", "",
        *rep.md_table(["clients", "target", "req/s", "p50 ms", "p99 ms", "p50/thin", "p99/thin"], pooled, left=2), "",
        "### Cells (cpu% = % of one core: load generator / measured gunicorn / postgres)", "",
        *rep.md_table(CELL_HEADS, cells),
    ]  # fmt: skip
    if report["error_samples"]:
        out += ["", "errors (first occurrences, verbatim):"]
        out += [f"- {e}" for e in dict.fromkeys(report["error_samples"])]
    if not report["ledger"]["ok"]:
        out += ["", "ledger verify:", report["ledger"]["output"]]
    return "\n".join([*out, "", f"result: {'OK' if report['ok'] else 'FAILED'}"])


CELL_HEADS = ["target", "clients", "round", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "200", "other",
              "KiB/resp", "cpu% cli/app/pg"]  # fmt: skip


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--quick", action="store_true", help="a tenth of the closed pickups, 2.5 s cells, 0.5 s warm-ups")
    add("--seconds", type=float, default=None, help="measured seconds per cell (8; quick 2.5)")
    add("--warmup", type=float, default=None, help="warm-up seconds per cell (2; quick 0.5)")
    add("--rounds", type=int, default=2, help="rounds of the four targets per concurrency (2)")
    add("--clients", type=int, nargs="+", default=[1, 4], help="concurrency levels (1 4)")
    add("--workers", type=int, default=2, help="gunicorn worker processes, each server (2)")
    add("--threads", type=int, default=4, help="threads per gthread worker (4)")
    add("--keep-db", action="store_true", help="keep the scratch database (its name is logged)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (2.5 if args.quick else 8.0)
    args.warmup = (0.5 if args.quick else 2.0) if args.warmup is None else args.warmup
    if min(args.seconds, args.rounds, args.workers, args.threads, *args.clients) <= 0 or args.warmup < 0:
        parser.error("sizes must be positive and --warmup not negative")
    return args


def run(args: argparse.Namespace, db_name: str, instance: str) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "benchmark": "pickup_queue", "timestamp": stamp, "seed": None, "check": None, "cells": [],
        "parameters": {k: getattr(args, k) for k in ("quick", "seconds", "warmup", "rounds", "clients", "workers", "threads")},
        "machine": {**rep.machine(), "loadavg_start": rep.loadavg(), "dirty_app_files": rep.dirty_app_files()},
        "comparison": [], "error_samples": [], "ok": False,
    }  # fmt: skip
    url, secret = srv.app_db_url(db_name), secrets.token_hex(32)
    log(f"recreating database {db_name}")
    report["machine"]["postgresql"] = srv.recreate_database(db_name)
    log("migrating")
    srv.run_flask(["db", "upgrade"], url)
    report["seed"] = seeded = seed(url, secret, instance, args.quick)
    report["ledger"] = srv.ledger_verify(url)
    report["machine"]["pg_settings"] = rep.pg_settings(srv.libpq_dsn(db_name))
    env = {"OMNISTOCK_SECRET_KEY": secret, "OMNISTOCK_INSTANCE_PATH": instance}
    servers = {
        name: Server(args.workers, rep.results_file("pickup_queue", stamp, f".{name}.server.log"), db_url=url,
                     threads=args.threads, app_spec=spec, extra_env=env)
        for name, spec in (("thin", "bench.bench_pickup_queue:thin_app()"), ("service", "app:create_app()"))
    }  # fmt: skip
    report["parameters"]["gunicorn"] = servers["service"].describe()
    by_target = {t: servers["thin" if t == "thin" else "service"] for t in TARGETS}
    try:
        for name, server in servers.items():
            log(f"starting gunicorn ({name}) on {server.base_url} ({server.describe()})")
            server.start()
        cookie = sign_in(servers["service"].base_url, seeded["password"])
        report["check"] = check_same_rows(by_target, cookie, seeded["key"])
        log(f"same rows: {report['check']['rows']} -> {'ok' if report['check']['ok'] else 'DIFFERENT'}")
        for clients in args.clients:
            for r in range(1, args.rounds + 1):
                for target in TARGETS if r % 2 else TARGETS[::-1]:
                    headers = headers_for(target, cookie, seeded["key"])
                    cell = measure(by_target[target], target, headers, clients, args)
                    cell["round"] = r
                    report["cells"].append(cell)
                    report["error_samples"].extend(cell["error_samples"])
                    log(f"{target} x{clients} round {r}: {cell['ok_per_s']:.1f} req/s, "
                        f"p50 {cell['p50_ms']:.1f} ms, p99 {cell['p99_ms']:.1f} ms")  # fmt: skip
        for name, server in servers.items():
            if not server.alive():
                report["error_samples"].append(f"gunicorn ({name}) exited:\n{server.log_tail()}")
    finally:
        log("stopping gunicorn")
        for server in servers.values():
            server.stop()
    report["comparison"] = compare(report["cells"], args.clients)
    report["machine"]["loadavg_end"] = rep.loadavg()
    report["ok"] = (report["check"]["ok"] and report["ledger"]["ok"] and not report["error_samples"]
                    and all(c["other"] == 0 for c in report["cells"]))  # fmt: skip
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # run the clean-up below on a plain kill too
    db_name, began = f"omnistock_bench_pickup_{os.getpid()}", time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pickup-") as instance:
        try:
            report = run(args, db_name, instance)
        except BenchError as exc:
            log(f"benchmark aborted: {exc}")
            return 2
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            if args.keep_db:
                log(f"kept database {db_name}")
            else:
                srv.drop_database(db_name)
    report["elapsed_s"] = round(time.perf_counter() - began, 1)
    text = render(report)
    print(text)
    for cell in report["cells"]:
        cell.pop("latencies_ms")
    rep.write_json(rep.results_file("pickup_queue", report["timestamp"], ".json"), {**report, "table": text})
    logs = rep.rel(rep.results_file("pickup_queue", report["timestamp"], ".*.log"))
    log(f"done in {report['elapsed_s']:.0f} s; server logs: {logs}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
