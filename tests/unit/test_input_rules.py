"""The one input rule, on the schema types alone: storable text bounded to its column, integers
bounded to theirs, capped lists and depth, representable instants, and fields named in errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from pydantic import BaseModel, ValidationError
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import InstrumentedAttribute

from app import models
from app.schemas import (
    INT32_MAX,
    MAX_JSON_DEPTH,
    UTC_MAX,
    UTC_MIN,
    AvailabilityQuery,
    ChannelIn,
    CustomerPath,
    EventQuery,
    FulfilmentPath,
    LevelPath,
    LevelQuery,
    LocationBulk,
    LocationCreate,
    LocationPath,
    LocationUpdate,
    MovementBatch,
    MovementIn,
    MovementQuery,
    OrderIn,
    OrderPath,
    OrderQuery,
    Problem,
    ReturnIn,
    SafetyStockIn,
    SkuBulk,
    SkuIn,
    SkuListQuery,
    SkuPath,
    SkuUpdate,
    WebhookIn,
    WebhookPath,
    WebhookUpdate,
    json_depth_exceeds,
    problem_responses,
)
from app.web.errors import validation_errors

SECRET = "s" * 20
SHIP = {"type": "ship", "lat": 51.5, "lon": -0.1}


def fields_at_fault(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    """The fields a 422 would name for this input (as the API's error map names them)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        # The request carries the input as JSON so errors name fields as sent (no union tags).
        with Flask(__name__).test_request_context("/", json=data):
            return [e["field"] for e in validation_errors(exc)]
    return []


# Every kind of request model (body, query, path) with one valid input and one text field in it.
TEXT_FIELDS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (SkuIn, {"code": "A", "name": "x"}, "name"),
    (SkuIn, {"code": "A", "name": "x", "barcode": "1"}, "barcode"),
    (SkuUpdate, {"name": "x"}, "name"),
    (LocationCreate, {"code": "L", "name": "x", "kind": "store", "postcode": "E1"}, "postcode"),
    (ChannelIn, {"code": "web", "name": "x"}, "name"),
    (MovementIn, {"kind": "receipt", "sku": "A", "location": "L", "qty": 1, "note": "x"}, "note"),
    (MovementIn, {"kind": "receipt", "sku": "A", "location": "L", "qty": 1, "source": "pos"}, "source"),
    (OrderIn, {"lines": [{"sku": "A", "qty": 1}], "delivery": SHIP, "customer_ref": "c"}, "customer_ref"),
    (OrderIn, {"lines": [{"sku": "A", "qty": 1}], "delivery": SHIP, "external_id": "e"}, "external_id"),
    (ReturnIn, {"location": "L", "lines": [{"sku": "A", "qty": 1}], "external_ref": "r"}, "external_ref"),
    (WebhookIn, {"url": "http://h/x", "secret": SECRET, "event_types": ["*"]}, "secret"),
    (LevelQuery, {"sku": "A"}, "sku"),
    (MovementQuery, {"kind": "receipt"}, "kind"),
    (OrderQuery, {"customer_ref": "c"}, "customer_ref"),
    (EventQuery, {"type": "order.created"}, "type"),
    (SkuListQuery, {"cursor": "abc"}, "cursor"),
    (AvailabilityQuery, {"skus": "A"}, "skus"),
    (SkuPath, {"code": "A"}, "code"),
    (LocationPath, {"code": "L"}, "code"),
    (LevelPath, {"sku": "A", "location": "L"}, "location"),
    (CustomerPath, {"customer_ref": "c"}, "customer_ref"),
]


@pytest.mark.parametrize(("model", "valid", "field"), TEXT_FIELDS)
@pytest.mark.parametrize("bad", ["\x00", chr(0xD800), chr(0xDFFF)], ids=["nul", "high", "low"])
def test_text_with_nul_or_a_lone_surrogate_is_refused_by_name(
    model: type[BaseModel], valid: dict[str, Any], field: str, bad: str
) -> None:
    assert fields_at_fault(model, valid) == []
    assert fields_at_fault(model, {**valid, field: valid[field] + bad}) == [field]


def test_text_keeps_real_unicode_and_is_trimmed() -> None:
    sku = SkuIn.model_validate({"code": " A-1 ", "name": " Zoë's 😀 mug "})
    assert (sku.code, sku.name) == ("A-1", "Zoë's 😀 mug")


# (model, field, column): each text field is bounded to the column that stores it.
COLUMNS: list[tuple[type[BaseModel], str, InstrumentedAttribute[Any]]] = [
    (ChannelIn, "code", models.Channel.code),
    (ChannelIn, "name", models.Channel.name),
    (LocationCreate, "code", models.Location.code),
    (LocationCreate, "name", models.Location.name),
    (LocationCreate, "postcode", models.Location.postcode),
    (LocationCreate, "timezone", models.Location.timezone),
    (SkuIn, "code", models.Sku.code),
    (SkuIn, "name", models.Sku.name),
    (SkuIn, "barcode", models.Sku.barcode),
    (MovementIn, "source", models.Movement.source),
    (MovementIn, "external_ref", models.Movement.external_ref),
    (MovementIn, "reason", models.Movement.reason),
    (MovementIn, "note", models.Movement.note),
    (MovementQuery, "kind", models.Movement.kind),
    (OrderIn, "external_id", models.Order.external_id),
    (OrderIn, "customer_ref", models.Order.customer_ref),
    (OrderIn, "channel", models.Channel.code),
    (OrderQuery, "channel", models.Channel.code),
    (AvailabilityQuery, "channel", models.Channel.code),
    (WebhookIn, "url", models.WebhookSubscription.url),
    (WebhookIn, "secret", models.WebhookSubscription.secret),
    (EventQuery, "type", models.OutboxEvent.type),
    (LevelPath, "sku", models.Sku.code),
    (LevelPath, "location", models.Location.code),
    (CustomerPath, "customer_ref", models.Order.customer_ref),
    (SafetyStockIn, "safety_stock", models.StockLevel.safety_stock),
    (LocationCreate, "daily_capacity", models.Location.daily_capacity),
    (LocationCreate, "default_safety_stock", models.Location.default_safety_stock),
    (LocationCreate, "priority", models.Location.priority),
    (MovementIn, "qty", models.Movement.qty),
    (WebhookPath, "id", models.WebhookSubscription.id),
    (OrderPath, "id", models.Order.id),
    (FulfilmentPath, "id", models.Fulfilment.id),
    (EventQuery, "after", models.OutboxEvent.id),
]


def _stated(model: type[BaseModel], field: str) -> dict[str, Any]:
    prop = model.model_json_schema()["properties"][field]
    return next((s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"), prop)


@pytest.mark.parametrize(("model", "field", "column"), COLUMNS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_each_field_is_bounded_to_its_column_and_says_so(
    model: type[BaseModel], field: str, column: InstrumentedAttribute[Any]
) -> None:
    stated = _stated(model, field)
    kind = column.property.columns[0].type
    if isinstance(kind, String):
        assert kind.length is not None
        assert 1 <= stated["maxLength"] <= kind.length
        assert "pattern" in stated
        too_long = "a" * (stated["maxLength"] + 1)
        assert fields_at_fault(model, {**_valid(model), field: too_long}) == [field]
    else:
        bound = 2**63 - 1 if isinstance(kind, BigInteger) else INT32_MAX
        assert isinstance(kind, Integer | BigInteger)
        assert stated["type"] == "integer"
        assert stated["maximum"] <= bound
        assert stated["minimum"] >= -bound - 1
        assert fields_at_fault(model, {**_valid(model), field: stated["maximum"] + 1}) == [field]


def _valid(model: type[BaseModel]) -> dict[str, Any]:
    return {
        ChannelIn: {"code": "web", "name": "x"},
        LocationCreate: {"code": "L", "name": "x", "kind": "store"},
        SkuIn: {"code": "A", "name": "x"},
        MovementIn: {"kind": "receipt", "sku": "A", "location": "L", "qty": 1},
        MovementQuery: {},
        OrderIn: {"lines": [{"sku": "A", "qty": 1}], "delivery": SHIP},
        OrderQuery: {},
        AvailabilityQuery: {"skus": "A"},
        WebhookIn: {"url": "http://h/x", "secret": SECRET, "event_types": ["*"]},
        EventQuery: {},
        LevelPath: {"sku": "A", "location": "L"},
        CustomerPath: {"customer_ref": "c"},
        SafetyStockIn: {"safety_stock": 1},
        WebhookPath: {"id": 1},
        OrderPath: {"id": 1},
        FulfilmentPath: {"id": 1},
    }[model]


def test_a_safety_stock_past_32_bits_is_refused_by_name() -> None:
    assert fields_at_fault(SafetyStockIn, {"safety_stock": 2528351101594470}) == ["safety_stock"]
    assert fields_at_fault(SafetyStockIn, {"safety_stock": INT32_MAX}) == []


def test_lists_are_capped_and_say_so() -> None:
    assert MovementBatch.model_json_schema()["properties"]["movements"]["maxItems"] == 5000
    one = {"kind": "receipt", "sku": "A", "location": "L", "qty": 1}
    assert fields_at_fault(MovementBatch, {"movements": [one] * 5001}) == ["movements"]
    assert _stated(OrderIn, "lines")["maxItems"] == 200
    assert _stated(WebhookIn, "event_types")["maxItems"] >= 1
    assert _stated(LocationCreate, "channels")["maxItems"] >= 1


def test_availability_takes_at_most_200_skus_and_states_the_list_length() -> None:
    assert _stated(AvailabilityQuery, "skus")["maxLength"] == 200 * 65 - 1
    assert fields_at_fault(AvailabilityQuery, {"skus": ",".join(f"S{i}" for i in range(200))}) == []
    assert fields_at_fault(AvailabilityQuery, {"skus": ",".join(f"S{i}" for i in range(201))}) == ["skus"]
    assert fields_at_fault(AvailabilityQuery, {"skus": "A," + "B" * 65}) == ["skus"]
    assert AvailabilityQuery.model_validate({"skus": " A, B ,A,,"}).sku_codes == ["A", "B"]


# ---------------------------------------------------------------- the defects
def test_a_time_zone_must_be_a_real_iana_zone() -> None:
    base = {"code": "L", "name": "x", "kind": "store"}
    assert fields_at_fault(LocationCreate, {**base, "timezone": "Europe/Londn"}) == ["timezone"]
    assert fields_at_fault(LocationCreate, {**base, "timezone": "../../etc/passwd"}) == ["timezone"]
    assert fields_at_fault(LocationUpdate, {"timezone": "Mars/Olympus"}) == ["timezone"]
    assert fields_at_fault(LocationCreate, {**base, "timezone": "Europe/London"}) == []


def test_one_location_code_twice_in_a_bulk_names_the_second() -> None:
    loc = {"name": "x", "kind": "store"}
    body = {"locations": [{"code": "A", **loc}, {"code": "B", **loc}, {"code": "A", **loc}]}
    assert fields_at_fault(LocationBulk, body) == ["locations[2].code"]
    skus = {"skus": [{"code": "A", "name": "x"}, {"code": "A", "name": "y"}]}
    assert fields_at_fault(SkuBulk, skus) == ["skus[1].code"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0001-01-01T00:00:00+14:00", UTC_MIN),
        ("9999-12-31T23:59:59-12:00", UTC_MAX),
        ("2026-03-01T12:00:00+01:00", datetime(2026, 3, 1, 11, tzinfo=UTC)),
    ],
)
def test_query_instants_past_the_ends_of_the_calendar_mean_no_bound(value: str, expected: datetime) -> None:
    q = OrderQuery.model_validate({"created_from": value, "created_to": value})
    assert q.created_from == q.created_to == expected
    assert q.created_from is not None and q.created_from.utcoffset() == timedelta(0)


def test_query_instants_still_need_a_time_zone() -> None:
    assert fields_at_fault(OrderQuery, {"created_from": "2026-01-01T00:00:00"}) == ["created_from"]


@pytest.mark.parametrize(
    "url",
    ["http://exa mple.com/x", "http://example.com/a b", "http://example.com/\tx", "http://h/\x7f",
     "http://", "ftp://example.com/x", "http://example.com:99999/x", "http://[::1/x", "http://\x00h/"],
)  # fmt: skip
def test_a_webhook_url_must_be_one_the_job_can_post_to(url: str) -> None:
    assert fields_at_fault(WebhookIn, {"url": url, "secret": SECRET, "event_types": ["*"]}) == ["url"]
    assert fields_at_fault(WebhookUpdate, {"url": url}) == ["url"]


def test_good_webhook_urls_are_taken() -> None:
    for url in ["https://hooks.example.com/omnistock?x=1", "http://127.0.0.1:8080/hook", "http://[::1]:9/x"]:
        assert fields_at_fault(WebhookIn, {"url": url, "secret": SECRET, "event_types": ["*"]}) == []


@pytest.mark.parametrize("ref", ["a/b", "/", ".", "..", "line\nbreak", "tab\there", "\x85"])
def test_a_customer_ref_must_survive_being_a_path_segment(ref: str) -> None:
    order = {"lines": [{"sku": "A", "qty": 1}], "delivery": SHIP, "customer_ref": ref}
    assert fields_at_fault(OrderIn, order) == ["customer_ref"]
    assert fields_at_fault(CustomerPath, {"customer_ref": ref}) == ["customer_ref"]


def test_ordinary_customer_refs_are_taken() -> None:
    for ref in ["jane@example.com", "C-1234", "Zoë Smith", "a.b", "...", "50%"]:
        assert fields_at_fault(CustomerPath, {"customer_ref": ref}) == []


@pytest.mark.parametrize(
    "when",
    ["9999-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z",
     (datetime.now(UTC) + timedelta(days=2)).isoformat(), "2026-01-01T10:00:00"],
)  # fmt: skip
def test_occurred_at_is_a_time_a_movement_can_have(when: str) -> None:
    batch = {"movements": [{"kind": "receipt", "sku": "A", "location": "L", "qty": 1, "occurred_at": when}]}
    assert fields_at_fault(MovementBatch, batch) == ["movements[0].occurred_at"]


def test_occurred_at_takes_the_past_and_a_little_clock_skew() -> None:
    for when in ["2000-01-01T00:00:00Z", "2019-06-01T08:00:00-07:00", (datetime.now(UTC) + timedelta(hours=20)).isoformat()]:
        m = MovementIn.model_validate({"kind": "receipt", "sku": "A", "location": "L", "qty": 1, "occurred_at": when})
        assert m.occurred_at is not None and m.occurred_at.utcoffset() == timedelta(0)


def test_lat_without_lon_names_the_missing_one_not_the_body() -> None:
    loc = {"code": "L", "name": "x", "kind": "store"}
    assert fields_at_fault(LocationCreate, {**loc, "lat": 51.5}) == ["lon"]
    assert fields_at_fault(LocationUpdate, {"lon": -0.1}) == ["lat"]
    assert fields_at_fault(LocationBulk, {"locations": [{**loc, "lat": 51.5}]}) == ["locations[0].lon"]
    assert fields_at_fault(AvailabilityQuery, {"skus": "A", "lat": "51.5"}) == ["lon"]
    order = {"lines": [{"sku": "A", "qty": 1}], "delivery": {"type": "ship", "lon": -0.1}}
    assert fields_at_fault(OrderIn, order) == ["delivery.lat"]


def test_ids_past_their_column_are_refused_by_name() -> None:
    assert fields_at_fault(WebhookPath, {"id": 2**31}) == ["id"]
    assert fields_at_fault(WebhookPath, {"id": 2**31 - 1}) == []
    assert fields_at_fault(OrderPath, {"id": 2**63}) == ["id"]
    assert fields_at_fault(OrderPath, {"id": 0}) == ["id"]


# ---------------------------------------------------------------- depth and problems
def test_json_depth_counts_nested_objects_and_arrays() -> None:
    assert not json_depth_exceeds("text", 0)
    assert not json_depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert json_depth_exceeds({"a": [1, {"b": 2}]}, 2)
    assert json_depth_exceeds([[[[]]]], 3)
    assert not json_depth_exceeds({"lines": [{"sku": "A", "qty": 1}], "delivery": SHIP}, MAX_JSON_DEPTH)


def test_json_depth_of_a_hostile_nesting_needs_no_recursion() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(200_000):
        node.append([])
        node = node[0]
    assert json_depth_exceeds(deep, MAX_JSON_DEPTH)


def test_problem_responses_document_each_status_with_the_problem_schema() -> None:
    assert problem_responses(401, 403, 422) == {401: Problem, 403: Problem, 422: Problem}
    with pytest.raises(ValueError, match="200"):
        problem_responses(200)
