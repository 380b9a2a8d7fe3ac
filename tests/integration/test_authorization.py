"""Who may call what: every /api/v1 route, called by every kind of caller, answers as the table says.

The choice for another store's object is 403, everywhere: staff of ST-B asking for an order,
fulfilment or stock of ST-A, or naming ST-A in a list filter, get 403; lists they call without a
filter silently hold only their own stores' data, and an order they read shows only the
fulfilments at their stores (403 if it has none there). Every object the table's calls reach for
belongs to ST-A (tests/conftest.py StoreWorld), so staff_b must always be refused or filtered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import NEAR_A, StoreWorld

CALLERS = ("none", "wrong", "revoked", "storefront", "staff_b", "staff_a", "ops")
V1 = "/api/v1"


@dataclass(frozen=True)
class Call:
    """One request per route; {name} in the path is filled from StoreWorld.ids (or customer)."""

    method: str
    rule: str  # as in app.url_map, so the table can be checked against it
    path: str
    expect: tuple[int, ...]  # one status per caller, in CALLERS order
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)


# Callers run in CALLERS order on one world, so a mutation admitted for staff_a is seen by ops
# (a second pick is a 409 invalid_transition: ops got past authorisation to the state check).
# Rows run top to bottom for the same reason: pick before ship, deletes last.
#        none wrong revoked storefront staff_b staff_a ops
ANON = (401, 401, 401)
TABLE: list[Call] = [
    # catalog: everyone reads, ops alone writes
    Call("GET", "/locations", "/locations", (*ANON, 200, 200, 200, 200)),
    Call("GET", "/locations/<code>", "/locations/ST-A", (*ANON, 200, 200, 200, 200)),
    Call("PUT", "/locations", "/locations", (*ANON, 403, 403, 403, 200),
         body={"locations": [{"code": "ST-A", "name": "ST-A", "kind": "store", "lat": 51.512, "lon": -0.124,
                              "channels": ["web"]}]}),
    Call("POST", "/locations", "/locations", (*ANON, 403, 403, 403, 201),
         body={"code": "ST-C", "name": "ST-C", "kind": "store", "channels": ["web"]}),
    Call("PATCH", "/locations/<code>", "/locations/ST-A", (*ANON, 403, 403, 403, 200), body={"name": "Store A"}),
    Call("GET", "/skus", "/skus", (*ANON, 200, 200, 200, 200)),
    Call("GET", "/skus/<code>", "/skus/TEE", (*ANON, 200, 200, 200, 200)),
    Call("POST", "/skus", "/skus", (*ANON, 403, 403, 403, 201), body={"skus": [{"code": "HAT", "name": "Hat"}]}),
    Call("PATCH", "/skus/<code>", "/skus/TEE", (*ANON, 403, 403, 403, 200), body={"name": "Tee"}),
    Call("GET", "/channels", "/channels", (*ANON, 200, 200, 200, 200)),
    Call("PUT", "/channels", "/channels", (*ANON, 403, 403, 403, 200),
         body={"code": "till", "name": "Till", "kind": "store", "locations": ["ST-A"]}),
    # stock: staff see their own stores' levels and history; ops alone records movements
    Call("GET", "/stock/levels", "/stock/levels", (*ANON, 403, 403, 200, 200), query={"location": "ST-A"}),
    Call("GET", "/stock/movements", "/stock/movements", (*ANON, 403, 403, 200, 200), query={"location": "ST-A"}),
    Call("POST", "/stock/movements", "/stock/movements", (*ANON, 403, 403, 403, 201),
         body={"movements": [{"kind": "receipt", "sku": "TEE", "location": "ST-A", "qty": 1}]}),
    Call("PUT", "/stock/levels/<sku>/<location>/safety-stock", "/stock/levels/TEE/ST-A/safety-stock",
         (*ANON, 403, 403, 403, 200), body={"safety_stock": 0}),
    Call("GET", "/availability", "/availability", (*ANON, 200, 403, 403, 200), query={"skus": "TEE"}),
    # orders: the storefront places and reads; staff read their stores' part
    Call("POST", "/routing/quote", "/routing/quote", (*ANON, 200, 403, 403, 200),
         body={"lines": [{"sku": "TEE", "qty": 1}], "delivery": NEAR_A}),
    Call("POST", "/orders", "/orders", (*ANON, 201, 403, 403, 201),
         body={"channel": "web", "lines": [{"sku": "TEE", "qty": 1}], "delivery": NEAR_A}),
    Call("GET", "/orders/<int:id>", "/orders/{order_a}", (*ANON, 200, 403, 200, 200)),
    Call("GET", "/orders", "/orders", (*ANON, 200, 403, 200, 200), query={"location": "ST-A"}),
    Call("GET", "/customers/<customer_ref>/orders", "/customers/{customer}/orders", (*ANON, 200, 403, 403, 200)),
    # the same return sent twice under one external_ref: staff_a records it, ops gets the replay
    Call("POST", "/orders/<int:id>/returns", "/orders/{order_delivered}/returns", (*ANON, 403, 403, 200, 200),
         body={"location": "ST-A", "external_ref": "ret-1", "lines": [{"sku": "TEE", "qty": 1}]}),
    # one unit of two each: both admitted callers cancel one
    Call("POST", "/orders/<int:id>/cancel", "/orders/{order_cancel}/cancel", (*ANON, 200, 403, 403, 200),
         body={"lines": [{"sku": "TEE", "qty": 1}]}),
    # fulfilments: ops and staff of the fulfilment's location (a transfer: of the store it arrives at)
    Call("GET", "/fulfilments/<int:id>", "/fulfilments/{fulfilment_a}", (*ANON, 403, 403, 200, 200)),
    Call("POST", "/fulfilments/<int:id>/pick", "/fulfilments/{fulfilment_a}/pick", (*ANON, 403, 403, 200, 409)),
    Call("POST", "/fulfilments/<int:id>/ship", "/fulfilments/{fulfilment_a}/ship", (*ANON, 403, 403, 200, 409)),
    Call("POST", "/fulfilments/<int:id>/receive", "/fulfilments/{transfer_a}/receive",
         (*ANON, 403, 403, 200, 409)),
    Call("POST", "/fulfilments/<int:id>/cancel", "/fulfilments/{fulfilment_cancel}/cancel",
         (*ANON, 403, 403, 200, 409)),
    # webhooks and events: ops only
    Call("GET", "/webhooks", "/webhooks", (*ANON, 403, 403, 403, 200)),
    Call("POST", "/webhooks", "/webhooks", (*ANON, 403, 403, 403, 201),
         body={"url": "http://127.0.0.1:9/other", "secret": "t" * 24, "event_types": ["order.created"]}),
    Call("GET", "/webhooks/<int:id>/deliveries", "/webhooks/{webhook}/deliveries", (*ANON, 403, 403, 403, 200)),
    Call("PATCH", "/webhooks/<int:id>", "/webhooks/{webhook}", (*ANON, 403, 403, 403, 200), body={"active": False}),
    Call("GET", "/events", "/events", (*ANON, 403, 403, 403, 200)),
    Call("DELETE", "/webhooks/<int:id>", "/webhooks/{webhook}", (*ANON, 403, 403, 403, 204)),
    # sync: ops only (a run of a CSV feed with no file fails, and answers that run)
    Call("POST", "/feeds", "/feeds", (*ANON, 403, 403, 403, 201),
         body={"code": "shop-csv", "name": "CSV", "role": "source", "connector": "csv", "locations": {"A": "ST-A"}}),
    Call("GET", "/feeds", "/feeds", (*ANON, 403, 403, 403, 200)),
    Call("GET", "/feeds/<code>", "/feeds/shop-csv", (*ANON, 403, 403, 403, 200)),
    Call("POST", "/feeds/<code>/run", "/feeds/shop-csv/run", (*ANON, 403, 403, 403, 200), body={}),
    # an upload with no file: ops get past authorisation to the empty-body check
    Call("POST", "/feeds/<code>/upload", "/feeds/shop-csv/upload", (*ANON, 403, 403, 403, 415)),
    Call("GET", "/sync/runs", "/sync/runs", (*ANON, 403, 403, 403, 200)),
    Call("GET", "/sync/runs/<int:run_id>", "/sync/runs/1", (*ANON, 403, 403, 403, 200)),
    Call("GET", "/sync/discrepancies", "/sync/discrepancies", (*ANON, 403, 403, 403, 200)),
    Call("POST", "/sync/discrepancies/<int:discrepancy_id>/accept", "/sync/discrepancies/999999/accept",
         (*ANON, 403, 403, 403, 404), body={}),
    Call("POST", "/sync/discrepancies/<int:discrepancy_id>/reject", "/sync/discrepancies/999999/reject",
         (*ANON, 403, 403, 403, 404), body={}),
    Call("GET", "/sync/quarantine", "/sync/quarantine", (*ANON, 403, 403, 403, 200)),
    Call("POST", "/sync/quarantine/<int:quarantine_id>/resolve", "/sync/quarantine/999999/resolve",
         (*ANON, 403, 403, 403, 404), body={"dismiss": True}),
    Call("GET", "/sync/orders", "/sync/orders", (*ANON, 403, 403, 403, 200)),
    # staff accounts: ops only (the password is never answered)
    Call("POST", "/staff-users", "/staff-users", (*ANON, 403, 403, 403, 201),
         body={"username": "clerk.a", "display_name": "Clerk A", "password": "counter-pass-1", "locations": ["ST-A"]}),
    Call("GET", "/staff-users", "/staff-users", (*ANON, 403, 403, 403, 200)),
    Call("GET", "/staff-users/<username>", "/staff-users/clerk.a", (*ANON, 403, 403, 403, 200)),
    Call("PATCH", "/staff-users/<username>", "/staff-users/clerk.a", (*ANON, 403, 403, 403, 200),
         body={"display_name": "Clerk Ann"}),
    # the pickup counter: ops and staff of the pickup's store (pickup_a's transfer was received above)
    Call("GET", "/locations/<code>/pickups", "/locations/ST-A/pickups", (*ANON, 403, 403, 200, 200)),
    Call("GET", "/pickups/<int:id>", "/pickups/{pickup_a}", (*ANON, 403, 403, 200, 200)),
    # another store's pickup is not found at yours
    Call("GET", "/pickups/lookup", "/pickups/lookup", (*ANON, 403, 404, 200, 200), query={"scan": "#{order_pickup}"}),
    Call("POST", "/pickups/<int:id>/pick", "/pickups/{pickup_a}/pick", (*ANON, 403, 403, 200, 409)),
    Call("POST", "/pickups/<int:id>/ready", "/pickups/{pickup_a}/ready", (*ANON, 403, 403, 200, 409)),
    # a wrong code, counted for both admitted callers
    Call("POST", "/pickups/<int:id>/collect", "/pickups/{pickup_a}/collect", (*ANON, 403, 403, 422, 422),
         body={"code": "AAAAAA"}),
    # staff_a writes the unit off; no other location may send it (WH-1 already served this order), so
    # the line and with it the pickup are cancelled, and ops meet a closed pickup
    Call("POST", "/pickups/<int:id>/not-found", "/pickups/{pickup_a}/not-found", (*ANON, 403, 403, 200, 409),
         body={"sku": "MUG"}),
    Call("PUT", "/locations/<code>/bins", "/locations/ST-A/bins", (*ANON, 403, 403, 403, 200),
         body={"bins": [{"sku": "TEE", "bin": "A-01"}]}),
]  # fmt: skip


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (method, rule) the app serves under /api/v1."""
    return {
        (method, rule.rule.removeprefix(V1))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(V1 + "/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def send(client: FlaskClient, world: StoreWorld, caller: str, call: Call) -> Any:
    key = world.keys[caller]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    path = V1 + call.path.format(customer=world.customer, **world.ids)
    query = {k: v.format(customer=world.customer, **world.ids) for k, v in call.query.items()}
    return client.open(path, method=call.method, headers=headers, json=call.body, query_string=query)


def test_the_table_names_every_api_route_once(app: Flask) -> None:
    """A new route must join the table (and so state who may call it)."""
    rows = [(c.method, c.rule) for c in TABLE]
    assert len(rows) == len(set(rows)), "a route is in the table twice"
    served = api_routes(app)
    assert not served - set(rows), f"routes missing from the authorisation table: {sorted(served - set(rows))}"
    assert not set(rows) - served, f"table rows for routes that do not exist: {sorted(set(rows) - served)}"
    assert all(len(c.expect) == len(CALLERS) for c in TABLE)


def test_every_route_answers_every_caller_as_the_table_says(
    app: Flask, client: FlaskClient, store_world: StoreWorld
) -> None:
    """No key, a wrong or revoked key, each role and staff of either store: each answer is the table's."""
    wrong: list[str] = []
    for call in TABLE:
        for caller, expected in zip(CALLERS, call.expect, strict=True):
            r = send(client, store_world, caller, call)
            problem = r.mimetype == "application/problem+json"
            if r.status_code != expected or (expected >= 400 and not problem):
                body = r.get_data(as_text=True)[:160].replace("\n", " ")
                wrong.append(f"{call.method} {call.path} as {caller}: {r.status_code} {r.mimetype}, "
                             f"expected {expected}: {body}")  # fmt: skip
    assert not wrong, f"{len(wrong)} answers differ from the table:\n" + "\n".join(wrong)


def test_staff_lists_hold_only_their_own_stores(client: FlaskClient, store_world: StoreWorld) -> None:
    """Unfiltered lists for staff of ST-B hold nothing of ST-A; staff of ST-A see ST-A's data."""
    staff_b = store_world.api(client, "staff_b")
    orders = staff_b.get(f"{V1}/orders").json["items"]
    assert {o["id"] for o in orders} == {store_world.ids["order_b"], store_world.ids["order_split"]}
    assert {f["location"] for o in orders for f in o["fulfilments"]} == {"ST-B"}
    # Routing's story of an order is another store's data too.
    assert {a["location"] for o in orders for a in o["routing"]["allocations"]} == {"ST-B"}
    assert {n["location"] for o in orders for n in o["routing"]["explanation"]} == {"ST-B"}
    levels = staff_b.get(f"{V1}/stock/levels").json["items"]
    assert levels and {lv["location"] for lv in levels} == {"ST-B"}
    moves = staff_b.get(f"{V1}/stock/movements").json["items"]
    assert moves and {m["location"] for m in moves} == {"ST-B"}
    # A split order read by one: only the reader's fulfilment.
    split = staff_b.get(f"{V1}/orders/{store_world.ids['order_split']}").json
    assert [f["location"] for f in split["fulfilments"]] == ["ST-B"]
    # The other store sees its own part of the same data.
    staff_a = store_world.api(client, "staff_a")
    assert {lv["location"] for lv in staff_a.get(f"{V1}/stock/levels").json["items"]} == {"ST-A"}
    a_orders = staff_a.get(f"{V1}/orders").json["items"]
    assert store_world.ids["order_a"] in {o["id"] for o in a_orders}
    assert store_world.ids["order_b"] not in {o["id"] for o in a_orders}
    # ...its own fulfilments, and a transfer arriving there (which its staff receive).
    assert {(f["location"], f["to_location"]) for o in a_orders for f in o["fulfilments"]} == {
        ("ST-A", None), ("WH-1", "ST-A")
    }
