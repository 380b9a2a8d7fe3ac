"""Placing orders end to end through the API, on SQLite and PostgreSQL."""

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api

# Warehouse far west; two stores in the centre; one store south. Safety stock 0 keeps sums simple.
LOCS = [
    {"code": "WH", "kind": "warehouse", "lat": 51.53, "lon": -0.28, "pickup": False, "priority": 10},
    {"code": "ST-A", "lat": 51.512, "lon": -0.124, "priority": 50},
    {"code": "ST-B", "lat": 51.539, "lon": -0.143, "priority": 50},
    {"code": "ST-C", "lat": 51.461, "lon": -0.116, "priority": 60, "pickup": False},
]
CENTRE = {"type": "ship", "lat": 51.513, "lon": -0.125}


@pytest.fixture
def shop(network: Callable[..., None], receive: Callable[..., Any]) -> None:
    network(LOCS, ["TEE", "MUG", "HAT", "CAP"])
    receive(("TEE", "WH", 10), ("MUG", "WH", 10), ("TEE", "ST-A", 2), ("MUG", "ST-B", 3),
            ("HAT", "ST-A", 1), ("HAT", "ST-B", 1), ("CAP", "ST-C", 5))  # fmt: skip


def order(
    api: Api,
    lines: list[tuple[str, int]],
    delivery: dict[str, Any] | None = None,
    key: str | None = None,
    **kw: Any,
) -> Any:
    body = {"channel": "web", "customer_ref": "cust-1", "lines": [{"sku": s, "qty": q} for s, q in lines],
            "delivery": delivery or CENTRE, **kw}  # fmt: skip
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/api/v1/orders", body, headers=headers)


def avail(api: Api, sku: str) -> dict[str, int]:
    r = api.get("/api/v1/availability", query_string={"skus": sku})
    return {loc["location"]: loc["available"] for loc in r.json["items"][0]["locations"]}


def shipped(ops: Api, storefront: Api, lines: list[tuple[str, int]]) -> Any:
    """An order placed, picked and shipped (one fulfilment): ready for returns."""
    o = order(storefront, lines).json
    fid = o["fulfilments"][0]["id"]
    for step in ("pick", "ship"):
        assert ops.post(f"/api/v1/fulfilments/{fid}/{step}").status_code == 200
    return o


def deliver_transfer(ops: Api, fid: int) -> None:
    """A transfer travels: picked, shipped, received at its pickup store."""
    for step in ("pick", "ship", "receive"):
        assert ops.post(f"/api/v1/fulfilments/{fid}/{step}").status_code == 200


def held(ops: Api, fid: int) -> set[tuple[str, int, int]]:
    """(sku, reserved, awaiting) of each line of a fulfilment."""
    return {
        (ln["sku"], ln["reserved"], ln["awaiting"])
        for ln in ops.get(f"/api/v1/fulfilments/{fid}").json["lines"]
    }


def mugs_by_transfer(storefront: Api) -> tuple[Any, dict[str, Any]]:
    """A pickup at ST-A: its own TEEs, and MUGs on a transfer from the nearer ST-B."""
    r = order(storefront, [("TEE", 2), ("MUG", 2)], {"type": "pickup", "location": "ST-A"})
    fs = {f["type"]: f for f in r.json["fulfilments"]}
    assert fs["transfer"]["location"] == "ST-B"
    return r.json, fs


def receive_units(ops: Api, sku: str, location: str, qty: int) -> None:
    r = ops.post(
        "/api/v1/stock/movements",
        {"movements": [{"kind": "receipt", "sku": sku, "location": location, "qty": qty}]},
    )
    assert r.status_code == 201, r.json


def risk_flags(api: Api, order_id: int) -> dict[str, bool]:
    return {f["type"]: f["at_risk"] for f in api.get(f"/api/v1/orders/{order_id}").json["fulfilments"]}


def verify(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output


def test_one_location_covering_the_whole_order_beats_a_nearer_split(
    app: Flask, storefront: Api, shop: None
) -> None:
    r = order(storefront, [("TEE", 2), ("MUG", 2)])
    assert r.status_code == 201, r.json
    assert [(f["location"], f["type"], f["status"]) for f in r.json["fulfilments"]] == [
        ("WH", "ship", "allocated")
    ]
    notes = {n["location"]: n for n in r.json["routing"]["explanation"]}
    assert notes["WH"]["outcome"] == "chosen"
    assert notes["ST-A"]["outcome"] != "chosen" and notes["ST-A"]["reason"]
    assert avail(storefront, "TEE")["WH"] == 8
    verify(app)


def test_the_nearest_covering_location_wins(storefront: Api, shop: None) -> None:
    r = order(storefront, [("TEE", 1)])
    assert r.json["fulfilments"][0]["location"] == "ST-A"


def test_a_split_uses_the_fewest_shipments_and_can_be_refused(storefront: Api, shop: None) -> None:
    r = order(storefront, [("HAT", 2)])
    assert r.status_code == 201, r.json
    assert sorted(f["location"] for f in r.json["fulfilments"]) == ["ST-A", "ST-B"]
    r = order(storefront, [("TEE", 11)], allow_split=False)
    assert (r.status_code, r.json["code"]) == (409, "insufficient_stock")
    assert r.json["routing"]["explanation"]


def test_partial_allocation_backorders_the_rest(storefront: Api, shop: None) -> None:
    r = order(storefront, [("CAP", 7)], allow_partial=True)
    assert r.status_code == 201
    assert r.json["status"] == "partially_allocated"
    assert r.json["lines"] == [{"sku": "CAP", "qty": 7, "backordered": 2, "cancelled": 0, "returned": 0}]
    r = order(storefront, [("CAP", 7)])
    assert (r.status_code, r.json["code"]) == (409, "insufficient_stock")


def test_pickup_from_the_stores_own_stock(storefront: Api, shop: None) -> None:
    r = order(storefront, [("TEE", 2)], {"type": "pickup", "location": "ST-A"})
    assert r.status_code == 201
    assert [(f["location"], f["type"]) for f in r.json["fulfilments"]] == [("ST-A", "pickup")]


def test_pickup_short_of_stock_is_topped_up_by_a_transfer_shown_as_incoming(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    r = order(storefront, [("TEE", 2), ("MUG", 2)], {"type": "pickup", "location": "ST-A"})
    assert r.status_code == 201, r.json
    fs = {f["type"]: f for f in r.json["fulfilments"]}
    assert fs["pickup"]["location"] == "ST-A"
    assert {(ln["sku"], ln["reserved"], ln["awaiting"]) for ln in fs["pickup"]["lines"]} == {
        ("TEE", 2, 0),
        ("MUG", 0, 2),
    }
    assert (fs["transfer"]["to_location"], fs["transfer"]["lines"][0]["sku"]) == ("ST-A", "MUG")
    levels = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-A"}).json["items"]
    assert levels[0]["incoming"] == 2
    # The transfer travels: picked, shipped, received; then the units are reserved for the pickup.
    tid = fs["transfer"]["id"]
    deliver_transfer(ops, tid)
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-A"}).json["items"][0]
    assert (level["on_hand"], level["reserved"], level["incoming"]) == (2, 2, 0)
    assert held(ops, fs["pickup"]["id"]) == {("TEE", 2, 0), ("MUG", 2, 0)}
    verify(app)


def test_pickup_refusal_names_the_nearest_stores_that_could_serve(
    app: Flask, storefront: Api, shop: None
) -> None:
    app.config["ROUTING_PICKUP_SHORTFALL"] = "refuse"
    try:
        r = order(storefront, [("MUG", 2)], {"type": "pickup", "location": "ST-A"})
    finally:
        app.config["ROUTING_PICKUP_SHORTFALL"] = "transfer"
    assert (r.status_code, r.json["code"]) == (409, "insufficient_stock")
    assert [a["location"] for a in r.json["alternatives"]] == ["ST-B"]


def test_a_store_without_pickup_is_refused_by_field(storefront: Api, shop: None) -> None:
    r = order(storefront, [("CAP", 1)], {"type": "pickup", "location": "ST-C"})
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "delivery.location"


@pytest.mark.parametrize(
    ("lines", "delivery", "field"),
    [
        ([("NOPE", 1)], CENTRE, "lines[0].sku"),
        ([("TEE", 0)], CENTRE, "lines[0].qty"),
        ([("TEE", 1), ("TEE", 2)], CENTRE, "lines[1].sku"),
        ([("TEE", 1)], {"type": "ship", "lat": 91, "lon": 0}, "delivery.lat"),
        ([("TEE", 1)], {"type": "ship", "postcode": "ZZ9 9ZZ"}, "delivery.postcode"),
        ([("TEE", 1)], {"type": "pickup", "location": "NOWHERE"}, "delivery.location"),
    ],
)
def test_bad_orders_name_the_field_and_reserve_nothing(
    app: Flask,
    storefront: Api,
    shop: None,
    lines: list[tuple[str, int]],
    delivery: dict[str, Any],
    field: str,
) -> None:
    before = avail(storefront, "TEE")
    r = order(storefront, lines, delivery)
    assert r.status_code == 422, r.json
    assert r.mimetype == "application/problem+json"
    assert field in [e["field"] for e in r.json["errors"]]
    assert avail(storefront, "TEE") == before
    verify(app)


def test_the_same_idempotency_key_returns_the_same_order_and_a_different_body_is_refused(
    app: Flask, storefront: Api, shop: None
) -> None:
    first = order(storefront, [("TEE", 1)], key="k-1")
    again = order(storefront, [("TEE", 1)], key="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert avail(storefront, "TEE")["ST-A"] == 1
    other = order(storefront, [("TEE", 2)], key="k-1")
    assert (other.status_code, other.json["code"]) == (409, "idempotency_conflict")
    verify(app)


def test_a_replay_after_the_order_took_the_last_units_returns_the_order(storefront: Api, shop: None) -> None:
    first = order(storefront, [("CAP", 5)], key="last-units")
    again = order(storefront, [("CAP", 5)], key="last-units")
    assert (first.status_code, again.status_code, again.json["id"]) == (201, 200, first.json["id"])


def test_the_storefronts_own_order_id_is_an_idempotency_key_too(storefront: Api, shop: None) -> None:
    first = order(storefront, [("TEE", 1)], external_id="web-1001")
    again = order(storefront, [("TEE", 1)], external_id="web-1001")
    assert (first.status_code, again.status_code, again.json["id"]) == (201, 200, first.json["id"])


def test_a_quote_gives_the_same_decision_and_reserves_nothing(storefront: Api, shop: None) -> None:
    body = {"channel": "web", "lines": [{"sku": "HAT", "qty": 2}], "delivery": CENTRE}
    q = storefront.post("/api/v1/routing/quote", body)
    assert q.status_code == 200
    assert avail(storefront, "HAT") == {"WH": 0, "ST-A": 1, "ST-B": 1, "ST-C": 0}
    placed = storefront.post("/api/v1/orders", body)
    assert placed.json["routing"] == q.json  # allocations and the explanation of every candidate


def test_ship_life_cycle_moves_the_ledger_and_refuses_skipped_edges(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("TEE", 2)]).json
    fid = o["fulfilments"][0]["id"]
    r = ops.post(f"/api/v1/fulfilments/{fid}/ship")
    assert (r.status_code, r.json["code"]) == (409, "invalid_transition")
    assert ops.post(f"/api/v1/fulfilments/{fid}/pick").json["status"] == "picking"
    shipped = ops.post(f"/api/v1/fulfilments/{fid}/ship").json
    assert (shipped["status"], shipped["lines"][0]["done"]) == ("shipped", 2)
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "TEE", "location": "ST-A"}).json["items"][0]
    assert (level["on_hand"], level["reserved"]) == (0, 0)
    assert ops.post(f"/api/v1/fulfilments/{fid}/cancel").status_code == 409
    assert storefront.get(f"/api/v1/orders/{o['id']}").json["status"] == "completed"
    verify(app)


def test_cancelling_releases_reservations_whole_or_by_line(app: Flask, storefront: Api, shop: None) -> None:
    o = order(storefront, [("TEE", 5), ("MUG", 2)]).json
    assert avail(storefront, "TEE")["WH"] == 5
    part = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {"lines": [{"sku": "TEE", "qty": 3}]})
    assert part.status_code == 200, part.json
    assert part.json["lines"][0]["cancelled"] == 3
    assert avail(storefront, "TEE")["WH"] == 8
    too_many = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {"lines": [{"sku": "TEE", "qty": 5}]})
    assert too_many.status_code == 422
    whole = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {})
    assert whole.json["status"] == "cancelled"
    assert avail(storefront, "TEE")["WH"] == 10
    assert avail(storefront, "MUG")["WH"] == 10
    verify(app)


def test_returns_restock_resellable_units_at_the_chosen_location(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = shipped(ops, storefront, [("TEE", 2)])
    r = ops.post(f"/api/v1/orders/{o['id']}/returns", {"location": "ST-B", "lines": [
        {"sku": "TEE", "qty": 1}, {"sku": "TEE", "qty": 1, "resellable": False}]})  # fmt: skip
    assert r.status_code == 200, r.json
    assert r.json["lines"][0]["returned"] == 2
    assert avail(storefront, "TEE")["ST-B"] == 1  # only the resellable unit rejoins stock
    r = ops.post(
        f"/api/v1/orders/{o['id']}/returns", {"location": "ST-B", "lines": [{"sku": "TEE", "qty": 1}]}
    )
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "lines[0].qty")
    verify(app)


def test_safety_stock_inactive_locations_and_capacity_are_respected(
    ops: Api, storefront: Api, shop: None
) -> None:
    ops.patch("/api/v1/locations/ST-A", {"default_safety_stock": 2})
    r = order(storefront, [("TEE", 1)])
    assert r.json["fulfilments"][0]["location"] == "WH"
    ops.patch("/api/v1/locations/WH", {"daily_capacity": 1})
    ops.patch("/api/v1/locations/ST-B", {"active": False})
    r = order(storefront, [("MUG", 1)])
    assert r.json["fulfilments"][0]["location"] == "WH"  # ST-B is nearer but inactive
    r = order(storefront, [("MUG", 1)])
    assert r.status_code == 409, r.json  # WH has used its one shipment for today
    excluded = {n["location"]: n["reason"] for n in r.json["routing"]["explanation"]}
    assert "capacity" in excluded["WH"] and "inactive" in excluded["ST-B"]


def test_orders_are_listed_with_filters_and_one_customers_orders_across_channels(
    ops: Api, storefront: Api, shop: None
) -> None:
    assert (
        ops.put(
            "/api/v1/channels", {"code": "app", "name": "App", "locations": ["WH", "ST-A", "ST-B", "ST-C"]}
        ).status_code
        == 200
    )
    order(storefront, [("TEE", 1)], customer_ref="alice")
    order(storefront, [("MUG", 1)], customer_ref="bob")
    storefront.post(
        "/api/v1/orders",
        {"channel": "app", "customer_ref": "alice", "lines": [{"sku": "CAP", "qty": 1}], "delivery": CENTRE},
    )
    mine = storefront.get("/api/v1/customers/alice/orders").json["items"]
    assert sorted(o["channel"] for o in mine) == ["app", "web"]
    by_loc = ops.get("/api/v1/orders", query_string={"location": "ST-C"}).json["items"]
    assert [o["customer_ref"] for o in by_loc] == ["alice"]
    page1 = ops.get("/api/v1/orders", query_string={"limit": 2}).json
    page2 = ops.get("/api/v1/orders", query_string={"limit": 2, "cursor": page1["next_cursor"]}).json
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert (
        ops.get("/api/v1/orders", query_string={"channel": "app"}).json["items"][0]["customer_ref"] == "alice"
    )


def test_a_postcode_places_the_delivery(app: Flask, storefront: Api, shop: None) -> None:
    from app.db import unit_of_work
    from app.models import Postcode

    with unit_of_work(app.extensions["session_factory"]) as s:
        s.add(Postcode(code="SW9", lat=51.4613, lon=-0.1156))
    r = order(storefront, [("CAP", 1)], {"type": "ship", "postcode": "sw9 8ab"})
    assert r.status_code == 201, r.json
    assert r.json["fulfilments"][0]["location"] == "ST-C"


def test_events_are_written_with_the_order(ops: Api, storefront: Api, shop: None) -> None:
    o = order(storefront, [("CAP", 5)]).json
    types = [e["type"] for e in ops.get("/api/v1/events").json["items"]]
    assert "order.created" in types and "fulfilment.allocated" in types
    assert "stock.out_of_stock" in types  # CAP at ST-C went to zero
    storefront.post(f"/api/v1/orders/{o['id']}/cancel", {})
    types = [e["type"] for e in ops.get("/api/v1/events").json["items"]]
    assert types.count("stock.back_in_stock") >= 1


def test_a_failure_after_reserving_leaves_no_order_and_no_reservation(
    app: Flask, storefront: Api, shop: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.db import read_only
    from app.models import Fulfilment, Movement, Order, OrderLine, OutboxEvent
    from app.services.orders import reservations

    def counts() -> dict[str, int]:
        with read_only(app.extensions["session_factory"]) as s:
            return {
                m.__name__: s.query(m).count() for m in (Order, OrderLine, Fulfilment, OutboxEvent, Movement)
            }

    before = counts()
    real = reservations.reserve

    def reserve_then_crash(*a: Any, **k: Any) -> Any:
        real(*a, **k)  # the reservation (and on PostgreSQL the order's rows with it) is written...
        raise RuntimeError("crash between reserving and answering")  # ...and the process dies

    monkeypatch.setattr(reservations, "reserve", reserve_then_crash)
    for lines in ([("TEE", 2)], [("TEE", 1), ("MUG", 1)]):
        r = order(storefront, lines)
        assert r.status_code == 500
    monkeypatch.undo()
    assert avail(storefront, "TEE")["ST-A"] == 2
    assert counts() == before
    verify(app)


def test_a_till_sale_of_reserved_units_reroutes_the_order(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("TEE", 2)]).json
    assert o["fulfilments"][0]["location"] == "ST-A"
    r = ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 1, "source": "pos", "external_ref": "till-1"}]})  # fmt: skip
    assert r.status_code == 201
    assert r.json["shortages"][0]["rerouted_to"] == "WH"
    now = storefront.get(f"/api/v1/orders/{o['id']}").json
    by_loc = {f["location"]: f for f in now["fulfilments"]}
    assert by_loc["WH"]["lines"][0]["reserved"] == 1
    assert by_loc["ST-A"]["lines"][0]["reserved"] == 1
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "TEE", "location": "ST-A"}).json["items"][0]
    assert (level["on_hand"], level["reserved"], level["shortage"]) == (1, 1, 0)
    verify(app)


def test_a_shortage_with_nowhere_to_go_is_flagged_at_risk(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("CAP", 3)]).json
    r = ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "CAP", "location": "ST-C", "qty": 4, "source": "pos", "external_ref": "till-2"}]})  # fmt: skip
    assert r.status_code == 201
    assert r.json["shortages"][0]["rerouted_to"] is None
    assert (r.json["shortages"][0]["sku"], r.json["shortages"][0]["location"]) == ("CAP", "ST-C")
    f = storefront.get(f"/api/v1/orders/{o['id']}").json["fulfilments"][0]
    assert f["at_risk"] is True
    types = [e["type"] for e in ops.get("/api/v1/events").json["items"]]
    assert "fulfilment.shortage" in types
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "CAP", "location": "ST-C"}).json["items"][0]
    assert (level["on_hand"], level["reserved"], level["shortage"]) == (1, 3, 2)
    verify(app)


def test_an_overlong_idempotency_key_is_refused_and_the_header_is_documented(
    client: Any, storefront: Api, shop: None
) -> None:
    r = order(storefront, [("TEE", 1)], key="k" * 201)
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "Idempotency-Key")
    params = client.get("/api/openapi.json").json["paths"]["/api/v1/orders"]["post"]["parameters"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= params[0].items()


def test_cancelling_counts_on_the_order_lines_and_a_cancelled_fulfilment_cancels_the_order(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("TEE", 5), ("MUG", 2)]).json
    whole = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {}).json
    assert {(ln["sku"], ln["cancelled"]) for ln in whole["lines"]} == {("TEE", 5), ("MUG", 2)}
    o2 = order(storefront, [("MUG", 2)]).json
    fid = o2["fulfilments"][0]["id"]
    assert ops.post(f"/api/v1/fulfilments/{fid}/cancel").status_code == 200
    after = storefront.get(f"/api/v1/orders/{o2['id']}").json
    assert (after["status"], after["lines"][0]["cancelled"]) == ("cancelled", 2)
    cancelled = [e for e in ops.get("/api/v1/events").json["items"] if e["type"] == "order.cancelled"]
    assert {e["payload"]["order_id"] for e in cancelled} == {o["id"], o2["id"]}
    verify(app)


def test_cancel_refuses_an_empty_line_list_and_an_order_with_nothing_left(
    app: Flask, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("TEE", 1)]).json
    empty = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {"lines": []})
    assert (empty.status_code, empty.json["errors"][0]["field"]) == (422, "lines")
    assert avail(storefront, "TEE")["ST-A"] == 1  # still reserved
    assert storefront.post(f"/api/v1/orders/{o['id']}/cancel", {}).status_code == 200
    again = storefront.post(f"/api/v1/orders/{o['id']}/cancel", {})
    assert (again.status_code, again.json["code"], again.json["status"]) == (409, "invalid_transition", 409)
    assert again.json["order_status"] == "cancelled"


def test_a_transfer_feeding_an_open_pickup_cannot_be_cancelled_alone(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    r = order(storefront, [("TEE", 2), ("MUG", 2)], {"type": "pickup", "location": "ST-A"})
    fs = {f["type"]: f for f in r.json["fulfilments"]}
    refused = ops.post(f"/api/v1/fulfilments/{fs['transfer']['id']}/cancel")
    assert (refused.status_code, refused.json["pickup_fulfilment_id"]) == (409, fs["pickup"]["id"])
    # Cancelling the pickup takes its transfer with it.
    assert ops.post(f"/api/v1/fulfilments/{fs['pickup']['id']}/cancel").status_code == 200
    assert ops.get(f"/api/v1/fulfilments/{fs['transfer']['id']}").json["status"] == "cancelled"
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-A"}).json["items"]
    assert level[0]["incoming"] == 0
    verify(app)


def test_numbers_and_booleans_must_be_json_numbers_and_booleans(storefront: Api, shop: None) -> None:
    before = avail(storefront, "TEE")
    for line, delivery, field in [
        ({"sku": "TEE", "qty": "2"}, CENTRE, "lines[0].qty"),
        ({"sku": "TEE", "qty": True}, CENTRE, "lines[0].qty"),
        ({"sku": "TEE", "qty": 1}, {"type": "ship", "lat": "51.5", "lon": -0.1}, "delivery.lat"),
    ]:
        r = storefront.post("/api/v1/orders", {"lines": [line], "delivery": delivery})
        assert r.status_code == 422, r.json
        assert field in [e["field"] for e in r.json["errors"]], r.json
    r = storefront.post("/api/v1/orders", {"lines": [{"sku": "TEE", "qty": 1}], "delivery": CENTRE,
                                           "allow_split": "yes"})  # fmt: skip
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "allow_split")
    assert avail(storefront, "TEE") == before


def test_order_lists_validate_their_filters_and_customer_orders_take_them_all(
    ops: Api, storefront: Api, shop: None
) -> None:
    order(storefront, [("TEE", 1)], customer_ref="carol")
    order(storefront, [("CAP", 1)], customer_ref="carol")
    for query, field in [
        ({"created_from": "2026-11-24T09:00:00"}, "created_from"),
        ({"created_to": "2026-11-24"}, "created_to"),
        ({"status": "bogus"}, "status"),
        ({"cursor": "eyJhIjoxfQ"}, "cursor"),  # {"a":1}: valid JSON, not an order cursor
    ]:
        r = ops.get("/api/v1/orders", query_string=query)
        assert r.status_code == 422, (query, r.json)
        assert r.json["errors"][0]["field"] == field
    base = "/api/v1/customers/carol/orders"
    assert len(storefront.get(base).json["items"]) == 2
    assert len(storefront.get(base, query_string={"location": "ST-C"}).json["items"]) == 1
    assert storefront.get(base, query_string={"created_to": "2020-01-01T00:00:00Z"}).json["items"] == []
    assert len(storefront.get(base, query_string={"created_from": "2020-01-01T00:00:00Z"}).json["items"]) == 2
    params = [p["name"] for p in ops.get("/api/openapi.json").json["paths"][
        "/api/v1/customers/{customer_ref}/orders"]["get"]["parameters"]]  # fmt: skip
    assert params.count("customer_ref") == 1


def test_collecting_a_pickup_moves_the_ledger_and_ready_waits_for_transfers(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    from app.db import transaction
    from app.domain.fulfilment import InvalidTransition, Status
    from app.services import orders

    factory = app.extensions["session_factory"]
    r = order(storefront, [("TEE", 2), ("MUG", 1)], {"type": "pickup", "location": "ST-A"})
    fs = {f["type"]: f for f in r.json["fulfilments"]}
    pid = fs["pickup"]["id"]
    transaction(factory, lambda s: orders.transition(s, pid, Status.PICKING))
    with pytest.raises(InvalidTransition) as refused:
        transaction(factory, lambda s: orders.transition(s, pid, Status.READY_FOR_PICKUP))
    assert refused.value.details["awaiting"] == [{"sku": "MUG", "qty": 1}]
    deliver_transfer(ops, fs["transfer"]["id"])
    transaction(factory, lambda s: orders.transition(s, pid, Status.READY_FOR_PICKUP))
    done = transaction(factory, lambda s: orders.transition(s, pid, Status.COLLECTED))
    assert {(ln.sku, ln.reserved, ln.done) for ln in done.lines} == {("TEE", 0, 2), ("MUG", 0, 1)}
    for sku in ("TEE", "MUG"):
        levels = ops.get("/api/v1/stock/levels", query_string={"sku": sku, "location": "ST-A"}).json
        assert (levels["items"][0]["on_hand"], levels["items"][0]["reserved"]) == (0, 0)
    moves = ops.get("/api/v1/stock/movements", query_string={"location": "ST-A", "kind": "fulfilment"}).json
    assert sorted(m["qty"] for m in moves["items"]) == [1, 2]
    assert storefront.get(f"/api/v1/orders/{r.json['id']}").json["status"] == "completed"
    verify(app)


def test_a_rerouted_shipment_takes_capacity_and_says_when_stock_runs_out(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    ops.patch("/api/v1/locations/WH", {"daily_capacity": 1})
    o = order(storefront, [("TEE", 2)]).json
    assert o["fulfilments"][0]["location"] == "ST-A"
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "count", "sku": "TEE", "location": "WH", "qty": 1, "source": "count", "external_ref": "c-1"}]})  # fmt: skip
    r = ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 1, "source": "pos", "external_ref": "till-9"}]})  # fmt: skip
    assert r.json["shortages"][0]["rerouted_to"] == "WH"
    events = ops.get("/api/v1/events", query_string={"type": "stock.out_of_stock"}).json["items"]
    assert any(e["payload"]["sku"] == "TEE" and e["payload"]["location"] == "WH" for e in events), events
    # WH shipped its one shipment of the day to this re-route: a new order cannot use it.
    r2 = order(storefront, [("MUG", 1)])
    assert r2.json["fulfilments"][0]["location"] != "WH"
    verify(app)


def test_races_lost_on_every_retry_end_in_a_refusal_that_explains_itself(
    app: Flask, storefront: Api, shop: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services import orders
    from app.services.orders import reservations

    calls: list[int] = []

    def always_lost(*_a: Any, **_k: Any) -> Any:
        calls.append(1)
        raise orders.LostRace("stock changed between routing and reserving")

    monkeypatch.setattr(reservations, "reserve", always_lost)
    r = order(storefront, [("TEE", 1)])
    assert (r.status_code, r.json["code"]) == (409, "insufficient_stock")
    assert len(calls) == app.config["ROUTING_MAX_ATTEMPTS"] + 1
    assert r.json["routing"]["allocations"] and "alternatives" in r.json
    monkeypatch.undo()
    assert avail(storefront, "TEE")["ST-A"] == 2
    verify(app)


# PostgreSQL only: it needs a second writer while the order's transaction is open.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_race_lost_to_a_till_sale_reroutes_with_fresh_stock(
    app: Flask, storefront: Api, shop: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from app.services.orders import reservations

    real = reservations.reserve
    engine = app.extensions["engine"]

    def sale_first(*a: Any, **k: Any) -> Any:
        if not calls:
            # Another till sells ST-A's two TEEs after routing chose ST-A, before reserving.
            with engine.begin() as conn:
                conn.execute(text(
                    "UPDATE stock_levels SET on_hand = 0 WHERE sku_id = (SELECT id FROM skus WHERE code = 'TEE')"
                    " AND location_id = (SELECT id FROM locations WHERE code = 'ST-A')"))  # fmt: skip
        calls.append(1)
        return real(*a, **k)

    calls: list[int] = []
    monkeypatch.setattr(reservations, "reserve", sale_first)
    r = order(storefront, [("TEE", 2)])
    assert r.status_code == 201, r.json
    assert len(calls) == 2
    assert [f["location"] for f in r.json["fulfilments"]] == ["WH"]


@pytest.mark.parametrize(
    ("lines", "delivery"),
    [([("TEE", 1), ("MUG", 1)], CENTRE), ([("TEE", 2), ("MUG", 2)], {"type": "pickup", "location": "ST-A"})],
)
def test_a_replay_answers_exactly_what_the_first_answer_said(
    storefront: Api, shop: None, lines: list[tuple[str, int]], delivery: dict[str, Any]
) -> None:
    first = order(storefront, lines, delivery, key="same-answer")
    again = order(storefront, lines, delivery, key="same-answer")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    assert storefront.get(f"/api/v1/orders/{first.json['id']}").json == first.json


def test_a_null_body_is_named_as_such(storefront: Api, shop: None) -> None:
    r = storefront.post("/api/v1/orders", None, data="null", content_type="application/json")
    assert (r.status_code, r.json["errors"]) == (422, [{"field": "body", "message": "got null"}])
    arr = storefront.post("/api/v1/orders", [])
    assert (arr.status_code, arr.json["errors"][0]["field"]) == (422, "body")


def test_stock_that_comes_back_clears_the_at_risk_flag(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("CAP", 3)]).json
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "CAP", "location": "ST-C", "qty": 4, "source": "pos", "external_ref": "till-3"}]})  # fmt: skip

    def at_risk() -> bool:
        return bool(storefront.get(f"/api/v1/orders/{o['id']}").json["fulfilments"][0]["at_risk"])

    assert at_risk()
    receive_units(ops, "CAP", "ST-C", 1)
    assert at_risk()  # on_hand 2 still short of the 3 reserved
    receive_units(ops, "CAP", "ST-C", 1)
    assert not at_risk()
    verify(app)


def test_a_pickup_flagged_for_a_short_transfer_clears_when_the_transfer_is_whole(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    placed, _ = mugs_by_transfer(storefront)
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "count", "sku": "MUG", "location": "ST-B", "qty": 0, "source": "count", "external_ref": "c-9"},
        {"kind": "count", "sku": "MUG", "location": "WH", "qty": 0, "source": "count", "external_ref": "c-10"}]})  # fmt: skip
    assert risk_flags(storefront, placed["id"]) == {"pickup": True, "transfer": True}
    receive_units(ops, "MUG", "ST-B", 2)
    assert risk_flags(storefront, placed["id"]) == {"pickup": False, "transfer": False}
    verify(app)


def test_a_return_sent_again_answers_the_same_and_other_lines_under_its_reference_are_refused(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = shipped(ops, storefront, [("TEE", 3)])
    body = {"location": "ST-B", "external_ref": "rma-1",
            "lines": [{"sku": "TEE", "qty": 1}, {"sku": "TEE", "qty": 1, "resellable": False}]}  # fmt: skip
    first = ops.post(f"/api/v1/orders/{o['id']}/returns", body)
    assert first.status_code == 200, first.json
    again = ops.post(f"/api/v1/orders/{o['id']}/returns", body)
    assert (again.status_code, again.json) == (200, first.json)
    assert avail(storefront, "TEE")["ST-B"] == 1  # counted once
    other = ops.post(f"/api/v1/orders/{o['id']}/returns", {**body, "lines": [{"sku": "TEE", "qty": 1}]})
    assert (other.status_code, other.json["code"]) == (409, "idempotency_conflict")
    assert storefront.get(f"/api/v1/orders/{o['id']}").json["lines"][0]["returned"] == 2
    verify(app)


def test_a_short_transfer_is_resourced_from_another_location_for_its_pickup(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    placed, _ = mugs_by_transfer(storefront)
    moved = ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "MUG", "location": "ST-B", "qty": 3, "source": "pos", "external_ref": "till-7"}]})  # fmt: skip
    assert moved.json["shortages"][0]["rerouted_to"] == "WH"
    now = storefront.get(f"/api/v1/orders/{placed['id']}").json
    by = {(f["type"], f["location"]): f for f in now["fulfilments"]}
    assert by[("transfer", "ST-B")]["status"] == "cancelled"
    new = by[("transfer", "WH")]
    assert (new["status"], new["to_location"], new["lines"][0]["reserved"]) == ("allocated", "ST-A", 2)
    assert not by[("pickup", "ST-A")]["at_risk"]
    level = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-A"}).json["items"][0]
    assert level["incoming"] == 2  # one transfer's worth, not two
    deliver_transfer(ops, new["id"])
    assert held(ops, by[("pickup", "ST-A")]["id"]) == {("TEE", 2, 0), ("MUG", 2, 0)}
    verify(app)


def test_staff_record_returns_only_at_their_own_stores(
    app: Flask, client: Any, make_key: Callable[..., str], ops: Api, storefront: Api, shop: None
) -> None:
    o = shipped(ops, storefront, [("TEE", 2)])
    staff = Api(client, make_key("staff", ("ST-A",)))
    elsewhere = staff.post(
        f"/api/v1/orders/{o['id']}/returns", {"location": "ST-B", "lines": [{"sku": "TEE", "qty": 1}]}
    )
    assert elsewhere.status_code == 403
    assert avail(storefront, "TEE")["ST-B"] == 0
    mine = staff.post(
        f"/api/v1/orders/{o['id']}/returns", {"location": "ST-A", "lines": [{"sku": "TEE", "qty": 1}]}
    )
    assert mine.status_code == 200, mine.json
    verify(app)


def test_cancelling_some_lines_is_its_own_event_and_the_last_lines_cancel_the_order(
    ops: Api, storefront: Api, shop: None
) -> None:
    o = order(storefront, [("TEE", 2)]).json

    def types() -> list[str]:
        return [
            e["type"]
            for e in ops.get("/api/v1/events").json["items"]
            if e["payload"].get("order_id") == o["id"]
        ]

    storefront.post(f"/api/v1/orders/{o['id']}/cancel", {"lines": [{"sku": "TEE", "qty": 1}]})
    assert "order.lines_cancelled" in types() and "order.cancelled" not in types()
    storefront.post(f"/api/v1/orders/{o['id']}/cancel", {"lines": [{"sku": "TEE", "qty": 1}]})
    assert storefront.get(f"/api/v1/orders/{o['id']}").json["status"] == "cancelled"
    assert types().count("order.cancelled") == 1


def test_an_idempotency_key_belongs_to_its_channel(ops: Api, storefront: Api, shop: None) -> None:
    ops.put("/api/v1/channels", {"code": "app", "name": "App", "locations": ["WH", "ST-A", "ST-B", "ST-C"]})
    web = order(storefront, [("TEE", 1)], key="1001")
    app_order = storefront.post(
        "/api/v1/orders",
        {"channel": "app", "lines": [{"sku": "MUG", "qty": 1}], "delivery": CENTRE},
        headers={"Idempotency-Key": "1001"},
    )
    assert (web.status_code, app_order.status_code) == (201, 201), app_order.json
    assert web.json["id"] != app_order.json["id"]
    again = order(storefront, [("TEE", 1)], key="1001")
    assert (again.status_code, again.json["id"]) == (200, web.json["id"])
    other = order(storefront, [("TEE", 2)], key="1001")
    assert (other.status_code, other.json["code"]) == (409, "idempotency_conflict")


def test_cancelling_awaited_units_gives_back_the_transfer_bringing_them(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    placed, fs = mugs_by_transfer(storefront)

    def mug_levels() -> tuple[int, int]:
        st_b = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-B"}).json["items"][
            0
        ]
        st_a = ops.get("/api/v1/stock/levels", query_string={"sku": "MUG", "location": "ST-A"}).json["items"][
            0
        ]
        return st_b["reserved"], st_a["incoming"]

    assert mug_levels() == (2, 2)
    storefront.post(f"/api/v1/orders/{placed['id']}/cancel", {"lines": [{"sku": "MUG", "qty": 1}]})
    assert mug_levels() == (1, 1)
    assert held(ops, fs["transfer"]["id"]) == {("MUG", 1, 0)}
    storefront.post(f"/api/v1/orders/{placed['id']}/cancel", {"lines": [{"sku": "MUG", "qty": 1}]})
    assert mug_levels() == (0, 0)
    assert ops.get(f"/api/v1/fulfilments/{fs['transfer']['id']}").json["status"] == "cancelled"
    after = storefront.get(f"/api/v1/orders/{placed['id']}").json
    assert after["status"] == "allocated"  # the pickup of the TEEs goes on
    verify(app)


def test_a_transfer_is_received_by_staff_of_the_store_it_arrives_at(
    app: Flask, client: Any, make_key: Callable[..., str], ops: Api, storefront: Api, shop: None
) -> None:
    _, fs = mugs_by_transfer(storefront)
    tid = fs["transfer"]["id"]
    sender, receiver = Api(client, make_key("staff", ("ST-B",))), Api(client, make_key("staff", ("ST-A",)))
    assert receiver.post(f"/api/v1/fulfilments/{tid}/pick").status_code == 403
    assert sender.post(f"/api/v1/fulfilments/{tid}/pick").status_code == 200
    assert sender.post(f"/api/v1/fulfilments/{tid}/ship").status_code == 200
    assert sender.post(f"/api/v1/fulfilments/{tid}/receive").status_code == 403
    assert receiver.post(f"/api/v1/fulfilments/{tid}/receive").status_code == 200
    verify(app)


def test_order_requests_are_counted_by_channel_and_outcome(storefront: Api, shop: None) -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str, channel: str = "web") -> float:
        return (
            REGISTRY.get_sample_value("omnistock_orders_total", {"channel": channel, "outcome": outcome})
            or 0.0
        )

    before = {o: count(o) for o in ("placed", "replayed", "insufficient_stock")}
    unknown_before = count("unknown_channel", "-")
    order(storefront, [("TEE", 1)], key="metrics-1")
    order(storefront, [("TEE", 1)], key="metrics-1")
    assert order(storefront, [("HAT", 5)], allow_split=False).status_code == 409
    r = storefront.post(
        "/api/v1/orders", {"channel": "fax-123", "lines": [{"sku": "TEE", "qty": 1}], "delivery": CENTRE}
    )
    assert r.status_code == 422
    assert {o: count(o) - before[o] for o in before} == {"placed": 1, "replayed": 1, "insufficient_stock": 1}
    assert count("unknown_channel", "-") - unknown_before == 1
    assert count("unknown_channel", "fax-123") == 0  # the caller's text never becomes a series


def test_a_ready_pickup_that_awaits_units_again_cannot_be_collected_yet(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    from app.db import transaction
    from app.domain.fulfilment import InvalidTransition, Status
    from app.services import orders

    factory = app.extensions["session_factory"]
    r = order(storefront, [("TEE", 2)], {"type": "pickup", "location": "ST-A"})
    pid = r.json["fulfilments"][0]["id"]
    transaction(factory, lambda s: orders.transition(s, pid, Status.PICKING))
    transaction(factory, lambda s: orders.transition(s, pid, Status.READY_FOR_PICKUP))
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 1, "source": "pos", "external_ref": "till-11"}]})  # fmt: skip
    assert held(ops, pid) == {("TEE", 1, 1)}  # one unit now comes by transfer
    with pytest.raises(InvalidTransition):
        transaction(factory, lambda s: orders.transition(s, pid, Status.COLLECTED))
    transfer = next(
        f
        for f in storefront.get(f"/api/v1/orders/{r.json['id']}").json["fulfilments"]
        if f["type"] == "transfer"
    )
    deliver_transfer(ops, transfer["id"])
    done = transaction(factory, lambda s: orders.transition(s, pid, Status.COLLECTED))
    assert {(ln.sku, ln.done) for ln in done.lines} == {("TEE", 2)}
    verify(app)


def test_a_return_reference_that_starts_like_another_is_its_own_return(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    o = shipped(ops, storefront, [("TEE", 2)])
    for ref in ("rma-7:2", "rma-7"):
        r = ops.post(f"/api/v1/orders/{o['id']}/returns", {"location": "ST-B", "external_ref": ref,
                                                           "lines": [{"sku": "TEE", "qty": 1}]})  # fmt: skip
        assert r.status_code == 200, r.json
    assert storefront.get(f"/api/v1/orders/{o['id']}").json["lines"][0]["returned"] == 2
    assert avail(storefront, "TEE")["ST-B"] == 2
    verify(app)


def test_a_rerouted_shipment_gives_its_days_capacity_back(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    ops.patch("/api/v1/locations/ST-A", {"daily_capacity": 1})
    first = order(storefront, [("TEE", 2)]).json
    assert first["fulfilments"][0]["location"] == "ST-A"  # ST-A's one shipment of the day
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 2, "source": "pos", "external_ref": "till-12"}]})  # fmt: skip
    assert [f["location"] for f in storefront.get(f"/api/v1/orders/{first['id']}").json["fulfilments"]
            if f["status"] == "allocated"] == ["WH"]  # fmt: skip
    hat = order(storefront, [("HAT", 1)]).json  # ST-A is nearest with a HAT, and has its slot back
    assert hat["fulfilments"][0]["location"] == "ST-A"
    verify(app)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/orders", {"cursor": "OTIyMzM3MjAzNjg1NDc3NTgwOA"}),  # 9223372036854775808
        ("/api/v1/events", {"cursor": "WzkyMjMzNzIwMzY4NTQ3NzU4MDgsMV0"}),  # [2**63, 1]
        ("/api/v1/events", {"after": str(2**64)}),
        ("/api/v1/events", {"after": "123456"}),  # no such event
        ("/api/v1/stock/levels", {"cursor": "eyJhIjoxfQ"}),  # {"a":1}
        ("/api/v1/stock/movements", {"cursor": "eyJhIjoxfQ"}),
        ("/api/v1/skus", {"cursor": "eyJhIjoxfQ"}),
    ],
)
def test_foreign_cursors_and_out_of_range_ids_are_422_not_500(
    ops: Api, shop: None, path: str, query: dict[str, str]
) -> None:
    r = ops.get(path, query_string=query)
    assert r.status_code == 422, r.json
    assert r.json["errors"][0]["field"] in {"cursor", "after"}


def test_an_order_id_past_64_bits_is_refused_by_field(ops: Api, shop: None) -> None:
    r = ops.get(f"/api/v1/orders/{2**64}")
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "id")


def test_units_given_back_by_a_cancel_clear_another_orders_risk(
    app: Flask, ops: Api, storefront: Api, shop: None
) -> None:
    first = order(storefront, [("CAP", 2)]).json
    second = order(storefront, [("CAP", 2)]).json
    ops.post("/api/v1/stock/movements", {"movements": [
        {"kind": "sale", "sku": "CAP", "location": "ST-C", "qty": 3, "source": "pos", "external_ref": "till-13"}]})  # fmt: skip
    assert risk_flags(storefront, second["id"]) == {"ship": True}  # the newest promise is the one short
    storefront.post(f"/api/v1/orders/{first['id']}/cancel", {})
    assert risk_flags(storefront, second["id"]) == {"ship": False}  # its two units are there again
    verify(app)


def test_postcodes_loaded_from_a_file_place_ship_to_orders(
    app: Flask, storefront: Api, shop: None, tmp_path: Any
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("postcode,lat,lon\nW1 1AA,51.51,-0.13\nX9 9ZZ,95,0\n")
    result = app.test_cli_runner().invoke(args=["geo", "load-postcodes", str(bad)])
    assert result.exit_code == 1 and "line 3" in result.output
    body = {"lines": [{"sku": "TEE", "qty": 1}], "delivery": {"type": "ship", "postcode": "w1 1aa"}}
    refused = storefront.post("/api/v1/orders", body)
    assert (refused.status_code, refused.json["code"]) == (422, "unknown_postcode")  # nothing was loaded
    good = tmp_path / "good.csv"
    good.write_text("postcode,lat,lon\nW1 1AA,51.512,-0.124\n")
    result = app.test_cli_runner().invoke(args=["geo", "load-postcodes", str(good)])
    assert result.exit_code == 0 and "loaded 1 postcode" in result.output
    placed = storefront.post("/api/v1/orders", body)
    assert placed.status_code == 201, placed.json
    assert placed.json["fulfilments"][0]["location"] == "ST-A"  # the store at those coordinates
