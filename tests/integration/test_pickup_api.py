"""Click-and-collect through the API, on both databases: the promise, the counter's life cycle, the
pickup code and its lock, partial pickup, not-found, scope, and the reminder/expiry clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import unit_of_work, utcnow
from app.models import OutboxEvent
from app.services import keys, ledger
from app.services.pickup import expiry
from tests.conftest import Api

V1 = "/api/v1"
LOCS: list[dict[str, Any]] = [
    {"code": "ST-A", "lat": 51.512, "lon": -0.124, "pick_minutes": 30},
    {"code": "ST-B", "lat": 51.539, "lon": -0.143},
    {"code": "WH-1", "kind": "warehouse", "lat": 51.53, "lon": -0.28, "pickup": False, "priority": 10,
     "transfer_hours": 24},
]  # fmt: skip


@pytest.fixture
def shop(
    app: Flask, client: FlaskClient, network: Callable[..., None], receive: Callable[..., Any], ops: Api
) -> dict[str, Api]:
    network(LOCS, ["TEE", "CAP", "MUG"], channels=("web",))
    receive(("TEE", "ST-A", 10), ("CAP", "ST-A", 10), ("TEE", "ST-B", 5), ("MUG", "WH-1", 5))
    with unit_of_work(app.extensions["session_factory"]) as session:
        _, staff_a = keys.create_key(session, role="staff", name="a", locations=("ST-A",))
        _, staff_b = keys.create_key(session, role="staff", name="b", locations=("ST-B",))
        _, front = keys.create_key(session, role="storefront", name="shop")
    return {"ops": ops, "a": Api(client, staff_a), "b": Api(client, staff_b), "shop": Api(client, front)}


def _place(shop: dict[str, Api], lines: list[tuple[str, int]], store: str = "ST-A") -> dict[str, Any]:
    r = shop["shop"].post(f"{V1}/orders", {
        "channel": "web", "customer_ref": "cust-1", "customer_name": "Ada Lovelace",
        "lines": [{"sku": s, "qty": q} for s, q in lines], "delivery": {"type": "pickup", "location": store},
    })  # fmt: skip
    assert r.status_code == 201, r.json
    return r.json  # type: ignore[no-any-return]


def _pickup_id(order: dict[str, Any]) -> int:
    return next(int(f["id"]) for f in order["fulfilments"] if f["type"] == "pickup")


def _ready(shop: dict[str, Api], fid: int) -> str:
    assert shop["a"].post(f"{V1}/pickups/{fid}/pick").status_code == 200
    r = shop["a"].post(f"{V1}/pickups/{fid}/ready")
    assert r.status_code == 200, r.json
    return str(r.json["code"])


def _level(shop: dict[str, Api], sku: str, loc: str) -> dict[str, Any]:
    items = shop["ops"].get(f"{V1}/stock/levels", query_string={"sku": sku, "location": loc}).json["items"]
    return items[0]  # type: ignore[no-any-return]


def _events(app: Flask, type_: str) -> list[dict[str, Any]]:
    with unit_of_work(app.extensions["session_factory"]) as session:
        return [dict(e.payload) for e in session.scalars(select(OutboxEvent).where(OutboxEvent.type == type_))]


def _verify(app: Flask) -> None:
    with unit_of_work(app.extensions["session_factory"]) as session:
        assert ledger.verify(session) == []


def test_life_cycle_promise_code_and_ledger(app: Flask, shop: dict[str, Api]) -> None:
    before = utcnow()
    quote = shop["shop"].post(f"{V1}/routing/quote", {"lines": [{"sku": "TEE", "qty": 2}],
                                                      "delivery": {"type": "pickup", "location": "ST-A"}})  # fmt: skip
    assert quote.status_code == 200
    order = _place(shop, [("TEE", 2)])
    fid = _pickup_id(order)
    promised = datetime.fromisoformat(order["fulfilments"][0]["promised_at"])
    # Always open by default: now plus the store's 30 minutes of picking.
    assert timedelta(minutes=29) < promised - before < timedelta(minutes=31)
    assert datetime.fromisoformat(quote.json["ready_by"]) <= promised
    assert order["customer_name"] == "Ada Lovelace"
    allocated = _events(app, "fulfilment.allocated")
    assert allocated[-1]["promised_at"]

    q = shop["a"].get(f"{V1}/locations/ST-A/pickups").json
    assert q["counts"] == {"to_pick": 1, "ready": 0, "overdue": 0, "collected_today": 0}
    assert [p["id"] for p in q["items"]] == [fid] and q["items"][0]["customer_name"] == "Ada Lovelace"

    code = _ready(shop, fid)
    assert len(code) == 6
    ready = _events(app, "fulfilment.ready_for_pickup")[-1]
    assert ready["code"] == code and ready["customer_ref"] == "cust-1" and ready["location"] == "ST-A"
    assert ready["lines"] == [{"sku": "TEE", "qty": 2}] and ready["hold_until"]
    got = shop["a"].get(f"{V1}/pickups/{fid}").json
    assert got["status"] == "ready_for_pickup" and got["tab"] == "ready" and got["hold_until"]
    assert "code" not in got

    wrong = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": "AAAAAA"})
    assert wrong.status_code == 422 and wrong.json["code"] == "wrong_pickup_code"
    assert wrong.json["tries_left"] == 4 and wrong.json["errors"][0]["field"] == "code"
    assert shop["a"].get(f"{V1}/pickups/{fid}").json["tries_left"] == 4  # the wrong try was kept

    done = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": code.lower()})
    assert done.status_code == 200, done.json
    assert done.json["status"] == "collected" and done.json["tab"] == "collected_today"
    level = _level(shop, "TEE", "ST-A")
    assert (level["on_hand"], level["reserved"]) == (8, 0)
    assert shop["ops"].get(f"{V1}/orders/{order['id']}").json["status"] == "completed"
    again = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": code})
    assert again.status_code == 409 and again.json["code"] == "invalid_transition"
    _verify(app)


def test_partial_pickup_returns_the_rest_to_stock(app: Flask, shop: dict[str, Api]) -> None:
    order = _place(shop, [("TEE", 3), ("CAP", 2)])
    fid = _pickup_id(order)
    code = _ready(shop, fid)
    bad = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": code, "lines": [{"sku": "TEE", "qty": 4}]})
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "lines[0].qty"
    r = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": code, "lines": [{"sku": "TEE", "qty": 2}]})
    assert r.status_code == 200, r.json
    lines = {ln["sku"]: ln for ln in r.json["lines"]}
    assert (lines["TEE"]["done"], lines["TEE"]["cancelled"]) == (2, 1)
    assert (lines["CAP"]["done"], lines["CAP"]["cancelled"]) == (0, 2)
    tee, cap = _level(shop, "TEE", "ST-A"), _level(shop, "CAP", "ST-A")
    assert (tee["on_hand"], tee["reserved"]) == (8, 0)
    assert (cap["on_hand"], cap["reserved"]) == (10, 0)
    collected = _events(app, "fulfilment.collected")[-1]
    assert sorted(collected["not_collected"], key=lambda x: x["sku"]) == [{"sku": "CAP", "qty": 2},
                                                                          {"sku": "TEE", "qty": 1}]
    _verify(app)


def test_wrong_codes_lock_the_pickup_and_tell_the_store(app: Flask, shop: dict[str, Api]) -> None:
    fid = _pickup_id(_place(shop, [("TEE", 1)]))
    code = _ready(shop, fid)
    answers = [shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": "WRONG1"}) for _ in range(5)]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 409]
    assert answers[-1].json["code"] == "pickup_locked" and answers[-1].json["locked_until"]
    # Locked: even the right code is refused until the lock ends.
    right = shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": code})
    assert right.status_code == 409 and right.json["code"] == "pickup_locked"
    locked = _events(app, "fulfilment.pickup_locked")
    assert len(locked) == 1 and locked[0]["location"] == "ST-A"
    assert shop["a"].get(f"{V1}/pickups/{fid}").json["locked_until"]


def test_scanned_barcode_collects_and_lookup_finds(app: Flask, shop: dict[str, Api]) -> None:
    order = _place(shop, [("TEE", 1)])
    fid = _pickup_id(order)
    assert shop["a"].post(f"{V1}/pickups/{fid}/pick").status_code == 200
    ready = shop["a"].post(f"{V1}/pickups/{fid}/ready").json
    assert ready["barcode"] == f"PU-{fid}-{ready['code']}"
    found = shop["a"].get(f"{V1}/pickups/lookup", query_string={"scan": str(order["id"])})
    assert found.status_code == 200 and found.json["id"] == fid
    assert shop["a"].get(f"{V1}/pickups/lookup", query_string={"scan": ready["barcode"]}).json["id"] == fid
    assert shop["b"].get(f"{V1}/pickups/lookup", query_string={"scan": str(order["id"])}).status_code == 404
    # Another pickup's barcode is not this pickup's code.
    other = _pickup_id(_place(shop, [("CAP", 1)]))
    assert shop["a"].post(f"{V1}/pickups/{other}/pick").status_code == 200
    other_code = shop["a"].post(f"{V1}/pickups/{other}/ready").json["code"]
    assert shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": f"PU-{other}-{other_code}"}).status_code == 422
    assert shop["a"].post(f"{V1}/pickups/{fid}/collect", {"code": ready["barcode"]}).status_code == 200


def test_other_store_staff_see_and_do_nothing(shop: dict[str, Api]) -> None:
    fid = _pickup_id(_place(shop, [("TEE", 1)]))
    b = shop["b"]
    assert b.get(f"{V1}/locations/ST-A/pickups").status_code == 403
    assert b.get(f"{V1}/pickups/{fid}").status_code == 403
    for action in ("pick", "ready"):
        assert b.post(f"{V1}/pickups/{fid}/{action}").status_code == 403
    assert b.post(f"{V1}/pickups/{fid}/collect", {"code": "AAAAAA"}).status_code == 403
    assert b.post(f"{V1}/pickups/{fid}/not-found", {"sku": "TEE"}).status_code == 403
    assert shop["shop"].get(f"{V1}/locations/ST-A/pickups").status_code == 403


def test_not_found_reroutes_by_transfer_and_promises_later(app: Flask, shop: dict[str, Api]) -> None:
    order = _place(shop, [("TEE", 2)])
    fid = _pickup_id(order)
    first = datetime.fromisoformat(order["fulfilments"][0]["promised_at"])
    assert shop["a"].post(f"{V1}/pickups/{fid}/pick").status_code == 200
    r = shop["a"].post(f"{V1}/pickups/{fid}/not-found", {"sku": "TEE", "qty": 1, "note": "shelf empty"})
    assert r.status_code == 200, r.json
    assert r.json["rerouted_to"] == "ST-B" and r.json["cancelled"] == 0
    line = r.json["pickup"]["lines"][0]
    assert (line["reserved"], line["awaiting"]) == (1, 1)
    assert datetime.fromisoformat(r.json["pickup"]["promised_at"]) > first + timedelta(hours=23)
    a = _level(shop, "TEE", "ST-A")
    assert (a["on_hand"], a["reserved"], a["incoming"]) == (9, 1, 1)  # one written off, one on its way
    assert _level(shop, "TEE", "ST-B")["reserved"] == 1
    # Not ready while a unit is still on the road.
    assert shop["a"].post(f"{V1}/pickups/{fid}/ready").json["code"] == "invalid_transition"
    _verify(app)


def test_not_found_cancels_when_nowhere_else_has_it(app: Flask, shop: dict[str, Api]) -> None:
    order = _place(shop, [("CAP", 1), ("TEE", 1)])
    fid = _pickup_id(order)
    r = shop["a"].post(f"{V1}/pickups/{fid}/not-found", {"sku": "CAP", "reason": "damaged"})
    assert r.status_code == 200, r.json
    assert r.json["rerouted_to"] is None and r.json["cancelled"] == 1
    cap = _level(shop, "CAP", "ST-A")
    assert (cap["on_hand"], cap["reserved"]) == (9, 0)
    assert shop["a"].post(f"{V1}/pickups/{fid}/not-found", {"sku": "CAP"}).json["errors"][0]["field"] == "qty"
    # The last line goes too: nothing is left, so the pickup is cancelled.
    assert shop["ops"].patch(f"{V1}/locations/ST-A", {"not_found_policy": "cancel"}).status_code == 200
    last = shop["a"].post(f"{V1}/pickups/{fid}/not-found", {"sku": "TEE"})
    assert last.json["pickup"]["status"] == "cancelled"
    assert shop["ops"].get(f"{V1}/orders/{order['id']}").json["status"] == "cancelled"
    _verify(app)


def test_store_settings_and_opening_hours(shop: dict[str, Api]) -> None:
    ops = shop["ops"]
    bad = ops.patch(f"{V1}/locations/ST-A", {"opening_hours": {"mon": [["18:00", "09:00"]]}})
    assert bad.status_code == 422 and "opening_hours" in str(bad.json["errors"][0]["field"])
    assert ops.patch(f"{V1}/locations/ST-A", {"opening_hours": {"funday": [["09:00", "17:00"]]}}).status_code == 422
    week = {d: [["09:00", "17:30"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    r = ops.patch(f"{V1}/locations/ST-A", {"opening_hours": week, "pickup_reminder_hours": 6, "transfer_hours": 48,
                                          "timezone": "Europe/London", "pickup_hold_hours": 48})  # fmt: skip
    assert r.status_code == 200, r.json
    got = ops.get(f"{V1}/locations/ST-A").json
    assert got["opening_hours"]["mon"] == [["09:00", "17:30"]] and got["transfer_hours"] == 48
    order = _place(shop, [("TEE", 1)])
    promised = datetime.fromisoformat(order["fulfilments"][0]["promised_at"])
    local = promised.astimezone(__import__("zoneinfo").ZoneInfo("Europe/London"))
    assert (9, 0) <= (local.hour, local.minute) <= (17, 30)


def test_reminder_then_expiry_with_a_controlled_clock(app: Flask, shop: dict[str, Api]) -> None:
    assert shop["ops"].patch(f"{V1}/locations/ST-A", {"pickup_hold_hours": 48, "pickup_reminder_hours": 6}).status_code == 200
    fid = _pickup_id(_place(shop, [("TEE", 2)]))
    _ready(shop, fid)
    hold_until = datetime.fromisoformat(shop["a"].get(f"{V1}/pickups/{fid}").json["hold_until"])
    factory = app.extensions["session_factory"]

    def tick(at: datetime) -> expiry.ClockRun:
        with unit_of_work(factory) as session:
            return expiry.remind_and_expire(session, at)

    assert tick(hold_until - timedelta(hours=7)) == expiry.ClockRun(0, 0)
    assert tick(hold_until - timedelta(hours=5)) == expiry.ClockRun(1, 0)
    assert tick(hold_until - timedelta(hours=4)) == expiry.ClockRun(0, 0)  # reminded once
    assert len(_events(app, "fulfilment.pickup_reminder")) == 1
    assert _level(shop, "TEE", "ST-A")["reserved"] == 2
    assert tick(hold_until + timedelta(seconds=1)) == expiry.ClockRun(0, 1)
    assert shop["a"].get(f"{V1}/pickups/{fid}").json["status"] == "expired"
    level = _level(shop, "TEE", "ST-A")
    assert (level["on_hand"], level["reserved"]) == (10, 0)
    assert len(_events(app, "fulfilment.expired")) == 1
    assert tick(hold_until + timedelta(hours=1)) == expiry.ClockRun(0, 0)
    _verify(app)


def test_a_till_sale_that_re_routes_a_pickup_moves_its_promise(app: Flask, shop: dict[str, Api]) -> None:
    order = _place(shop, [("TEE", 10)])  # every TEE at ST-A
    fid = _pickup_id(order)
    first = datetime.fromisoformat(order["fulfilments"][0]["promised_at"])
    sale = shop["ops"].post(f"{V1}/stock/movements", {"movements": [
        {"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 2, "source": "pos", "external_ref": "till-1"}]})  # fmt: skip
    assert sale.status_code == 201, sale.json
    got = shop["a"].get(f"{V1}/pickups/{fid}").json
    line = got["lines"][0]
    assert (line["reserved"], line["awaiting"]) == (8, 2)  # two now come from ST-B
    later = datetime.fromisoformat(got["promised_at"])
    assert later >= first + timedelta(hours=24)  # ST-A's transfer time
    shortage = _events(app, "fulfilment.allocated")[-1]
    assert shortage["reason"] == "shortage" and shortage["location"] == "ST-B"
    _verify(app)
