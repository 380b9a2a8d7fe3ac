"""Sync test helpers: a feed configured over the fakes, runs with recorded sleeps, ledger reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.db import read_only, transaction
from app.models import Location, Sku, StockLevel
from app.schemas.sync import FeedIn
from app.services.sync import feeds
from app.sync import runs
from app.sync.fakes.square import LOCATION_MAIN, LOCATION_SECOND, TOKEN, VARIATION_A, VARIATION_B, FakeSquare
from app.sync.runner import run_feed


class Sleeps(list[float]):
    """An injected sleep: records what the HTTP layer would have waited, and a clock that moves by it
    (so a pacing gap the layer waits out has passed when it looks again)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    def clock(self) -> float:
        return time.time() + sum(self)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def square() -> Iterator[FakeSquare]:
    fake = FakeSquare()
    fake.set_clock(fake.now(), frozen=True)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def configure(app: Flask) -> Callable[..., None]:
    def _configure(**cfg: Any) -> None:
        body = FeedIn.model_validate(cfg)
        transaction(app.extensions["session_factory"], lambda s: feeds.upsert(s, body))

    return _configure


@pytest.fixture
def square_feed(
    app: Flask,
    network: Callable[..., None],
    square: FakeSquare,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> FakeSquare:
    """ST-A and ST-B fed by the fake Square (main and second location); TEE is variation A, CAP is B."""
    network(
        [
            {"code": "ST-A", "name": "A", "kind": "store", "lat": 51.51, "lon": -0.12, "channels": ["web"]},
            {"code": "ST-B", "name": "B", "kind": "store", "lat": 51.52, "lon": -0.10, "channels": ["web"]},
        ],
        ["TEE", "CAP"],
    )
    monkeypatch.setenv("TEST_SQUARE_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_SQUARE_WEBHOOK_KEY", "square-signature-key-0123456789")
    configure(
        code="pos", name="Square POS", role="source", connector="square", base_url=square.url,
        credentials={"token": "TEST_SQUARE_TOKEN", "webhook_key": "TEST_SQUARE_WEBHOOK_KEY"},
        locations={LOCATION_MAIN: "ST-A", LOCATION_SECOND: "ST-B"},
        items={VARIATION_A: "TEE", VARIATION_B: "CAP"},
        settings={"settle_s": 2, "overlap_s": 600, "auto_apply_limit": 100, "attempts": 3},
    )  # fmt: skip
    square.advance(10)  # the seeded history is older than the settle window
    return square


@pytest.fixture
def run(app: Flask, sleeps: Sleeps) -> Callable[..., dict[str, Any]]:
    def _run(code: str = "pos", **kw: Any) -> dict[str, Any]:
        return run_feed(
            app.extensions["session_factory"], app.config, code, tools=runs.Tools(sleep=sleeps), **kw
        )

    return _run


@pytest.fixture
def on_hand(app: Flask) -> Callable[[str, str], int]:
    def _on_hand(sku: str, location: str) -> int:
        with read_only(app.extensions["session_factory"]) as s:
            q = (
                select(StockLevel.on_hand)
                .join(Sku, Sku.id == StockLevel.sku_id)
                .join(Location, Location.id == StockLevel.location_id)
                .where(Sku.code == sku, Location.code == location)
            )
            return int(s.scalar(q) or 0)

    return _on_hand


__all__ = ["LOCATION_MAIN", "LOCATION_SECOND", "VARIATION_A", "VARIATION_B", "Sleeps"]
