# ruff: noqa: F811 - pytest fixtures are imported, then named as arguments
"""WooCommerce as a stock source: a web sale may not be visible yet when a snapshot is read, so a
difference is corrected only once two consecutive snapshots show the same one (two-strike rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from app.db import read_only
from app.services import ledger as ledger_service
from app.sync.fakes.woocommerce import FakeWoo
from tests.sync.source_fixtures import WOO_FEED, woo, woo_feed  # noqa: F401 - fixtures

Run = Callable[..., dict[str, Any]]
OnHand = Callable[[str, str], int]
TEE, CAP = 794, 795


def _cycle(shop: FakeWoo, run: Run) -> dict[str, Any]:
    shop.advance(30)
    r = run(WOO_FEED)
    assert r["status"] == "succeeded", r
    return r


def _verify(app: Flask) -> None:
    with read_only(app.extensions["session_factory"]) as s:
        assert ledger_service.verify(s) == []


def test_a_drift_seen_once_waits_and_the_same_drift_seen_again_is_applied(
    app: Flask, woo_feed: FakeWoo, run: Run, on_hand: OnHand
) -> None:
    first = _cycle(woo_feed, run)
    assert first["counts"].get("first_strikes", 0) == 0 and first["counts"].get("adjusted", 0) == 0, first
    woo_feed.set_stock(TEE, 8)
    r = _cycle(woo_feed, run)
    assert r["counts"]["first_strikes"] == 1 and r["counts"].get("adjusted", 0) == 0, r["counts"]
    assert on_hand("TEE", "WH-1") == 10, "one sighting is not enough"
    r = _cycle(woo_feed, run)
    assert r["counts"]["adjusted"] == 1, r["counts"]
    assert on_hand("TEE", "WH-1") == 8
    r = _cycle(woo_feed, run)
    assert r["counts"].get("adjusted", 0) == 0 and r["counts"].get("first_strikes", 0) == 0, r["counts"]
    _verify(app)


def test_a_different_drift_on_the_second_snapshot_starts_over(
    app: Flask, woo_feed: FakeWoo, run: Run, on_hand: OnHand
) -> None:
    woo_feed.sell(CAP, 1)
    assert _cycle(woo_feed, run)["counts"]["first_strikes"] == 1
    woo_feed.sell(CAP, 1)  # another web sale: now -2, not the -1 seen before
    r = _cycle(woo_feed, run)
    assert r["counts"]["first_strikes"] == 1 and r["counts"].get("adjusted", 0) == 0, r["counts"]
    assert on_hand("CAP", "WH-1") == 5
    r = _cycle(woo_feed, run)
    assert r["counts"]["adjusted"] == 1, r["counts"]
    assert on_hand("CAP", "WH-1") == 3
    _verify(app)


def test_stock_moving_back_clears_the_first_strike(
    app: Flask, woo_feed: FakeWoo, run: Run, on_hand: OnHand
) -> None:
    woo_feed.set_stock(TEE, 7)
    assert _cycle(woo_feed, run)["counts"]["first_strikes"] == 1
    woo_feed.set_stock(TEE, 10)  # the order was cancelled: the shop agrees with the ledger again
    r = _cycle(woo_feed, run)
    assert r["counts"].get("first_strikes", 0) == 0 and r["counts"].get("adjusted", 0) == 0, r["counts"]
    woo_feed.set_stock(TEE, 7)  # the same -3 again: a first sighting, the earlier one is forgotten
    r = _cycle(woo_feed, run)
    assert r["counts"]["first_strikes"] == 1 and r["counts"].get("adjusted", 0) == 0, r["counts"]
    assert on_hand("TEE", "WH-1") == 10
    _verify(app)
