"""Square source end to end over real HTTP: the ledger converges to the POS, and a sale made while
a sync is paging is never counted twice or lost, whichever of the feed and the snapshot sees it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from app.db import read_only
from app.services import ledger as ledger_service
from app.sync.fakes.square import FakeSquare
from tests.sync.conftest import LOCATION_MAIN, LOCATION_SECOND, VARIATION_A, VARIATION_B

COUNTS = "/v2/inventory/counts/batch-retrieve"
CHANGES = "/v2/inventory/changes/batch-retrieve"


def _verify(app: Flask) -> None:
    with read_only(app.extensions["session_factory"]) as s:
        assert ledger_service.verify(s) == []


def test_first_run_brings_the_ledger_to_the_pos_and_a_replay_changes_nothing(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    first = run()
    assert first["status"] == "succeeded", first
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("TEE", "ST-B")) == (79, 12, 85)
    assert first["counts"]["adjusted"] == 3
    square_feed.advance(10)
    again = run()
    assert again["status"] == "succeeded", again
    assert again["counts"].get("adjusted", 0) == 0
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("TEE", "ST-B")) == (79, 12, 85)
    _verify(app)


def test_a_pos_sale_comes_in_from_the_change_feed_once(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    assert run()["status"] == "succeeded"
    square_feed.advance(10)
    square_feed.sell(VARIATION_A, LOCATION_MAIN, 2)
    square_feed.advance(10)
    r = run()
    assert r["counts"]["changes_imported"] == 1, r
    assert on_hand("TEE", "ST-A") == 77
    square_feed.advance(10)
    r = run()
    assert r["counts"].get("changes_imported", 0) == 0 and r["counts"].get("adjusted", 0) == 0, r
    assert on_hand("TEE", "ST-A") == 77
    _verify(app)


def _sale_during_snapshot(square: FakeSquare, *, before_page: bool) -> None:
    nth = square._pages_served.get(COUNTS, 0) + 1  # the next snapshot page this fake serves
    square.on_page(COUNTS, nth, lambda: square.sell(VARIATION_A, LOCATION_MAIN, 1), before=before_page)


def test_a_sale_after_the_snapshot_page_is_deferred_then_converges(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    assert run()["status"] == "succeeded"
    square_feed.advance(10)
    _sale_during_snapshot(square_feed, before_page=False)  # the page says 79, the feed then says -1
    r = run()
    assert r["status"] == "succeeded", r
    assert on_hand("TEE", "ST-A") == 78, "the sale is counted once, and the stale 79 is not applied"
    assert r["counts"]["deferred"] == 1 and r["counts"].get("adjusted", 0) == 0, (
        "a key that moved during the read waits"
    )
    square_feed.advance(10)
    r = run()
    assert on_hand("TEE", "ST-A") == 78 and r["counts"].get("adjusted", 0) == 0, r
    assert square_feed.count(VARIATION_A, LOCATION_MAIN) == 78
    _verify(app)


def test_a_sale_before_the_snapshot_page_is_counted_once(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    assert run()["status"] == "succeeded"
    square_feed.advance(10)
    _sale_during_snapshot(square_feed, before_page=True)  # the page already says 78, the feed says -1
    r = run()
    assert r["status"] == "succeeded", r
    assert on_hand("TEE", "ST-A") == 78
    square_feed.advance(10)
    assert run()["status"] == "succeeded"
    assert on_hand("TEE", "ST-A") == 78
    _verify(app)


def test_a_failed_middle_page_changes_nothing_and_the_next_run_completes(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    square_feed.page_size = 1
    square_feed.sell(VARIATION_B, LOCATION_MAIN, 1)
    square_feed.fault(method="POST", path=COUNTS, nth=2, every=True, times=3, status=500,
                      body={"errors": [{"category": "API_ERROR", "code": "INTERNAL_SERVER_ERROR"}]})  # fmt: skip
    failed = run()
    assert failed["status"] == "failed" and "500" in failed["error"], failed
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("TEE", "ST-B")) == (0, 0, 0)
    square_feed.advance(10)
    done = run()
    assert done["status"] == "succeeded", done
    assert (on_hand("TEE", "ST-A"), on_hand("CAP", "ST-A"), on_hand("TEE", "ST-B")) == (79, 11, 85)
    _verify(app)


def test_a_rate_limit_is_waited_out_as_the_vendor_says(
    app: Flask, square_feed: FakeSquare, run: Callable[..., dict[str, Any]], sleeps: list[float]
) -> None:
    square_feed.fault(method="POST", path=CHANGES, nth=1, status=429, headers={"Retry-After": "7"},
                      body={"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED"}]})  # fmt: skip
    assert run()["status"] == "succeeded"
    assert 7.0 in sleeps


def test_an_offline_sale_absorbed_by_a_later_physical_count_ends_at_the_count(
    app: Flask,
    square_feed: FakeSquare,
    run: Callable[..., dict[str, Any]],
    on_hand: Callable[[str, str], int],
) -> None:
    """Square's own worked example: the count absorbs the earlier-dated sale; the ledger follows."""
    from datetime import timedelta

    assert run()["status"] == "succeeded"
    t0 = square_feed.now()
    square_feed.advance(60)
    square_feed.set_count(VARIATION_A, LOCATION_SECOND, 80, occurred_at=t0 + timedelta(seconds=30))
    square_feed.advance(5)
    square_feed.sell(VARIATION_A, LOCATION_SECOND, 2, occurred_at=t0 + timedelta(seconds=10))  # uploaded late
    square_feed.advance(30)
    assert run()["status"] == "succeeded"
    square_feed.advance(30)
    assert run()["status"] == "succeeded"
    assert square_feed.count(VARIATION_A, LOCATION_SECOND) == 80
    assert on_hand("TEE", "ST-B") == 80
    _verify(app)


def test_a_run_counts_into_the_feeds_totals_for_the_metrics(
    app: Flask, square_feed: FakeSquare, run: Callable[..., dict[str, Any]]
) -> None:
    assert run()["status"] == "succeeded"
    r = app.test_client().get("/metrics")
    text = r.get_data(as_text=True)
    assert 'omnistock_sync_runs_total{feed="pos",outcome="succeeded"} 1.0' in text
    assert 'omnistock_sync_adjustments_total{feed="pos"} 3.0' in text
    assert 'omnistock_sync_seconds_since_good_run{feed="pos"}' in text
