"""Feeds from YAML: the shipped example loads once what it names exists, and a faulty file is
refused whole, every fault named as feeds[i].field, with nothing configured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from flask import Flask

from app.schemas.sync import FeedsFile
from tests.conftest import Api

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "feeds.example.yaml"
STORES = ["ST-COVENT", "ST-SOHO", "ST-OUTLET"]
SKUS = ["TEE-BLK-M", "MUG-WHT"]


def _world(network: Callable[..., None]) -> None:
    locations = [{"code": c, "name": c, "lat": 51.51, "lon": -0.12 - i / 100} for i, c in enumerate(STORES)]
    network(locations, SKUS, channels=("web", "trade"))


def _load(app: Flask, path: Path) -> Any:
    return app.test_cli_runner().invoke(args=["sync", "load-feeds", str(path)])


def _codes(ops: Api) -> list[str]:
    return [f["code"] for f in ops.get("/api/v1/feeds").json["items"]]


def test_the_example_covers_each_connector_and_names_secrets_only_by_variable() -> None:
    parsed = FeedsFile.model_validate(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    assert {(f.connector, f.role) for f in parsed.feeds} == {
        ("square", "source"), ("shopify", "channel"), ("woocommerce", "channel"), ("csv", "source"),
    }  # fmt: skip
    text = EXAMPLE.read_text(encoding="utf-8")
    for feed in parsed.feeds:
        for var in feed.credentials.values():
            assert var.startswith("OMNISTOCK_"), var
    assert "ck_" not in text.replace("(ck_...)", "") and "shpat_" not in text, "no secret values in the file"


def test_the_example_loads_once_its_locations_and_skus_exist(
    app: Flask, network: Callable[..., None], ops: Api
) -> None:
    early = _load(app, EXAMPLE)
    assert early.exit_code == 1, early.output
    assert "feeds[0].locations.L8GZ4Q2F0Y1A: no location 'ST-COVENT'" in early.output, early.output
    assert _codes(ops) == [], "a refused file configures nothing"
    _world(network)
    loaded = _load(app, EXAMPLE)
    assert loaded.exit_code == 0, loaded.output
    assert "4 feed(s) configured" in loaded.output
    feeds = {f["code"]: f for f in ops.get("/api/v1/feeds").json["items"]}
    assert sorted(feeds) == ["outlet-csv", "pos-square", "trade-woo", "web-shopify"]
    pos, web, trade = feeds["pos-square"], feeds["web-shopify"], feeds["trade-woo"]
    assert (
        pos["locations"] == {"L8GZ4Q2F0Y1A": "ST-COVENT", "LQ3N7W9X2K5B": "ST-SOHO"}
        and pos["items_mapped"] == 2
    )
    assert pos["credentials"]["token"] == "OMNISTOCK_SQUARE_TOKEN" and pos["settings"]["every_s"] == 300
    assert web["channel"] == "web" and web["locations"]["gid://shopify/Location/71234567"] is None
    assert trade["match_items_by_sku"] is True and trade["channel"] == "trade"
    assert all(f["status"] == "never_run" for f in feeds.values())
    again = _load(app, EXAMPLE)
    assert again.exit_code == 0 and _codes(ops) == sorted(feeds), "loading again replaces, it does not add"


def _feed(code: str, **kw: Any) -> dict[str, Any]:
    return {"code": code, "name": code, "role": "source", "connector": "csv", "locations": {"OUTLET": "ST-OUTLET"},
            "match_items_by_sku": True, **kw}  # fmt: skip


def test_a_faulty_file_is_refused_naming_each_field_and_nothing_is_configured(
    app: Flask, network: Callable[..., None], ops: Api, tmp_path: Path
) -> None:
    _world(network)
    path = tmp_path / "feeds.yaml"
    woo = {"code": "woo", "name": "woo", "role": "channel", "connector": "woocommerce", "channel": "web",
           "base_url": "https://shop.example.com", "credentials": {"key": "WOO_KEY"}, "locations": {"web": None}}  # fmt: skip
    feeds = [
        _feed("good"),
        _feed("typo", settings={"every_s": "hourly"}),  # wrong type
        _feed("extra", colour="blue"),  # a field no feed has
        woo,  # names the key's variable but not the secret's
    ]
    path.write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    r = _load(app, path)
    assert r.exit_code == 1, r.output
    for named in ("feeds[1].settings.every_s", "feeds[2].colour", "feeds[3].credentials: "):
        assert named in r.output, r.output
    assert "secret" in r.output.split("feeds[3].credentials: ")[1].splitlines()[0]
    assert "feeds[0]" not in r.output and _codes(ops) == []
    # Valid in shape, but the second feed names a store that does not exist: the first is not kept.
    path.write_text(yaml.safe_dump({"feeds": [_feed("good"), _feed("bad", locations={"X": "ST-NOWHERE"})]}))
    r = _load(app, path)
    assert r.exit_code == 1 and "feeds[1].locations.X: no location 'ST-NOWHERE'" in r.output, r.output
    assert _codes(ops) == [], "all or none"
    path.write_text("feeds:\n  - code: [unclosed\n")
    r = _load(app, path)
    assert r.exit_code == 1 and str(path) in r.output, r.output
    path.write_text(yaml.safe_dump({"feeds": [_feed("good")]}))
    assert _load(app, path).exit_code == 0 and _codes(ops) == ["good"]
