# ruff: noqa: F811 - pytest fixtures are imported, then named as arguments
"""The ops API over sync: feeds with their health, configuring them, runs now and their history,
discrepancies accepted or rejected, quarantine resolved or dismissed, and the per-feed metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from app.db import transaction, utcnow
from app.models_sync import SyncRun
from app.sync.fakes.csvfile import FakeCsvHost
from tests.conftest import Api
from tests.sync.source_fixtures import (  # noqa: F401 - fixtures
    FEED,
    csv_feed,
    csv_host,
    publish,
    sell,
)

Publish = Callable[..., bytes]
OnHand = Callable[[str, str], int]


def _csv(code: str, url: str, **kw: Any) -> dict[str, Any]:
    return {"code": code, "name": code, "role": "source", "connector": "csv", "base_url": url,
            "locations": {"A": "ST-A"}, "match_items_by_sku": True, **kw}  # fmt: skip


def _feeds(ops: Api) -> dict[str, dict[str, Any]]:
    r = ops.get("/api/v1/feeds")
    assert r.status_code == 200, r.json
    return {f["code"]: f for f in r.json["items"]}


def _run(ops: Api, code: str, **body: Any) -> dict[str, Any]:
    r = ops.post(f"/api/v1/feeds/{code}/run", body)
    assert r.status_code == 200, r.json
    return dict(r.json)


def test_the_feed_list_tells_each_feeds_health_last_run_and_open_counts(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, ops: Api, receive: Callable[..., Any]
) -> None:
    receive(("MUG", "ST-B", 50))
    publish([("TEE", "A", 2), ("MUG", "B", 10), ("GHOST", "A", 1)])
    csv_feed.put("/old.csv", b"sku,location,on_hand\nCAP,A,1\n")
    for body in (_csv("broken", csv_feed.url + "/missing.csv"), _csv("idle", csv_feed.url + "/x.csv"),
                 _csv("old", csv_feed.url + "/old.csv", locations={"A": "ST-C"})):  # fmt: skip
        assert ops.post("/api/v1/feeds", body).status_code == 201
    assert _feeds(ops)[FEED]["status"] == "never_run"
    assert _run(ops, FEED)["status"] == "succeeded"
    failed = _run(ops, "broken")
    assert failed["status"] == "failed" and "404" in failed["error"], failed
    assert _run(ops, "old")["status"] == "succeeded"
    long_ago = utcnow() - timedelta(hours=2)  # past three of its 300 s cycles
    transaction(
        app.extensions["session_factory"],
        lambda s: s.execute(
            update(SyncRun).where(SyncRun.status == "succeeded", SyncRun.id == 3)
            .values(started_at=long_ago, finished_at=long_ago)
        ),
    )  # fmt: skip
    feeds = _feeds(ops)
    assert {c: f["status"] for c, f in feeds.items()} == {
        FEED: "ok", "broken": "failing", "idle": "never_run", "old": "stale",
    }  # fmt: skip
    ok = feeds[FEED]
    assert ok["last_run"]["status"] == "succeeded" and ok["last_run"]["counts"]["adjusted"] == 1, ok
    assert (ok["open_discrepancies"], ok["open_quarantine"]) == (1, 1)
    assert ok["seconds_since_good_run"] is not None and ok["seconds_since_good_run"] < 60
    assert (
        feeds["broken"]["last_run"]["error"] == failed["error"]
        and feeds["broken"]["last_good_run_at"] is None
    )
    assert feeds["old"]["seconds_since_good_run"] >= 7000
    assert feeds["idle"]["last_run"] is None


def test_posting_a_feed_creates_it_replaces_it_and_refuses_bad_config_by_field(
    app: Flask, csv_feed: FakeCsvHost, ops: Api
) -> None:
    body = _csv("second", csv_feed.url + "/second.csv")
    created = ops.post("/api/v1/feeds", body)
    assert created.status_code == 201, created.json
    assert created.json["locations"] == {"A": "ST-A"} and created.json["status"] == "never_run"
    assert _run(ops, "second")["status"] == "failed"  # nothing at that URL yet
    replaced = ops.post("/api/v1/feeds", {**body, "name": "Second store file", "locations": {"B": "ST-B"}})
    assert replaced.status_code == 200, replaced.json
    assert replaced.json["name"] == "Second store file" and replaced.json["locations"] == {"B": "ST-B"}
    assert replaced.json["last_run"]["status"] == "failed", "its history is kept"
    shopify = {"code": "shop", "name": "shop", "connector": "shopify", "base_url": "http://127.0.0.1:9",
               "credentials": {"token": "SHOP_TOKEN"}, "locations": {"gid://shopify/Location/1": "ST-A"}}  # fmt: skip
    for bad, field in [
        ({**shopify, "role": "source"}, "role"),  # Shopify is a channel, never a stock source
        ({**shopify, "role": "channel"}, "channel"),  # a channel feed names its channel
        (_csv("third", csv_feed.url + "/t.csv", locations={"store-9": "ST-9"}), "locations.store-9"),
        (_csv("third", csv_feed.url + "/t.csv", settings={"every_s": 1}), "settings.every_s"),
        (_csv("third", csv_feed.url + "/t.csv", surprise=True), "surprise"),
    ]:
        r = ops.post("/api/v1/feeds", bad)
        assert r.status_code == 422, (bad, r.json)
        assert [e["field"] for e in r.json["errors"]] == [field], r.json
        assert ops.get(f"/api/v1/feeds/{bad['code']}").status_code == 404, "nothing configured"


def test_runs_are_listed_newest_first_in_pages_and_each_has_its_report(
    csv_feed: FakeCsvHost, publish: Publish, ops: Api
) -> None:
    publish([("TEE", "A", 2), ("GHOST", "A", 1)])
    ids = [_run(ops, FEED)["id"] for _ in range(3)]
    first = ops.get(f"/api/v1/sync/runs?feed={FEED}&limit=2")
    assert first.status_code == 200, first.json
    assert [r["id"] for r in first.json["items"]] == ids[:0:-1] and first.json["next_cursor"]
    rest = ops.get(f"/api/v1/sync/runs?feed={FEED}&limit=2&cursor={first.json['next_cursor']}")
    assert [r["id"] for r in rest.json["items"]] == ids[:1] and rest.json["next_cursor"] is None
    assert ops.get("/api/v1/sync/runs?status=failed").json["items"] == []
    detail = ops.get(f"/api/v1/sync/runs/{ids[0]}")
    assert detail.status_code == 200, detail.json
    report = detail.json["report"]
    assert report["adjusted"][0]["delta"] == 2 and report["quarantine_sample"][0]["item_ref"] == "GHOST", (
        report
    )
    assert report["connector"]["rows"] == 2 and detail.json["counts"]["quarantined"] == 1
    assert ops.get("/api/v1/sync/runs/999999").status_code == 404
    assert ops.post("/api/v1/feeds/nope/run", {}).status_code == 404
    r = ops.post(f"/api/v1/feeds/{FEED}/run", {"kind": "push"})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "kind", r.json


@pytest.fixture
def held(
    csv_feed: FakeCsvHost, publish: Publish, ops: Api, receive: Callable[..., Any]
) -> list[dict[str, Any]]:
    """Two open discrepancies: MUG at ST-B (ledger 50, file 10) and CAP at ST-A (ledger 30, file 3)."""
    receive(("MUG", "ST-B", 50), ("CAP", "ST-A", 30))
    publish([("MUG", "B", 10), ("CAP", "A", 3)])
    assert _run(ops, FEED)["counts"]["discrepancies_new"] == 2
    items = ops.get(f"/api/v1/sync/discrepancies?feed={FEED}").json["items"]
    return sorted(items, key=lambda d: str(d["sku"]))


def test_accepting_applies_the_held_drift_to_the_ledger_as_it_is_then_and_only_once(
    held: list[dict[str, Any]], ops: Api, on_hand: OnHand, sell: Callable[[str, str, int], None]
) -> None:
    mug = next(d for d in held if d["sku"] == "MUG")
    assert (mug["drift"], mug["status"]) == (-40, "open")
    sell("MUG", "ST-B", 2)  # a sale between the difference being found and ops deciding
    r = ops.post(f"/api/v1/sync/discrepancies/{mug['id']}/accept", {"note": "stock take confirmed"})
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["applied_delta"], r.json["note"]) == (
        "accepted",
        -40,
        "stock take confirmed",
    )
    assert r.json["decided_by"].startswith("ops:") and r.json["decided_at"]
    assert on_hand("MUG", "ST-B") == 8, "the drift lands on the ledger as it is now: the sale is kept"
    for verb in ("accept", "reject"):
        again = ops.post(f"/api/v1/sync/discrepancies/{mug['id']}/{verb}", {})
        assert again.status_code == 409 and again.json["code"] == "already_decided", again.json
    assert on_hand("MUG", "ST-B") == 8
    assert ops.post("/api/v1/sync/discrepancies/999999/accept", {}).status_code == 404
    r = _run(ops, FEED)  # the same file again: its as_of predates the sale, so MUG waits
    assert r["counts"]["deferred"] == 1 and r["counts"].get("discrepancies_new", 0) == 0, r["counts"]
    assert on_hand("MUG", "ST-B") == 8
    listed = ops.get(f"/api/v1/sync/discrepancies?feed={FEED}&status=accepted").json["items"]
    assert [d["id"] for d in listed] == [mug["id"]]


def test_rejecting_keeps_the_ledger_as_it_is(held: list[dict[str, Any]], ops: Api, on_hand: OnHand) -> None:
    newest, oldest = sorted((d["id"] for d in held), reverse=True)
    page = ops.get("/api/v1/sync/discrepancies?limit=1")
    assert [d["id"] for d in page.json["items"]] == [newest] and page.json["next_cursor"], page.json
    rest = ops.get(f"/api/v1/sync/discrepancies?limit=1&cursor={page.json['next_cursor']}")
    assert [d["id"] for d in rest.json["items"]] == [oldest] and rest.json["next_cursor"] is None, rest.json
    cap = next(d for d in held if d["sku"] == "CAP")
    r = ops.post(f"/api/v1/sync/discrepancies/{cap['id']}/reject", {"note": "the file is wrong"})
    assert r.status_code == 200 and r.json["status"] == "rejected" and r.json["applied_delta"] is None, r.json
    assert on_hand("CAP", "ST-A") == 30
    assert ops.post(f"/api/v1/sync/discrepancies/{cap['id']}/reject", {}).status_code == 409
    open_now = ops.get(f"/api/v1/sync/discrepancies?feed={FEED}").json["items"]
    assert [d["sku"] for d in open_now] == ["MUG"]
    assert [d["id"] for d in ops.get("/api/v1/sync/discrepancies?status=rejected").json["items"]] == [
        cap["id"]
    ]


def test_quarantine_is_listed_resolved_and_dismissed(
    csv_feed: FakeCsvHost, publish: Publish, ops: Api, on_hand: OnHand
) -> None:
    publish([("TEE", "A", 1), ("GHOST", "A", 1), ("TEE-OLD", "B", 2)])
    _run(ops, FEED)
    items = {q["item_ref"]: q for q in ops.get("/api/v1/sync/quarantine").json["items"]}
    assert set(items) == {"GHOST", "TEE-OLD"} and items["GHOST"]["feed"] == FEED
    r = ops.post(
        f"/api/v1/sync/quarantine/{items['GHOST']['id']}/resolve", {"dismiss": True, "note": "test item"}
    )
    assert r.status_code == 200 and r.json["status"] == "resolved", r.json
    assert r.json["resolution"] == "dismissed (test item)"
    r = ops.post(f"/api/v1/sync/quarantine/{items['TEE-OLD']['id']}/resolve", {"sku": "TEE"})
    assert r.status_code == 200 and r.json["resolution"].startswith("mapped item TEE-OLD to TEE"), r.json
    r = ops.post(f"/api/v1/sync/quarantine/{items['GHOST']['id']}/resolve", {})
    assert r.status_code == 422, r.json
    bad_sku = ops.post(f"/api/v1/sync/quarantine/{items['GHOST']['id']}/resolve", {"sku": "NOPE"})
    assert bad_sku.status_code == 422 and bad_sku.json["errors"][0]["field"] == "sku", bad_sku.json
    assert ops.post("/api/v1/sync/quarantine/999999/resolve", {"dismiss": True}).status_code == 404
    assert ops.get("/api/v1/sync/quarantine").json["items"] == []
    again = _run(ops, FEED)
    assert again["counts"]["quarantined"] == 1, "GHOST is still sent, and still counted"
    assert on_hand("TEE", "ST-B") == 2
    resolved = ops.get("/api/v1/sync/quarantine?status=resolved").json["items"]
    ghost = next(q for q in resolved if q["item_ref"] == "GHOST")
    assert ghost["status"] == "resolved" and ghost["seen_count"] == 2, "a dismissed row stays dismissed"


def test_metrics_show_each_feeds_runs_and_what_waits_for_ops(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, ops: Api, receive: Callable[..., Any]
) -> None:
    receive(("MUG", "ST-B", 50))
    publish([("TEE", "A", 2), ("MUG", "B", 10), ("GHOST", "A", 1)])
    _run(ops, FEED)
    assert ops.post("/api/v1/feeds", _csv("broken", csv_feed.url + "/missing.csv")).status_code == 201
    _run(ops, "broken")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in (
        f'omnistock_sync_runs_total{{feed="{FEED}",outcome="succeeded"}} 1.0',
        'omnistock_sync_runs_total{feed="broken",outcome="failed"} 1.0',
        f'omnistock_sync_adjustments_total{{feed="{FEED}"}} 1.0',
        f'omnistock_sync_discrepancies_total{{feed="{FEED}"}} 1.0',
        f'omnistock_sync_quarantined_total{{feed="{FEED}"}} 1.0',
        f'omnistock_sync_rows_total{{feed="{FEED}"}} 3.0',
        f'omnistock_sync_open_discrepancies{{feed="{FEED}"}} 1.0',
        f'omnistock_sync_open_quarantine{{feed="{FEED}"}} 1.0',
    ):
        assert line in text, line
    assert f'omnistock_sync_seconds_since_good_run{{feed="{FEED}"}}' in text
    assert 'omnistock_sync_seconds_since_good_run{feed="broken"}' not in text, "it never had a good run"


def test_any_lists_every_status(
    app: Flask, client: Any, ops: Api, network: Callable[..., None], configure: Callable[..., None]
) -> None:
    """status=any lists every quarantine entry and discrepancy whatever its state; open is the default."""
    from app.models_sync import Feed, Quarantine

    network([{"code": "S1", "name": "S1", "kind": "store", "channels": ["web"]}], ["A"])
    configure(code="f", name="f", role="source", connector="csv", locations={"S1": "S1"})
    now = utcnow()

    def add(s: Any) -> None:
        fid = s.query(Feed).one().id
        for ref, status in (("x", "open"), ("y", "resolved")):
            s.add(Quarantine(feed_id=fid, kind="unknown_item", item_ref=ref, location_ref="S1", reason="r", raw={},
                             status=status, seen_count=1, first_seen_at=now, last_seen_at=now))  # fmt: skip

    transaction(app.extensions["session_factory"], add)
    listed = {q: [e["item_ref"] for e in ops.get("/api/v1/sync/quarantine" + q).json["items"]] for q in ("", "?status=any")}
    assert listed == {"": ["x"], "?status=any": ["y", "x"]}, listed
    assert ops.get("/api/v1/sync/discrepancies?status=any").status_code == 200
    assert ops.get("/api/v1/sync/quarantine?status=every").status_code == 422
