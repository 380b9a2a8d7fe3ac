"""The pickup screen in a real browser, as store staff use it at the counter: the queue, pick,
ready, the code (wrong, right, locked), partial pickup, not found, the scan box, another store,
CSRF and sign-out; each screen is checked with axe-core and saved as a screenshot."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.db import unit_of_work
from app.models import OutboxEvent
from app.services import keys, ledger
from tests.browser.harness import LiveServer, StaffLogin, assert_accessible, shot, sign_in
from tests.conftest import Api

V1 = "/api/v1"


class Shop:
    """Stores ST-A and ST-B with stock, a storefront key to place pickups, the ops API to check stock."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.ops = server.ops
        server.ensure_stores(["ST-A", "ST-B"])
        for store in ("ST-A", "ST-B"):
            # ensure_stores may have put the channel again, with no locations: both serve it.
            assert self.ops.patch(f"{V1}/locations/{store}", {"channels": ["web"]}).status_code == 200
        r = self.ops.post(f"{V1}/skus", {"skus": [{"code": "TEE", "name": "Organic tee"},
                                                  {"code": "MUG", "name": "Stoneware mug"}]})  # fmt: skip
        assert r.status_code == 201, r.json
        moves = [{"kind": "receipt", "sku": s, "location": loc, "qty": 10}
                 for s in ("TEE", "MUG") for loc in ("ST-A", "ST-B")]  # fmt: skip
        assert self.ops.post(f"{V1}/stock/movements", {"movements": moves}).status_code == 201
        assert (
            self.ops.put(f"{V1}/locations/ST-A/bins", {"bins": [{"sku": "TEE", "bin": "A-03"}]}).status_code
            == 200
        )
        with unit_of_work(server.app.extensions["session_factory"]) as session:
            _, key = keys.create_key(session, role="storefront", name="shop")
        self.front = Api(server.app.test_client(), key)

    def place(
        self, lines: list[tuple[str, int]], store: str = "ST-A", name: str = "Ada Lovelace"
    ) -> dict[str, Any]:
        r = self.front.post(f"{V1}/orders", {
            "channel": "web", "customer_ref": "cust-1", "customer_name": name,
            "lines": [{"sku": s, "qty": q} for s, q in lines], "delivery": {"type": "pickup", "location": store},
        })  # fmt: skip
        assert r.status_code == 201, r.json
        return {
            "order": r.json["id"],
            "pickup": next(f["id"] for f in r.json["fulfilments"] if f["type"] == "pickup"),
        }

    def level(self, sku: str, store: str = "ST-A") -> tuple[int, int]:
        item = self.ops.get(f"{V1}/stock/levels", query_string={"sku": sku, "location": store}).json["items"][
            0
        ]
        return item["on_hand"], item["reserved"]

    def ready_code(self, pickup: int) -> str:
        with unit_of_work(self.server.app.extensions["session_factory"]) as session:
            events = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "fulfilment.ready_for_pickup",
                                                               OutboxEvent.fulfilment_id == pickup))  # fmt: skip
            return str(next(iter(events)).payload["code"])

    def verify(self) -> None:
        with unit_of_work(self.server.app.extensions["session_factory"]) as session:
            assert ledger.verify(session) == []


@pytest.fixture
def shop(live_server: LiveServer) -> Shop:
    return Shop(live_server)


def _open_detail(page: Page, order: int) -> None:
    with page.expect_navigation():
        page.get_by_role("link", name=f"Open order {order}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Order #{order}")


def _flash(page: Page, kind: str = "status") -> Any:
    return page.locator(".flash--error" if kind == "alert" else ".flash--success")


def _press(page: Page, name: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=name).click()


def test_pick_ready_wrong_code_then_the_right_one_collects(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    placed = shop.place([("TEE", 2)])
    sign_in(page, live_server, staff_login)
    assert page.url == live_server.at("/pickup/ST-A")
    expect(page.get_by_role("link", name=re.compile(r"To pick\s+1"))).to_have_attribute(
        "aria-current", "page"
    )
    row = page.locator("table.queue tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Ada Lovelace")
    expect(row).to_contain_text("2 \u00d7 Organic tee")
    assert_accessible(page)
    shot(page, "pickup-queue-to-pick")

    _open_detail(page, placed["order"])
    expect(page.locator("table.lines")).to_contain_text("A-03")  # the bin hint
    assert_accessible(page)
    shot(page, "pickup-detail-allocated")
    _press(page, "Start picking")
    expect(_flash(page)).to_contain_text("Picking started")
    _press(page, "Mark picked and ready")
    expect(_flash(page)).to_contain_text("Ready for pickup")
    code = shop.ready_code(placed["pickup"])
    expect(page.locator(".code")).to_have_text(code)  # shown once, with its QR
    expect(page.locator(".qr svg")).to_be_visible()
    assert_accessible(page)
    shot(page, "pickup-detail-ready-with-code")
    page.reload()
    expect(page.locator(".code")).to_have_count(0)  # ...and only once

    page.get_by_label("Customer's pickup code").fill("WRONG7")
    _press(page, "Hand over")
    expect(_flash(page, "alert")).to_contain_text("not this pickup's code")
    expect(_flash(page, "alert")).to_contain_text("4 tries left")
    assert shop.level("TEE") == (10, 2)
    assert_accessible(page)
    shot(page, "pickup-detail-wrong-code")

    page.get_by_label("Customer's pickup code").fill(code.lower())
    _press(page, "Hand over")
    expect(_flash(page)).to_contain_text("Handed over")
    expect(page.locator(".status")).to_have_text("Collected")
    assert shop.level("TEE") == (8, 0)
    shop.verify()
    page.goto(live_server.at("/pickup/ST-A?tab=collected_today"))
    expect(page.locator("table.queue tbody tr")).to_contain_text("Ada Lovelace")
    shot(page, "pickup-queue-collected-today")


def test_partial_pickup_puts_the_rest_back(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    placed = shop.place([("TEE", 2), ("MUG", 1)])
    for step in ("pick", "ready"):
        assert shop.ops.post(f"{V1}/pickups/{placed['pickup']}/{step}").status_code == 200
    code = shop.ready_code(placed["pickup"])
    sign_in(page, live_server, staff_login, f"/pickup/ST-A/{placed['pickup']}")
    page.get_by_label("Customer's pickup code").fill(code)
    page.get_by_label(re.compile("Yes: say how many")).check()
    page.get_by_label("Organic tee (of 2)").fill("1")
    page.get_by_label("Stoneware mug (of 1)").fill("0")
    assert_accessible(page)
    shot(page, "pickup-detail-partial")
    _press(page, "Hand over")
    expect(_flash(page)).to_contain_text("Handed over")
    assert shop.level("TEE") == (9, 0)
    assert shop.level("MUG") == (10, 0)
    shop.verify()


def test_not_found_writes_off_and_reroutes(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    placed = shop.place([("MUG", 2)])
    sign_in(page, live_server, staff_login, f"/pickup/ST-A/{placed['pickup']}")
    page.get_by_label("How many").fill("1")
    page.get_by_label("Note (optional)").fill("shelf empty")
    _press(page, "Report and write off")
    expect(_flash(page)).to_contain_text("It now comes from ST-B")
    expect(page.locator("table.lines tbody tr")).to_contain_text("1")
    assert shop.level("MUG") == (9, 1)
    assert shop.level("MUG", "ST-B") == (10, 1)
    shot(page, "pickup-detail-not-found")
    page.get_by_label("How many").fill("5")
    _press(page, "Report and write off")
    expect(_flash(page, "alert")).to_contain_text("At most 1 of MUG")
    shop.verify()


def test_wrong_codes_lock_the_pickup(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    placed = shop.place([("TEE", 1)])
    for step in ("pick", "ready"):
        assert shop.ops.post(f"{V1}/pickups/{placed['pickup']}/{step}").status_code == 200
    code = shop.ready_code(placed["pickup"])
    sign_in(page, live_server, staff_login, f"/pickup/ST-A/{placed['pickup']}")
    for _ in range(5):
        page.get_by_label("Customer's pickup code").fill("AAAAAA")
        _press(page, "Hand over")
    expect(_flash(page, "alert")).to_contain_text("locked")
    expect(page.get_by_role("alert").filter(has_text="Locked after too many wrong codes")).to_be_visible()
    page.get_by_label("Customer's pickup code").fill(code)
    _press(page, "Hand over")
    expect(_flash(page, "alert")).to_contain_text("locked")
    assert shop.level("TEE") == (10, 1)
    assert_accessible(page)
    shot(page, "pickup-detail-locked")


def test_the_scan_box_takes_a_scanner_from_anywhere_on_the_page(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    first, second = shop.place([("TEE", 1)]), shop.place([("MUG", 1)], name="Grace Hopper")
    for step in ("pick", "ready"):
        assert shop.ops.post(f"{V1}/pickups/{second['pickup']}/{step}").status_code == 200
    code = shop.ready_code(second["pickup"])
    sign_in(page, live_server, staff_login)
    page.locator("h1").click()  # the focus is on no field
    with page.expect_navigation():
        page.keyboard.type(str(first["order"]))
        page.keyboard.press("Enter")  # a scanner ends with Enter
    assert page.url == live_server.at(f"/pickup/ST-A/{first['pickup']}")
    # The customer's pickup barcode opens their pickup with the code filled in.
    page.locator("h1").click()
    with page.expect_navigation():
        page.keyboard.type(f"PU-{second['pickup']}-{code}")
        page.keyboard.press("Enter")
    assert page.url == live_server.at(f"/pickup/ST-A/{second['pickup']}")
    expect(page.get_by_label("Customer's pickup code")).to_have_value(code)
    _press(page, "Hand over")
    expect(_flash(page)).to_contain_text("Handed over")
    page.get_by_label("Scan or type an order number").fill("nonsense")
    page.keyboard.press("Enter")
    expect(_flash(page, "alert")).to_contain_text("Nothing found")


def test_another_stores_staff_cannot_see_the_order(page: Page, live_server: LiveServer, shop: Shop) -> None:
    placed = shop.place([("TEE", 1)])
    other = live_server.make_staff("bob", display_name="Bob Other", locations=("ST-B",))
    sign_in(page, live_server, other)
    assert page.url == live_server.at("/pickup/ST-B")
    expect(page.locator("table.queue")).to_have_count(0)
    expect(page.get_by_text("Nothing here right now.")).to_be_visible()
    for path in ("/pickup/ST-A", f"/pickup/ST-A/{placed['pickup']}", f"/pickup/ST-B/{placed['pickup']}"):
        answer = page.goto(live_server.at(path))
        assert answer is not None and answer.status in (403, 404), path
    page.goto(live_server.at("/pickup/ST-B"))
    page.get_by_label("Scan or type an order number").fill(str(placed["order"]))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(_flash(page, "alert")).to_contain_text("Nothing found")
    # The API answers the same for a key of that store.
    with unit_of_work(live_server.app.extensions["session_factory"]) as session:
        _, key = keys.create_key(session, role="staff", name="b", locations=("ST-B",))
    assert Api(live_server.app.test_client(), key).get(f"{V1}/pickups/{placed['pickup']}").status_code == 403


def test_counter_forms_need_their_csrf_token_and_sign_out_ends_it(
    page: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    placed = shop.place([("TEE", 1)])
    sign_in(page, live_server, staff_login, f"/pickup/ST-A/{placed['pickup']}")
    forged = page.request.post(
        live_server.at(f"/pickup/ST-A/{placed['pickup']}/pick"), form={}, max_redirects=0
    )
    assert forged.status == 400
    assert shop.ops.get(f"{V1}/pickups/{placed['pickup']}").json["status"] == "allocated"
    _press(page, "Sign out")
    expect(page.get_by_text("You are signed out")).to_be_visible()
    page.goto(live_server.at("/pickup/ST-A"))
    assert page.url.startswith(live_server.at("/sign-in"))


def test_the_pick_list_prints_with_bins_and_the_tablet_layout(
    page: Page, tablet: Page, live_server: LiveServer, staff_login: StaffLogin, shop: Shop
) -> None:
    shop.place([("TEE", 2), ("MUG", 1)])
    shop.place([("MUG", 1)], name="Grace Hopper")
    sign_in(page, live_server, staff_login, "/pickup/ST-A/pick-list")
    expect(page.locator("section.pick")).to_have_count(2)
    expect(page.locator("section.pick").first).to_contain_text("A-03")
    assert_accessible(page)
    shot(page, "pickup-pick-list")
    page.emulate_media(media="print")
    shot(page, "pickup-pick-list-print")
    sign_in(tablet, live_server, staff_login)
    expect(tablet.locator("table.queue tbody tr")).to_have_count(2)
    assert_accessible(tablet)
    shot(tablet, "pickup-queue-tablet")
    box = tablet.get_by_role("button", name="Open").first.bounding_box()
    assert box is not None and box["height"] >= 44
