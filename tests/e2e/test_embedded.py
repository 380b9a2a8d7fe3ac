"""The embedded default as a newcomer runs it: migrate, seed, `flask serve` (API + scheduler in one process)."""

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp_path: Path, demo_vendors: bool) -> Iterator[tuple[str, dict[str, str]]]:
    env = {**os.environ, "OMNISTOCK_INSTANCE_PATH": str(tmp_path), "OMNISTOCK_LOG_FORMAT": "text",
           "OMNISTOCK_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
           "OMNISTOCK_DEMO_VENDORS": "true" if demo_vendors else "false"}  # fmt: skip
    env.pop("OMNISTOCK_DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    keys_file = tmp_path / "keys.txt"
    subprocess.run(
        [*flask, "demo", "seed", "--keys-file", str(keys_file), "--staff-file", str(tmp_path / "staff.txt")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    keys = {}
    for line in keys_file.read_text().splitlines():
        role, _scope, key = line.split("\t")
        keys.setdefault(role, key)
    port = _free_port()
    proc = subprocess.Popen([*flask, "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready")
        yield base, keys
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    yield from _serve(tmp_path, demo_vendors=False)


@pytest.fixture
def served_with_vendors(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo as ./scripts/demo runs it: the Square POS and Shopify shop fakes inside the process."""
    yield from _serve(tmp_path, demo_vendors=True)


def test_the_embedded_service_serves_the_demo_and_runs_its_scheduled_jobs(
    served: tuple[str, dict[str, str]], httpserver: HTTPServer
) -> None:
    base, keys = served
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    ops = {"Authorization": f"Bearer {keys['ops']}"}
    shop = {"Authorization": f"Bearer {keys['storefront']}"}
    r = requests.post(base + "/api/v1/webhooks", json={"url": httpserver.url_for("/hook"), "secret": "x" * 20,
                                                       "event_types": ["order.created"]}, headers=ops, timeout=5)  # fmt: skip
    assert r.status_code == 201, r.text
    skus = requests.get(base + "/api/v1/skus", params={"limit": 1000}, headers=ops, timeout=5).json()["items"]
    avail = requests.get(base + "/api/v1/availability", headers=shop, timeout=5,
                         params={"skus": ",".join(s["code"] for s in skus[:20]), "lat": 51.51, "lon": -0.12}).json()  # fmt: skip
    in_stock = next(i["sku"] for i in avail["items"] if i["total_available"] > 0)
    order = requests.post(base + "/api/v1/orders", headers=shop, timeout=5, json={
        "lines": [{"sku": in_stock, "qty": 1}], "delivery": {"type": "ship", "postcode": "EC1A 1BB"}})  # fmt: skip
    assert order.status_code == 201, order.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not httpserver.log:
        time.sleep(0.2)
    assert httpserver.log, "the embedded scheduler never delivered the webhook"
    assert requests.get(base + "/api/swagger", timeout=5).status_code == 200


def test_the_demo_reconciles_its_pos_and_takes_its_web_orders_in_on_its_own(
    served_with_vendors: tuple[str, dict[str, str]],
) -> None:
    """The demo's planted differences: two adjusted, one discrepancy, one unknown item; two web orders."""
    base, keys = served_with_vendors
    ops = {"Authorization": f"Bearer {keys['ops']}"}
    deadline = time.monotonic() + 40
    feeds: dict[str, dict] = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        feeds = {
            f["code"]: f for f in requests.get(base + "/api/v1/feeds", headers=ops, timeout=5).json()["items"]
        }
        if len(feeds) == 2 and all(f["last_good_run_at"] for f in feeds.values()):
            break
        time.sleep(0.5)
    pos, web = feeds["pos-square"], feeds["web-shopify"]
    assert pos["status"] == "ok" and web["status"] == "ok", feeds
    runs = requests.get(
        base + "/api/v1/sync/runs", params={"feed": "pos-square", "limit": 100}, headers=ops, timeout=5
    )
    first = runs.json()["items"][-1]["counts"]
    assert (first["adjusted"], first["discrepancies"], first["quarantined"]) == (2, 1, 1), first
    assert pos["open_discrepancies"] == 1 and pos["open_quarantine"] == 1
    orders = requests.get(base + "/api/v1/sync/orders", headers=ops, timeout=5).json()["items"]
    assert [o["status"] for o in orders] == ["placed", "placed"], orders


def test_the_demo_counter_is_alive_for_the_printed_staff_sign_in(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """A printed staff sign-in opens its store's queue, with pickups in every tab and ready codes that work."""
    base, _keys = served
    rows = [line.split("\t") for line in (tmp_path / "staff.txt").read_text().splitlines()]
    user, store, password = next(r for r in rows if r[0] != "ready")
    codes = [(r[2].split()[1], r[2].split()[3]) for r in rows if r[0] == "ready" and r[1] == store]
    assert len({r[1] for r in rows if r[0] != "ready"}) == len([r for r in rows if r[0] != "ready"]) >= 8
    browser = requests.Session()
    form = browser.get(base + "/sign-in", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:500]
    signed = browser.post(base + "/sign-in", timeout=5, data={"username": user, "password": password,
                                                            "csrf_token": token.group(1), "next": ""})  # fmt: skip
    assert signed.url == f"{base}/pickup/{store}", signed.url
    for tab in ("to_pick", "ready", "overdue", "collected_today"):
        page = browser.get(f"{base}/pickup/{store}", params={"tab": tab}, timeout=5)
        assert page.status_code == 200 and 'class="queue"' in page.text, (tab, page.text[:300])
    assert codes, rows
    # A printed code hands its pickup over through the same API a store app uses.
    ops = {"Authorization": f"Bearer {_keys['ops']}"}
    order, code = codes[0]
    found = requests.get(base + "/api/v1/pickups/lookup", params={"scan": order}, headers=ops, timeout=5)
    assert found.status_code == 200 and found.json()["status"] == "ready_for_pickup", found.text
    done = requests.post(f"{base}/api/v1/pickups/{found.json()['id']}/collect", json={"code": code}, headers=ops,
                         timeout=5)  # fmt: skip
    assert done.status_code == 200 and done.json()["status"] == "collected", done.text
