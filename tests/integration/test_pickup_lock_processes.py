"""The pickup-code lock holds across app processes: three gunicorn servers (one gthread worker of
8 threads each, so every guess is in the database at once) over one PostgreSQL database, and 24
wrong codes for one ready pickup sent together through all three. The count lives in the
fulfilment row under a row lock, so exactly PICKUP_MAX_TRIES-1 guesses are told "wrong", the
rest "locked", and the store hears of the lock once. PostgreSQL only (SQLite has one writer)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.db import read_only, unit_of_work, utcnow
from app.models import Fulfilment, OutboxEvent
from app.services import keys, ledger
from tests.conftest import Api

pytestmark = [pytest.mark.parametrize("backend", ["postgresql"]), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
V1 = "/api/v1"
SERVERS = 3
THREADS = 8  # per server: 3 x 8 request threads, so 24 guesses are all in flight together
GUESSES = 24
MAX_TRIES = 5  # set in every server's environment, so the test does not rest on the default
WRONG = "AAAAAA"  # in the code alphabet, never a real code (a code has 148 million values)
LOCS: list[dict[str, Any]] = [{"code": "ST-A", "lat": 51.512, "lon": -0.124}]


@dataclass(frozen=True)
class Answer:
    port: int
    status: int
    body: dict[str, Any]


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _request(port: int, method: str, path: str, key: str, body: Any = None, timeout: float = 30) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
        r = conn.getresponse()
        raw = r.read()
        return Answer(port, r.status, json.loads(raw) if raw else {})
    finally:
        conn.close()


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


@pytest.fixture(scope="module")
def servers(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three gunicorn servers on 127.0.0.1 over the test database, shared by this module's tests
    (starting them is most of the run); their ports. One secret for all, so a code issued by one
    hashes the same in every other. Tests empty the tables in between: the servers cache no ids
    the pickup routes use, and the test profile caches no API keys."""
    tmp_path = tmp_path_factory.mktemp("pickup-servers")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNISTOCK_", "GUNICORN_"))}
    env.update(
        PYTHONPATH=str(ROOT), OMNISTOCK_PROFILE="test", OMNISTOCK_DATABASE_URL=pg_database,
        OMNISTOCK_SECRET_KEY="pickup-lock-processes-" + "k" * 32, OMNISTOCK_PICKUP_MAX_TRIES=str(MAX_TRIES),
        OMNISTOCK_LOG_LEVEL="WARNING", OMNISTOCK_LOG_FORMAT="text",
        GUNICORN_WORKERS="1", GUNICORN_WORKER_CLASS="gthread", GUNICORN_THREADS=str(THREADS),
    )  # fmt: skip
    ports = _free_ports(SERVERS)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i, port in enumerate(ports):
            instance = tmp_path / f"server-{i}"
            log = tmp_path / f"server-{i}.log"
            with log.open("wb") as out:
                p = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "app:create_app()"],
                    cwd=ROOT, env={**env, "OMNISTOCK_INSTANCE_PATH": str(instance), "GUNICORN_BIND": f"127.0.0.1:{port}"},
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            procs.append((p, log))
        deadline = time.monotonic() + 60
        waiting = set(ports)
        while waiting and time.monotonic() < deadline:
            for (p, log), port in zip(procs, ports, strict=True):
                assert p.poll() is None, (
                    f"server on {port} exited early:\n{log.read_text(errors='replace')[-3000:]}"
                )
                if port in waiting and _ready(port):
                    waiting.discard(port)
            time.sleep(0.1)
        assert not waiting, f"servers on {sorted(waiting)} never became ready"
        yield ports
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
        for _, log in procs:
            # gunicorn logs a worker's unhandled error here; a clean run leaves nothing alarming.
            text_ = log.read_text(errors="replace")
            assert "Traceback" not in text_, f"server log {log.name}:\n{text_[-5000:]}"


@dataclass(frozen=True)
class Desk:
    """The store, its staff key and a way to place a pickup order there."""

    staff: str
    place: Callable[[], int]


@pytest.fixture
def desk(app: Flask, client: FlaskClient, network: Callable[..., None], receive: Callable[..., Any]) -> Desk:
    network(LOCS, ["TEE"], channels=("web",))
    receive(("TEE", "ST-A", 20))
    with unit_of_work(app.extensions["session_factory"]) as session:
        _, staff = keys.create_key(session, role="staff", name="counter", locations=("ST-A",))
        _, front = keys.create_key(session, role="storefront", name="shop")
    shop = Api(client, front)

    def place() -> int:
        r = shop.post(f"{V1}/orders", {"channel": "web", "customer_ref": "cust-1", "lines": [{"sku": "TEE", "qty": 1}],
                                       "delivery": {"type": "pickup", "location": "ST-A"}})  # fmt: skip
        assert r.status_code == 201, r.json
        return next(int(f["id"]) for f in r.json["fulfilments"] if f["type"] == "pickup")

    return Desk(staff, place)


def _make_ready(port: int, staff: str, fid: int) -> str:
    """Pick and mark ready through one server; the code it answers."""
    assert _request(port, "POST", f"{V1}/pickups/{fid}/pick", staff).status == 200
    r = _request(port, "POST", f"{V1}/pickups/{fid}/ready", staff)
    assert r.status == 200, r.body
    return str(r.body["code"])


def _guess_together(ports: list[int], staff: str, fids: list[int]) -> list[tuple[int, Answer]]:
    """Send one wrong code per entry of fids, round-robin over the servers, all released at once by
    a barrier once every connection is open; (fid, answer) per guess."""
    barrier = threading.Barrier(len(fids))
    out: list[tuple[int, Answer]] = []
    lock = threading.Lock()

    def guess(i: int, fid: int) -> None:
        port = ports[i % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
            barrier.wait(timeout=30)
            conn.request("POST", f"{V1}/pickups/{fid}/collect", body=json.dumps({"code": WRONG}),
                         headers={"Authorization": f"Bearer {staff}", "Content-Type": "application/json"})  # fmt: skip
            r = conn.getresponse()
            raw = r.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"raw": raw[:500].decode(errors="replace")}
            answer = Answer(port, r.status, body)
        except Exception as exc:  # a dropped connection is an answer the test must see
            answer = Answer(port, -1, {"error": repr(exc)})
        finally:
            conn.close()
        with lock:
            out.append((fid, answer))

    threads = [threading.Thread(target=guess, args=(i, fid)) for i, fid in enumerate(fids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(out) == len(fids), "a guess never came back"
    return out


def _row(app: Flask, fid: int) -> Fulfilment:
    with read_only(app.extensions["session_factory"]) as session:
        return session.get_one(Fulfilment, fid)


def _locked_events(app: Flask) -> list[dict[str, Any]]:
    with read_only(app.extensions["session_factory"]) as session:
        stmt = (
            select(OutboxEvent).where(OutboxEvent.type == "fulfilment.pickup_locked").order_by(OutboxEvent.id)
        )
        return [dict(e.payload) for e in session.scalars(stmt)]


def _check_locked(fid: int, answers: list[Answer], app: Flask) -> datetime:
    """Exactly MAX_TRIES-1 answers are wrong_pickup_code, counting down; every other is
    pickup_locked; the row is locked with its count reset. The lock's end."""
    statuses = Counter(a.status for a in answers)
    assert statuses == {422: MAX_TRIES - 1, 409: len(answers) - (MAX_TRIES - 1)}, (fid, answers)
    wrong = [a.body for a in answers if a.status == 422]
    assert {b["code"] for b in wrong} == {"wrong_pickup_code"}
    # Each wrong try saw the one before it: the countdown has no repeats and no gaps.
    assert sorted(b["tries_left"] for b in wrong) == list(range(1, MAX_TRIES)), wrong
    locked = [a.body for a in answers if a.status == 409]
    assert {b["code"] for b in locked} == {"pickup_locked"}, locked
    assert all(b["locked_until"] for b in locked)
    row = _row(app, fid)
    assert row.locked_until is not None and row.locked_until > utcnow()
    assert row.code_tries == 0, "the locking try resets the count"
    assert {datetime.fromisoformat(b["locked_until"]) for b in locked} == {row.locked_until}
    return row.locked_until


def _unlock(app: Flask, fid: int) -> None:
    """The lock's time has passed (as PICKUP_LOCK_MINUTES cannot be set below a minute)."""
    with unit_of_work(app.extensions["session_factory"]) as session:
        session.execute(text("UPDATE fulfilments SET locked_until = now() - interval '1 second' WHERE id = :f"),
                        {"f": fid})  # fmt: skip


def _verify(app: Flask) -> None:
    with read_only(app.extensions["session_factory"]) as session:
        assert ledger.verify(session) == []


def test_wrong_codes_from_three_processes_at_once_lock_the_pickup_exactly_once(
    app: Flask, desk: Desk, servers: list[int]
) -> None:
    fid = desk.place()
    code = _make_ready(servers[0], desk.staff, fid)
    started = time.monotonic()
    answers = [a for _, a in _guess_together(servers, desk.staff, [fid] * GUESSES)]
    took = time.monotonic() - started
    assert {a.port for a in answers} == set(servers), "every process answered guesses"
    _check_locked(fid, answers, app)
    events = _locked_events(app)
    assert len(events) == 1, events
    assert events[0]["fulfilment_id"] == fid and events[0]["location"] == "ST-A"
    assert datetime.fromisoformat(events[0]["locked_until"]) == _row(app, fid).locked_until

    # Locked: the right code is refused too, by every process.
    for port in servers:
        right = _request(port, "POST", f"{V1}/pickups/{fid}/collect", desk.staff, {"code": code})
        assert (right.status, right.body.get("code")) == (409, "pickup_locked"), right
    assert _row(app, fid).status == "ready_for_pickup"

    _unlock(app, fid)
    done = _request(servers[-1], "POST", f"{V1}/pickups/{fid}/collect", desk.staff, {"code": code})
    assert done.status == 200, done.body
    assert done.body["status"] == "collected"
    assert len(_locked_events(app)) == 1, "no second lock event"
    _verify(app)
    assert took < 20, f"the guesses took {took:.1f} s"


def test_two_pickups_guessed_at_once_each_keep_their_own_count(
    app: Flask, desk: Desk, servers: list[int]
) -> None:
    """Pickup one gets 16 wrong codes and locks; pickup two, guessed in the same burst on the same
    processes, gets 3: it is told its own tries left and stays open for its right code."""
    one, two = desk.place(), desk.place()
    code_one = _make_ready(servers[0], desk.staff, one)
    code_two = _make_ready(servers[1], desk.staff, two)
    few = MAX_TRIES - 2
    # Interleave the two pickups' guesses so each process serves both.
    fids = [one, two] * few + [one] * (16 - few)
    answers = _guess_together(servers, desk.staff, fids)
    of_one = [a for f, a in answers if f == one]
    of_two = [a for f, a in answers if f == two]
    assert len(of_one) == 16 and len(of_two) == few

    _check_locked(one, of_one, app)
    assert [a.status for a in of_two] == [422] * few, of_two
    assert sorted(a.body["tries_left"] for a in of_two) == list(range(MAX_TRIES - few, MAX_TRIES)), of_two
    row_two = _row(app, two)
    assert (row_two.code_tries, row_two.locked_until) == (few, None)
    events = _locked_events(app)
    assert [e["fulfilment_id"] for e in events] == [one], events

    # Pickup two is handed over while pickup one is still locked.
    got = _request(servers[2], "POST", f"{V1}/pickups/{two}/collect", desk.staff, {"code": code_two})
    assert got.status == 200, got.body
    still = _request(servers[1], "POST", f"{V1}/pickups/{one}/collect", desk.staff, {"code": code_one})
    assert (still.status, still.body.get("code")) == (409, "pickup_locked")
    _unlock(app, one)
    assert (
        _request(servers[0], "POST", f"{V1}/pickups/{one}/collect", desk.staff, {"code": code_one}).status
        == 200
    )
    _verify(app)
