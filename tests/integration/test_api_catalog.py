from tests.conftest import Api


def test_a_location_is_created_read_and_updated(ops: Api) -> None:
    assert ops.put("/api/v1/channels", {"code": "web", "name": "Web"}).status_code == 200
    r = ops.post(
        "/api/v1/locations",
        {
            "code": "ST-1",
            "name": "One",
            "kind": "store",
            "lat": 51.5,
            "lon": -0.1,
            "pickup": True,
            "daily_capacity": 20,
            "channels": ["web"],
        },
    )
    assert r.status_code == 201, r.json
    assert r.json["channels"] == ["web"]
    assert r.json["pickup_hold_hours"] == 72
    r = ops.patch("/api/v1/locations/ST-1", {"active": False, "priority": 5})
    assert r.status_code == 200
    got = ops.get("/api/v1/locations/ST-1").json
    assert (got["active"], got["priority"], got["daily_capacity"]) == (False, 5, 20)


def test_a_duplicate_location_code_is_a_conflict(ops: Api) -> None:
    body = {"code": "ST-1", "name": "One", "kind": "store"}
    assert ops.post("/api/v1/locations", body).status_code == 201
    r = ops.post("/api/v1/locations", body)
    assert r.status_code == 409
    assert r.json["code"] == "already_exists"


def test_bad_location_fields_are_named(ops: Api) -> None:
    r = ops.post("/api/v1/locations", {"code": "ST-1", "name": "One", "kind": "shed", "lat": 95, "lon": 0})
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    fields = {e["field"] for e in r.json["errors"]}
    assert {"kind", "lat"} <= fields
    assert ops.get("/api/v1/locations").json["items"] == []


def test_locations_bulk_upsert_is_all_or_nothing(ops: Api) -> None:
    r = ops.put(
        "/api/v1/locations",
        {
            "locations": [
                {"code": "A", "name": "A", "kind": "store"},
                {"code": "B", "name": "B", "kind": "warehouse", "channels": ["nope"]},
            ]
        },
    )
    assert r.status_code == 422
    assert ops.get("/api/v1/locations").json["items"] == []
    r = ops.put(
        "/api/v1/locations",
        {
            "locations": [
                {"code": "A", "name": "A", "kind": "store"},
                {"code": "B", "name": "B", "kind": "warehouse"},
            ]
        },
    )
    assert r.status_code == 200
    r = ops.put("/api/v1/locations", {"locations": [{"code": "A", "name": "A2", "kind": "store"}]})
    assert [loc["name"] for loc in ops.get("/api/v1/locations").json["items"]] == ["A2", "B"]


def test_skus_upsert_reports_created_and_updated_and_refuses_barcode_clashes(ops: Api) -> None:
    r = ops.post(
        "/api/v1/skus", {"skus": [{"code": "A", "name": "A", "barcode": "111"}, {"code": "B", "name": "B"}]}
    )
    assert (r.status_code, r.json["created"], r.json["updated"]) == (201, 2, 0)
    r = ops.post("/api/v1/skus", {"skus": [{"code": "A", "name": "A new", "barcode": "111"}]})
    assert (r.status_code, r.json["created"], r.json["updated"]) == (200, 0, 1)
    r = ops.post("/api/v1/skus", {"skus": [{"code": "B", "name": "B", "barcode": "111"}]})
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "skus[0].barcode"
    assert ops.get("/api/v1/skus/B").json["barcode"] is None


def test_skus_are_keyset_paged_without_gaps_or_repeats(ops: Api) -> None:
    ops.post("/api/v1/skus", {"skus": [{"code": f"S{i:03d}", "name": "x"} for i in range(23)]})
    seen, cursor = [], None
    while True:
        r = ops.get("/api/v1/skus", query_string={"limit": 5, **({"cursor": cursor} if cursor else {})})
        seen += [s["code"] for s in r.json["items"]]
        cursor = r.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"S{i:03d}" for i in range(23)]


def test_an_unknown_sku_is_404(ops: Api) -> None:
    r = ops.get("/api/v1/skus/NOPE")
    assert (r.status_code, r.json["code"]) == (404, "unknown_sku")
