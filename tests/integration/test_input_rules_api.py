"""The one input rule through the API on SQLite and PostgreSQL: the same 422 naming the field on
both databases where one stored and the other refused (or overflowed), and the OpenAPI document
stating every bound."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

from tests.conftest import Api

LOCS = [{"code": "ST-A", "lat": 51.512, "lon": -0.124}, {"code": "WH", "kind": "warehouse", "lat": 51.53, "lon": -0.28}]
CENTRE = {"type": "ship", "lat": 51.513, "lon": -0.125}


@pytest.fixture
def shop(network: Callable[..., None], receive: Callable[..., Any]) -> None:
    network(LOCS, ["TEE", "MUG"])
    receive(("TEE", "ST-A", 5), ("MUG", "WH", 5))


def refused(r: Any, *fields: str) -> None:
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    assert [e["field"] for e in r.json["errors"]] == list(fields), r.json


def order(api: Api, **kw: Any) -> Any:
    return api.post("/api/v1/orders", {"lines": [{"sku": "TEE", "qty": 1}], "delivery": CENTRE, **kw})


# ---------------------------------------------------------------- text
def test_nul_in_a_body_text_is_the_same_422_on_both_databases(ops: Api) -> None:
    refused(ops.post("/api/v1/skus", {"skus": [{"code": "N1", "name": "mug\x00"}]}), "skus[0].name")
    refused(ops.post("/api/v1/skus", {"skus": [{"code": "N1", "name": "m", "barcode": "\x0012"}]}), "skus[0].barcode")
    refused(ops.put("/api/v1/channels", {"code": "web", "name": "W\x00eb"}), "name")
    assert ops.get("/api/v1/skus").json["items"] == []


def test_nul_in_a_query_or_path_text_is_a_422_naming_it(ops: Api, shop: None) -> None:
    refused(ops.get("/api/v1/stock/levels?sku=TE%00E"), "sku")
    refused(ops.get("/api/v1/stock/levels?location=ST%00"), "location")
    refused(ops.get("/api/v1/stock/movements?kind=sale%00"), "kind")
    refused(ops.get("/api/v1/orders?customer_ref=c%00"), "customer_ref")
    refused(ops.get("/api/v1/events?type=order.created%00"), "type")
    refused(ops.get("/api/v1/skus/TE%00E"), "code")
    refused(ops.get("/api/v1/locations/ST%00A"), "code")
    refused(ops.put("/api/v1/stock/levels/TEE/ST%00A/safety-stock", {"safety_stock": 1}), "location")


def test_a_lone_surrogate_never_reaches_a_database(ops: Api) -> None:
    # Python's JSON reader takes a lone surrogate escape; the API's answers 400 or 422, never 500.
    raw = b'{"skus": [{"code": "S1", "name": "x\\ud800"}]}'
    r = ops.client.post("/api/v1/skus", data=raw, headers={**ops.headers, "Content-Type": "application/json"})
    assert r.status_code in {400, 422}, r.json
    assert r.mimetype == "application/problem+json"
    if r.status_code == 422:
        assert [e["field"] for e in r.json["errors"]] == ["skus[0].name"]
    assert ops.get("/api/v1/skus").json["items"] == []


def test_a_channel_code_longer_than_its_column_is_refused(ops: Api) -> None:
    refused(ops.put("/api/v1/channels", {"code": "c" * 33, "name": "x"}), "code")
    assert ops.put("/api/v1/channels", {"code": "c" * 32, "name": "x"}).status_code == 200
    refused(ops.post("/api/v1/locations", {"code": "L", "name": "x", "kind": "store", "channels": ["c" * 63]}),
            "channels[0]")  # fmt: skip


# ---------------------------------------------------------------- integers
def test_a_safety_stock_past_its_column_is_refused(ops: Api, shop: None) -> None:
    path = "/api/v1/stock/levels/TEE/ST-A/safety-stock"
    refused(ops.put(path, {"safety_stock": 2528351101594470}), "safety_stock")
    refused(ops.put(path, {"safety_stock": 2**31}), "safety_stock")
    assert ops.put(path, {"safety_stock": 2**31 - 1}).json["safety_stock"] == 2**31 - 1


@pytest.mark.parametrize("wid", [2**31, 2**63 - 1, 2**63, 2**64])
def test_a_webhook_id_past_its_column_is_a_422_on_every_webhook_route(ops: Api, wid: int) -> None:
    refused(ops.get(f"/api/v1/webhooks/{wid}/deliveries"), "id")
    refused(ops.patch(f"/api/v1/webhooks/{wid}", {"active": True}), "id")
    refused(ops.client.delete(f"/api/v1/webhooks/{wid}", headers=ops.headers), "id")


def test_an_id_in_range_that_names_nothing_is_a_404(ops: Api) -> None:
    assert ops.get(f"/api/v1/webhooks/{2**31 - 1}/deliveries").status_code == 404
    assert ops.get(f"/api/v1/orders/{2**63 - 1}").status_code == 404
    refused(ops.get(f"/api/v1/orders/{2**63}"), "id")
    refused(ops.get(f"/api/v1/fulfilments/{2**63}"), "id")


# ---------------------------------------------------------------- the issue's defects
def test_a_misspelt_time_zone_is_refused_and_quotes_keep_working(
    ops: Api, storefront: Api, shop: None
) -> None:
    body = {"code": "ST-Z", "name": "Z", "kind": "store", "active": False, "timezone": "Europe/Londn"}
    refused(ops.post("/api/v1/locations", body), "timezone")
    refused(ops.patch("/api/v1/locations/ST-A", {"timezone": "Europe/Londn"}), "timezone")
    refused(ops.put("/api/v1/locations", {"locations": [body]}), "locations[0].timezone")
    quoted = storefront.post("/api/v1/routing/quote", {"lines": [{"sku": "TEE", "qty": 1}], "delivery": CENTRE})
    assert quoted.status_code == 200, quoted.json
    r = ops.patch("/api/v1/locations/ST-A", {"timezone": "Europe/London"})
    assert (r.status_code, r.json["timezone"]) == (200, "Europe/London")


def test_one_location_code_twice_in_a_bulk_is_a_422_naming_the_second(ops: Api) -> None:
    loc = {"code": "ST-1", "name": "One", "kind": "store"}
    refused(ops.put("/api/v1/locations", {"locations": [loc, {**loc, "code": "ST-2"}, loc]}), "locations[2].code")
    assert ops.get("/api/v1/locations").json["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        {"created_from": "0001-01-01T00:00:00+14:00"},
        {"created_to": "9999-12-31T23:59:59-12:00"},
        {"created_from": "0001-01-01T00:00:00+14:00", "created_to": "9999-12-31T23:59:59-12:00"},
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_filters_without_a_bound(
    ops: Api, storefront: Api, shop: None, query: dict[str, str]
) -> None:
    placed = order(storefront, customer_ref="carol")
    assert placed.status_code == 201, placed.json
    for api, path in [(ops, "/api/v1/orders"), (storefront, "/api/v1/customers/carol/orders")]:
        r = api.get(path, query_string=query)
        assert r.status_code == 200, r.json
        assert [o["id"] for o in r.json["items"]] == [placed.json["id"]]
    empty = ops.get("/api/v1/orders", query_string={"created_from": "9999-12-31T23:59:59-12:00"})
    assert (empty.status_code, empty.json["items"]) == (200, [])


@pytest.mark.parametrize(
    "url", ["http://example.com/a hook", "http://exa mple.com/", "http://example.com/\x01", "http://h:70000/"]
)
def test_a_webhook_url_that_can_never_be_posted_to_is_refused(ops: Api, url: str) -> None:
    refused(ops.post("/api/v1/webhooks", {"url": url, "secret": "s" * 20, "event_types": ["*"]}), "url")
    assert ops.get("/api/v1/webhooks").json["items"] == []


@pytest.mark.parametrize("ref", ["a/b", "..", "tab\there"])
def test_a_customer_ref_its_orders_path_cannot_carry_is_refused(storefront: Api, shop: None, ref: str) -> None:
    refused(order(storefront, customer_ref=ref), "customer_ref")


def test_a_customer_ref_with_spaces_and_accents_finds_its_orders(storefront: Api, shop: None) -> None:
    placed = order(storefront, customer_ref="Zoë Smith")
    assert placed.status_code == 201, placed.json
    r = storefront.get(f"/api/v1/customers/{quote('Zoë Smith')}/orders")
    assert [o["id"] for o in r.json["items"]] == [placed.json["id"]]


@pytest.mark.parametrize("when", ["9999-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"])
def test_occurred_at_far_from_now_is_refused(ops: Api, shop: None, when: str) -> None:
    m = {"kind": "receipt", "sku": "TEE", "location": "ST-A", "qty": 1, "occurred_at": when}
    refused(ops.post("/api/v1/stock/movements", {"movements": [m]}), "movements[0].occurred_at")


def test_lat_without_lon_names_the_missing_coordinate(ops: Api, storefront: Api, shop: None) -> None:
    refused(ops.post("/api/v1/locations", {"code": "ST-9", "name": "x", "kind": "store", "lat": 51.5}), "lon")
    refused(ops.patch("/api/v1/locations/ST-A", {"lon": -0.1}), "lat")
    refused(storefront.get("/api/v1/availability", query_string={"skus": "TEE", "lat": "51.5"}), "lon")
    r = storefront.post("/api/v1/orders", {"lines": [{"sku": "TEE", "qty": 1}], "delivery": {"type": "ship", "lat": 51.5}})
    refused(r, "delivery.lon")


def test_too_many_skus_in_one_availability_query_is_a_422(storefront: Api, shop: None) -> None:
    codes = ",".join(["TEE"] + [f"S{i}" for i in range(200)])
    refused(storefront.get("/api/v1/availability", query_string={"skus": codes}), "skus")


# ---------------------------------------------------------------- the document states it all
def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _leaves(spec: dict[str, Any], node: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every typed schema in a request schema, with where it sits."""
    stack = [(where, node)]
    seen: set[int] = set()
    while stack:
        at, raw = stack.pop()
        item = _resolve(spec, raw)
        if id(item) in seen:
            continue
        seen.add(id(item))
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend((at, sub) for sub in item.get(key, []))
        for name, sub in item.get("properties", {}).items():
            stack.append((f"{at}.{name}", sub))
        if item.get("type") == "array":
            stack.append((f"{at}[]", item["items"]))
        if "type" in item:
            yield at, item


def test_every_request_field_states_its_bounds_in_openapi(app: Flask) -> None:
    spec = app.test_client().get("/api/openapi.json").json
    unbounded = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            roots = [(f"{p['in']}:{p['name']}", p["schema"]) for p in op.get("parameters", [])
                     if p["in"] in {"path", "query"}]  # fmt: skip
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                roots.append(("body", body["schema"]))
            for root, schema in roots:
                for at, s in _leaves(spec, schema, root):
                    fixed = "enum" in s or "const" in s or s.get("format") == "date-time"
                    missing = {
                        "string": set() if fixed else {"maxLength", "pattern"},
                        "integer": {"minimum", "maximum"},
                        "number": {"minimum", "maximum"},
                        "array": {"maxItems"},
                    }.get(s["type"], set()) - set(s)
                    if missing:
                        unbounded.append(f"{method.upper()} {path} {at}: {sorted(missing)}")
    assert unbounded == []


def test_openapi_states_the_column_bounds_the_issue_names(app: Flask) -> None:
    spec = app.test_client().get("/api/openapi.json").json
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    assert schemas["ChannelIn"]["properties"]["code"]["maxLength"] == 32
    assert schemas["SafetyStockIn"]["properties"]["safety_stock"]["anyOf"][0]["maximum"] == 2**31 - 1
    assert schemas["MovementBatch"]["properties"]["movements"]["maxItems"] == 5000
    assert schemas["SkuIn"]["properties"]["name"]["pattern"] == "^[^\\u0000]*$"
    webhook_id = paths["/api/v1/webhooks/{id}"]["patch"]["parameters"][0]["schema"]
    assert (webhook_id["minimum"], webhook_id["maximum"]) == (1, 2**31 - 1)
    order_id = paths["/api/v1/orders/{id}"]["get"]["parameters"][0]["schema"]
    assert order_id["maximum"] == 2**63 - 1
    levels = {p["name"]: p["schema"] for p in paths["/api/v1/stock/levels"]["get"]["parameters"]}
    assert levels["sku"]["anyOf"][0]["maxLength"] == 64
    assert levels["limit"]["anyOf"][0]["maximum"] == 1000
    skus = next(p for p in paths["/api/v1/availability"]["get"]["parameters"] if p["name"] == "skus")
    assert skus["schema"]["maxLength"] == 200 * 65 - 1
    refused_as = paths["/api/v1/skus"]["post"]["responses"]["422"]["content"]
    assert refused_as["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
