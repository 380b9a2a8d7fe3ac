# ruff: noqa: F811 - pytest fixtures are imported, then named as arguments
"""CSV stock-file source end to end over real HTTP: the ledger converges to the file, a bad file is
refused whole, unknown rows wait in quarantine until ops map them, and a till sale recorded after
the file's as_of is never undone by it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from flask import Flask

from app.db import read_only
from app.services import ledger as ledger_service
from app.sync.fakes.csvfile import FakeCsvHost
from tests.conftest import Api
from tests.sync.source_fixtures import (  # noqa: F401 - fixtures
    FEED,
    csv_feed,
    csv_host,
    exported_now,
    ledger_state,
    publish,
    sell,
    stock_file,
)

Publish = Callable[..., bytes]
Run = Callable[..., dict[str, Any]]
OnHand = Callable[[str, str], int]


def _verify(app: Flask) -> None:
    with read_only(app.extensions["session_factory"]) as s:
        assert ledger_service.verify(s) == []


def _movements(ops: Api, sku: str, location: str) -> list[dict[str, Any]]:
    r = ops.get(f"/api/v1/stock/movements?sku={sku}&location={location}")
    assert r.status_code == 200, r.json
    return list(r.json["items"])


def test_small_differences_are_applied_and_a_large_one_waits_for_ops(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, run: Run, on_hand: OnHand,
    receive: Callable[..., Any], ops: Api,
) -> None:  # fmt: skip
    receive(("TEE", "ST-A", 10), ("MUG", "ST-B", 50))
    publish([("TEE", "A", 8), ("CAP", "A", 3), ("MUG", "B", 10), ("TEE", "B", 0)])
    r = run(FEED)
    assert r["status"] == "succeeded", r
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A")) == (8, 3), "small differences applied"
    assert on_hand("MUG", "ST-B") == 50, "a difference over the limit is not applied by itself"
    assert r["counts"]["adjusted"] == 2 and r["counts"]["discrepancies_new"] == 1, r["counts"]
    kinds = {m["kind"] for m in _movements(ops, "TEE", "ST-A")}
    assert "count_adjustment" in kinds, kinds
    (d,) = ops.get(f"/api/v1/sync/discrepancies?feed={FEED}").json["items"]
    assert (d["sku"], d["location"], d["vendor_qty"], d["ledger_qty"], d["drift"]) == (
        "MUG",
        "ST-B",
        10,
        50,
        -40,
    )
    again = run(FEED)
    assert again["status"] == "succeeded" and again["counts"].get("adjusted", 0) == 0, again
    assert ops.get(f"/api/v1/sync/discrepancies?feed={FEED}").json["items"][0]["id"] == d["id"], "still one"
    _verify(app)


def test_a_bad_file_fails_the_run_with_its_line_numbers_and_changes_nothing(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, run: Run, on_hand: OnHand, receive: Callable[..., Any],
) -> None:  # fmt: skip
    receive(("MUG", "ST-B", 50))
    publish([("TEE", "A", 4), ("MUG", "B", 10), ("GHOST", "A", 1)])
    assert run(FEED)["status"] == "succeeded"
    before = ledger_state(app)
    assert before["quarantine"] and before["discrepancies"], before
    levels = (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("MUG", "ST-B"))
    rows: list[tuple[str, str, Any]] = [("TEE", "A", 1), ("CAP", "A", 2), ("MUG", "B", 50), ("GHOST", "A", 2)]
    rows += [("CAP", "B", 1), ("TEE", "B", "n/a"), ("MUG", "A", 1), ("TEE", "A", 7)]  # lines 7 and 9
    publish(rows)
    r = run(FEED)
    assert r["status"] == "failed", r
    assert "line 7" in r["error"] and "line 9" in r["error"], r["error"]
    assert "n/a" in r["error"] and "on line 2" in r["error"], "each bad line says what is wrong with it"
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("MUG", "ST-B")) == levels
    assert ledger_state(app) == before, "ledger, quarantine and discrepancies are as they were"
    _verify(app)


def test_an_uploaded_file_through_the_cli_prints_its_report_and_a_failed_run_exits_1(
    app: Flask, csv_feed: FakeCsvHost, run: Run, on_hand: OnHand, tmp_path: Path,
) -> None:  # fmt: skip
    good = tmp_path / "good.csv"
    good.write_bytes(stock_file([("TEE", "A", 3), ("CAP", "B", 2)], exported_now()))
    cli = app.test_cli_runner()
    result = cli.invoke(args=["sync", "run", FEED, "--file", str(good)])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["status"] == "succeeded" and report["counts"]["adjusted"] == 2, report
    assert report["report"]["connector"]["rows"] == 2, "the report tells how the file was read"
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-B")) == (3, 2)
    assert not csv_feed.calls("GET"), "an uploaded file is not fetched from the feed's URL"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"sku,location,on_hand\nTEE,A,3\nCAP,B,two\n")
    result = cli.invoke(args=["sync", "run", FEED, "--file", str(bad)])
    assert result.exit_code == 1, result.output
    failed = orjson.loads(result.stdout)
    assert failed["status"] == "failed" and "line 3" in failed["error"], failed
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-B")) == (3, 2)


def test_an_uploaded_file_without_as_of_takes_the_one_given_on_the_command_line(
    app: Flask, csv_feed: FakeCsvHost, on_hand: OnHand, tmp_path: Path, sell: Callable[[str, str, int], None],
    receive: Callable[..., Any],
) -> None:  # fmt: skip
    """An export made before a till sale must not undo it, however late it is uploaded."""
    receive(("TEE", "ST-A", 5))
    exported = exported_now()
    sell("TEE", "ST-A", 1)
    path = tmp_path / "export.csv"
    path.write_bytes(b"sku,location,on_hand\nTEE,A,5\n")
    cli = app.test_cli_runner()
    result = cli.invoke(args=["sync", "run", FEED, "--file", str(path), "--as-of", exported.isoformat()])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    assert out["counts"]["deferred"] == 1 and out["report"]["connector"]["as_of_source"] == "option", out
    assert on_hand("TEE", "ST-A") == 4, "the sale after the export stands"
    result = cli.invoke(args=["sync", "run", FEED, "--file", str(path), "--as-of", "yesterday"])
    assert result.exit_code == 1 and "as_of" in result.output, result.output


def test_an_unknown_sku_waits_in_quarantine_with_its_row_until_mapped(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, run: Run, on_hand: OnHand, ops: Api,
) -> None:  # fmt: skip
    publish([("TEE", "A", 2), ("MUG-OLD", "A", 4), ("MUG-OLD", "B", 1)])
    r = run(FEED)
    assert r["status"] == "succeeded" and r["counts"]["quarantined"] == 2, r
    items = ops.get(f"/api/v1/sync/quarantine?feed={FEED}").json["items"]
    assert len(items) == 2, items
    q = next(i for i in items if i["location_ref"] == "A")
    assert (q["kind"], q["item_ref"], q["status"]) == ("unknown_item", "MUG-OLD", "open")
    assert q["raw"]["sku"] == "MUG-OLD" and q["raw"]["quantity"] == "4" and q["raw"]["line"] == 3, q["raw"]
    assert on_hand("MUG", "ST-A") == 0
    resolved = ops.post(f"/api/v1/sync/quarantine/{q['id']}/resolve", {"sku": "MUG"})
    assert resolved.status_code == 200, resolved.json
    assert resolved.json["status"] == "resolved" and "MUG" in resolved.json["resolution"]
    assert ops.get(f"/api/v1/sync/quarantine?feed={FEED}").json["items"] == [], (
        "the same item at the other store is cured by the same mapping"
    )
    r = run(FEED)
    assert r["status"] == "succeeded" and r["counts"].get("quarantined", 0) == 0, r
    assert (on_hand("MUG", "ST-A"), on_hand("MUG", "ST-B")) == (4, 1)
    _verify(app)


def test_an_unknown_location_waits_in_quarantine_until_mapped(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, run: Run, on_hand: OnHand, ops: Api,
) -> None:  # fmt: skip
    publish([("TEE", "A", 2), ("TEE", "C", 3), ("CAP", "C", 1)])
    r = run(FEED)
    assert r["status"] == "succeeded" and r["counts"]["quarantined"] == 2, r
    items = ops.get(f"/api/v1/sync/quarantine?feed={FEED}").json["items"]
    assert {(i["kind"], i["item_ref"], i["location_ref"]) for i in items} == {
        ("unknown_location", "TEE", "C"), ("unknown_location", "CAP", "C"),
    }  # fmt: skip
    for wrong in ("ST-Z", "ST-A"):  # no such location; one already fed from store A
        bad = ops.post(f"/api/v1/sync/quarantine/{items[0]['id']}/resolve", {"location": wrong})
        assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "location", bad.json
    ok = ops.post(f"/api/v1/sync/quarantine/{items[0]['id']}/resolve", {"location": "ST-C"})
    assert ok.status_code == 200, ok.json
    assert ops.get(f"/api/v1/sync/quarantine?feed={FEED}").json["items"] == []
    assert ops.get(f"/api/v1/feeds/{FEED}").json["locations"]["C"] == "ST-C"
    r = run(FEED)
    assert r["status"] == "succeeded" and r["counts"].get("quarantined", 0) == 0, r
    assert (on_hand("TEE", "ST-C"), on_hand("CAP", "ST-C"), on_hand("TEE", "ST-A")) == (3, 1, 2)
    _verify(app)


def test_a_till_sale_recorded_after_the_files_as_of_is_not_undone_and_converges_later(
    app: Flask, csv_feed: FakeCsvHost, publish: Publish, run: Run, on_hand: OnHand,
    sell: Callable[[str, str, int], None], receive: Callable[..., Any],
) -> None:  # fmt: skip
    receive(("TEE", "ST-A", 10), ("CAP", "ST-A", 5))
    publish([("TEE", "A", 10), ("CAP", "A", 5)])
    assert run(FEED)["counts"].get("adjusted", 0) == 0
    as_of = exported_now()  # the POS exports its file ...
    sell("TEE", "ST-A", 1)  # ... and a till sale reaches us while the file is on its way
    publish([("TEE", "A", 10), ("CAP", "A", 4)], as_of=as_of)
    r = run(FEED)
    assert r["status"] == "succeeded", r
    assert on_hand("TEE", "ST-A") == 9, "the file predates the sale: it must not add the unit back"
    assert r["counts"]["deferred"] == 1 and r["counts"]["adjusted"] == 1, r["counts"]
    assert on_hand("CAP", "ST-A") == 4, "a quiet key in the same file is still reconciled"
    publish([("TEE", "A", 9), ("CAP", "A", 4)])  # the next export includes the sale
    r = run(FEED)
    assert r["status"] == "succeeded" and r["counts"].get("adjusted", 0) == 0, r
    assert r["counts"].get("deferred", 0) == 0 and on_hand("TEE", "ST-A") == 9
    publish([("TEE", "A", 7), ("CAP", "A", 4)])  # two more sold at the till we never heard of
    assert run(FEED)["status"] == "succeeded"
    assert on_hand("TEE", "ST-A") == 7
    _verify(app)
