"""Who may see and place which orders: staff scope on order reads, till channels, idempotency keys."""

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Api
from tests.integration.test_orders import CENTRE, order


@pytest.fixture
def two_stores(network: Callable[..., None], receive: Callable[..., Any], ops: Api) -> None:
    network([{"code": "ST-A", "lat": 51.512, "lon": -0.124}, {"code": "ST-B", "lat": 51.539, "lon": -0.143}],
            ["TEE", "MUG"], channels=("web", "store"))  # fmt: skip
    receive(("TEE", "ST-A", 3), ("MUG", "ST-B", 3))


def staff_of(client: Any, make_key: Callable[..., str], store: str) -> Api:
    return Api(client, make_key("staff", (store,)))


def test_staff_read_only_their_stores_part_of_an_order(
    client: Any, make_key: Callable[..., str], storefront: Api, two_stores: None
) -> None:
    split = order(storefront, [("TEE", 1), ("MUG", 1)]).json  # one shipment from each store
    assert {f["location"] for f in split["fulfilments"]} == {"ST-A", "ST-B"}
    only_a = order(storefront, [("TEE", 1)]).json
    staff_b = staff_of(client, make_key, "ST-B")

    seen = staff_b.get(f"/api/v1/orders/{split['id']}").json
    assert [f["location"] for f in seen["fulfilments"]] == ["ST-B"]
    routing = seen["routing"]
    assert {a["location"] for a in routing["allocations"]} == {"ST-B"}
    assert {n["location"] for n in routing["explanation"]} == {"ST-B"}
    assert staff_b.get(f"/api/v1/orders/{only_a['id']}").status_code == 403
    listed = staff_b.get("/api/v1/orders").json["items"]
    assert [o["id"] for o in listed] == [split["id"]]
    assert {f["location"] for o in listed for f in o["fulfilments"]} == {"ST-B"}
    assert staff_b.get("/api/v1/orders", query_string={"location": "ST-A"}).status_code == 403
    # Their own store's view is whole, and ops still see everything.
    staff_a = staff_of(client, make_key, "ST-A")
    assert [f["location"] for f in staff_a.get(f"/api/v1/orders/{only_a['id']}").json["fulfilments"]] == ["ST-A"]


def test_a_storefront_key_cannot_order_on_a_till_channel(storefront: Api, ops: Api, two_stores: None) -> None:
    r = ops.put("/api/v1/stock/levels/TEE/ST-A/safety-stock", {"safety_stock": 3})
    assert r.status_code == 200
    refused = order(storefront, [("TEE", 3)], channel="store")
    assert refused.status_code == 403
    assert refused.json["errors"][0]["field"] == "channel"
    assert order(storefront, [("TEE", 1)]).status_code == 409  # online: safety stock holds all 3
    levels = ops.get("/api/v1/stock/levels", query_string={"sku": "TEE", "location": "ST-A"}).json["items"][0]
    assert levels["reserved"] == 0
    # The store side may still use its till channel.
    assert order(ops, [("TEE", 3)], channel="store").status_code == 201


@pytest.mark.parametrize("key", ["", "   ", "a\tb"])
def test_an_idempotency_key_that_cannot_identify_a_retry_is_refused(
    storefront: Api, two_stores: None, key: str
) -> None:
    body = {"channel": "web", "lines": [{"sku": "TEE", "qty": 1}], "delivery": CENTRE}
    r = storefront.post("/api/v1/orders", body, headers={"Idempotency-Key": key})
    assert (r.status_code, r.json["errors"][0]["field"]) == (422, "Idempotency-Key")


def test_staff_of_the_store_a_transfer_arrives_at_can_read_it_as_they_can_receive_it(
    client: Any, store_world: Any
) -> None:
    """A transfer from WH-1 to a pickup at ST-A: ST-A's staff receive it, so they may read it too."""
    transfer = store_world.ids["transfer_a"]
    staff_a, staff_b = store_world.api(client, "staff_a"), store_world.api(client, "staff_b")
    r = staff_a.get(f"/api/v1/fulfilments/{transfer}")
    assert r.status_code == 200, r.json
    assert (r.json["type"], r.json["to_location"]) == ("transfer", "ST-A")
    assert staff_b.get(f"/api/v1/fulfilments/{transfer}").status_code == 403
    order = staff_a.get(f"/api/v1/orders/{r.json['order_id']}")
    assert order.status_code == 200
    assert sorted(f["type"] for f in order.json["fulfilments"]) == ["pickup", "transfer"]
