from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.db import read_only
from app.models import Movement
from tests.conftest import Api

LOCS = [
    {
        "code": "WH",
        "kind": "warehouse",
        "lat": 51.53,
        "lon": -0.28,
        "pickup": False,
        "default_safety_stock": 0,
    },
    {"code": "ST-A", "lat": 51.51, "lon": -0.12, "default_safety_stock": 2},
    {"code": "ST-B", "lat": 51.46, "lon": -0.11, "default_safety_stock": 1},
]


@pytest.fixture
def stocked(network: Callable[..., None], receive: Callable[..., Any]) -> None:
    network(LOCS, ["TEE", "MUG", "HAT"], channels=("web", "store"))
    receive(("TEE", "WH", 50), ("TEE", "ST-A", 5), ("MUG", "ST-B", 3))


def movement_count(app: Flask) -> int:
    with read_only(app.extensions["session_factory"]) as s:
        return int(s.scalar(select(func.count()).select_from(Movement)) or 0)


def level(ops: Api, sku: str, loc: str) -> dict[str, Any]:
    items = ops.get("/api/v1/stock/levels", query_string={"sku": sku, "location": loc}).json["items"]
    return items[0] if items else {"on_hand": 0, "reserved": 0, "incoming": 0}


def post(ops: Api, *movements: dict[str, Any]) -> Any:
    return ops.post("/api/v1/stock/movements", {"movements": list(movements)})


def test_a_replayed_batch_writes_nothing_new_and_says_so(app: Flask, ops: Api, stocked: None) -> None:
    batch = [
        {
            "kind": "receipt",
            "sku": "HAT",
            "location": "ST-A",
            "qty": 4,
            "source": "erp",
            "external_ref": "po-1",
        },
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 1, "source": "pos", "external_ref": "s-9"},
    ]
    first = post(ops, *batch)
    assert (first.status_code, first.json["applied"], first.json["duplicates"]) == (201, 2, 0)
    before = movement_count(app)
    again = post(ops, *batch)
    assert (again.status_code, again.json["applied"], again.json["duplicates"]) == (200, 0, 2)
    assert [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate"]
    assert again.json["results"][0]["movement_ids"] == first.json["results"][0]["movement_ids"]
    assert movement_count(app) == before
    assert level(ops, "HAT", "ST-A")["on_hand"] == 4
    assert level(ops, "TEE", "ST-A")["on_hand"] == 4


def test_a_replay_with_different_content_is_refused(app: Flask, ops: Api, stocked: None) -> None:
    post(ops, {"kind": "receipt", "sku": "HAT", "location": "ST-A", "qty": 4, "external_ref": "po-1"})
    before = movement_count(app)
    r = post(
        ops,
        {"kind": "receipt", "sku": "HAT", "location": "ST-A", "qty": 5, "external_ref": "po-1"},
        {"kind": "receipt", "sku": "MUG", "location": "ST-A", "qty": 1},
    )
    assert (r.status_code, r.json["code"]) == (409, "idempotency_conflict")
    assert r.json["errors"][0]["field"] == "movements[0].external_ref"
    assert movement_count(app) == before


def test_one_bad_movement_writes_nothing_and_is_named(app: Flask, ops: Api, stocked: None) -> None:
    before = movement_count(app)
    r = post(
        ops,
        {"kind": "receipt", "sku": "HAT", "location": "ST-A", "qty": 4},
        {"kind": "receipt", "sku": "GHOST", "location": "ST-A", "qty": 1},
        {"kind": "sale", "sku": "TEE", "location": "NOWHERE", "qty": 1},
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json["errors"]] == ["movements[1].sku", "movements[2].location"]
    assert movement_count(app) == before
    assert level(ops, "HAT", "ST-A")["on_hand"] == 0


def test_the_same_fact_twice_in_one_batch_is_refused(ops: Api, stocked: None) -> None:
    m = {"kind": "receipt", "sku": "HAT", "location": "ST-A", "qty": 4, "external_ref": "x"}
    r = post(ops, m, m)
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "movements[1].external_ref"


def test_a_transfer_leaves_one_location_and_is_incoming_at_the_other_until_received(
    ops: Api, stocked: None
) -> None:
    r = post(
        ops,
        {
            "kind": "transfer",
            "sku": "TEE",
            "location": "WH",
            "to_location": "ST-B",
            "qty": 6,
            "external_ref": "t-1",
        },
    )
    assert r.status_code == 201
    assert len(r.json["results"][0]["movement_ids"]) == 2
    assert level(ops, "TEE", "WH")["on_hand"] == 44
    assert (level(ops, "TEE", "ST-B")["on_hand"], level(ops, "TEE", "ST-B")["incoming"]) == (0, 6)
    too_many = post(ops, {"kind": "transfer_in", "sku": "TEE", "location": "ST-B", "qty": 7})
    assert (too_many.status_code, too_many.json["code"]) == (409, "stock_conflict")
    assert too_many.json["errors"][0]["field"] == "movements[0].qty"
    assert post(ops, {"kind": "transfer_in", "sku": "TEE", "location": "ST-B", "qty": 6}).status_code == 201
    assert (level(ops, "TEE", "ST-B")["on_hand"], level(ops, "TEE", "ST-B")["incoming"]) == (6, 0)


def test_a_count_sets_on_hand_and_records_the_difference(ops: Api, stocked: None) -> None:
    post(ops, {"kind": "count", "sku": "TEE", "location": "ST-A", "qty": 2, "external_ref": "cnt-1"})
    assert level(ops, "TEE", "ST-A")["on_hand"] == 2
    hist = ops.get(
        "/api/v1/stock/movements", query_string={"sku": "TEE", "location": "ST-A", "kind": "count_adjustment"}
    ).json
    assert [(m["qty"], m["on_hand_delta"], m["reason"]) for m in hist["items"]] == [(2, -3, "count")]


def test_adjustments_need_a_reason_and_damaged_returns_do_not_rejoin_stock(ops: Api, stocked: None) -> None:
    r = post(ops, {"kind": "adjustment", "sku": "TEE", "location": "ST-A", "qty": -2})
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "movements[0].reason"
    assert (
        post(
            ops, {"kind": "adjustment", "sku": "TEE", "location": "ST-A", "qty": -2, "reason": "damaged"}
        ).status_code
        == 201
    )
    assert (
        post(
            ops, {"kind": "return", "sku": "TEE", "location": "ST-A", "qty": 1, "resellable": False}
        ).status_code
        == 201
    )
    assert level(ops, "TEE", "ST-A")["on_hand"] == 3


def test_an_outside_sale_may_take_on_hand_below_zero_and_is_recorded(ops: Api, stocked: None) -> None:
    assert (
        post(
            ops,
            {
                "kind": "sale",
                "sku": "MUG",
                "location": "ST-B",
                "qty": 5,
                "source": "pos",
                "external_ref": "s1",
            },
        ).status_code
        == 201
    )
    assert level(ops, "MUG", "ST-B")["on_hand"] == -2


def test_availability_per_location_and_total_respects_channel_safety_stock(
    storefront: Api, stocked: None
) -> None:
    web = storefront.get("/api/v1/availability", query_string={"skus": "TEE,MUG", "channel": "web"}).json
    tee = {loc["location"]: loc["available"] for loc in web["items"][0]["locations"]}
    assert tee == {"ST-A": 3, "ST-B": 0, "WH": 50}
    assert web["items"][0]["total_available"] == 53
    till = storefront.get("/api/v1/availability", query_string={"skus": "TEE", "channel": "store"}).json
    assert {loc["location"]: loc["available"] for loc in till["items"][0]["locations"]}["ST-A"] == 5


def test_availability_sorted_by_distance_when_coordinates_are_given(storefront: Api, stocked: None) -> None:
    r = storefront.get(
        "/api/v1/availability", query_string={"skus": "TEE", "channel": "web", "lat": 51.46, "lon": -0.115}
    )
    locs = r.json["items"][0]["locations"]
    assert [loc["location"] for loc in locs] == ["ST-B", "ST-A", "WH"]
    assert locs[0]["distance_km"] < locs[1]["distance_km"] < locs[2]["distance_km"]


def test_availability_refuses_unknown_skus_channels_and_half_coordinates(
    storefront: Api, stocked: None
) -> None:
    r = storefront.get("/api/v1/availability", query_string={"skus": "TEE,NOPE", "channel": "web"})
    assert (r.status_code, r.json["code"], r.json["unknown"]) == (404, "unknown_sku", ["NOPE"])
    r = storefront.get("/api/v1/availability", query_string={"skus": "TEE", "channel": "fax"})
    assert (r.status_code, r.json["code"]) == (404, "unknown_channel")
    r = storefront.get("/api/v1/availability", query_string={"skus": "TEE", "lat": 51.0})
    assert r.status_code == 422


def test_an_inactive_location_offers_nothing(ops: Api, storefront: Api, stocked: None) -> None:
    ops.patch("/api/v1/locations/WH", {"active": False})
    r = storefront.get("/api/v1/availability", query_string={"skus": "TEE"}).json
    assert r["items"][0]["total_available"] == 3


def test_a_safety_stock_override_applies_to_one_sku(ops: Api, storefront: Api, stocked: None) -> None:
    r = ops.put("/api/v1/stock/levels/TEE/ST-A/safety-stock", {"safety_stock": 0})
    assert (r.status_code, r.json["available_online"]) == (200, 5)
    r = storefront.get("/api/v1/availability", query_string={"skus": "TEE", "location": "ST-A"}).json
    assert r["items"][0]["total_available"] == 5


def test_history_is_keyset_paged_newest_first_without_gaps(ops: Api, stocked: None) -> None:
    for i in range(12):
        post(ops, {"kind": "sale", "sku": "TEE", "location": "WH", "qty": 1, "external_ref": f"s{i}"})
    ids, cursor = [], None
    while True:
        q = {"sku": "TEE", "location": "WH", "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = ops.get("/api/v1/stock/movements", query_string=q).json
        ids += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(ids) == 13
    assert ids == sorted(ids, reverse=True)
    assert ops.get("/api/v1/stock/movements", query_string={"cursor": "!!"}).status_code == 422


def test_staff_see_only_their_own_locations(
    client: FlaskClient, make_key: Callable[..., str], stocked: None
) -> None:
    staff = Api(client, make_key("staff", ("ST-A",)))
    mine = staff.get("/api/v1/stock/levels").json["items"]
    assert {row["location"] for row in mine} == {"ST-A"}
    r = staff.get("/api/v1/stock/levels", query_string={"location": "ST-B"})
    assert (r.status_code, r.json["code"]) == (403, "forbidden")
    assert staff.post("/api/v1/stock/movements", {"movements": []}).status_code == 403


def test_requests_without_a_valid_key_are_refused(client: FlaskClient, stocked: None) -> None:
    r = client.get("/api/v1/availability?skus=TEE")
    assert (r.status_code, r.json["code"]) == (401, "unauthorized")
    r = client.get("/api/v1/availability?skus=TEE", headers={"Authorization": "Bearer osk_abc_def"})
    assert r.status_code == 401


def test_bodies_that_are_not_json_or_too_large_are_refused(app: Flask, ops: Api, stocked: None) -> None:
    r = ops.client.post(
        "/api/v1/stock/movements", headers={**ops.headers, "Content-Type": "application/json"}, data="{nope"
    )
    assert (r.status_code, r.json["code"]) == (400, "invalid_json")
    r = ops.client.post("/api/v1/stock/movements", headers=ops.headers, data="x=1")
    assert r.status_code == 415
    huge = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    r = ops.client.post(
        "/api/v1/stock/movements", headers={**ops.headers, "Content-Type": "application/json"}, data=huge
    )
    assert r.status_code == 413
    assert r.mimetype == "application/problem+json"


def test_every_api_route_declares_its_roles(app: Flask) -> None:
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1") and not getattr(app.view_functions[rule.endpoint], "roles", None)
    ]
    assert undeclared == []
