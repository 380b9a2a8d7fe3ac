"""The Square connector against the Square fake over real HTTP: paging, states, changes, pushes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.sync.base import (
    AuthError,
    Capability,
    Connection,
    MalformedResponse,
    OutboundAdjustment,
    PushStatus,
)
from app.sync.fakes.square import (
    CHANGES,
    COUNTS,
    CREATE,
    LOCATION_MAIN,
    LOCATION_SECOND,
    LOCATION_THIRD,
    SIGNATURE_KEY,
    TOKEN,
    VARIATION_A,
    VARIATION_B,
    FakeSquare,
    error_body,
)
from app.sync.square import (
    SquareConnector,
    build,
    chunk_key,
    parse_rfc3339,
    parse_webhook,
    verify_webhook,
)

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
VARIATIONS = [f"VAR{i:02d}SQUAREFAKEITEMIDXX" for i in range(7)]


@pytest.fixture
def fake() -> Iterator[FakeSquare]:
    vendor = FakeSquare(now=T0, seed=False)
    vendor.start()
    yield vendor
    vendor.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


def connect(fake: FakeSquare, waits: list[float], **options: object) -> SquareConnector:
    conn = Connection(
        base_url=fake.url,
        secrets={"token": TOKEN},
        options={"location_refs": [LOCATION_MAIN, LOCATION_SECOND], **options},
        read_timeout_s=5.0,
        sleep=waits.append,
    )
    return build(conn)


def bodies(fake: FakeSquare, path: str) -> list[dict[str, object]]:
    return [json.loads(c["body"]) for c in fake.calls("POST", path)]


def test_the_connector_says_what_it_can_do(fake: FakeSquare, waits: list[float]) -> None:
    sq = connect(fake, waits)
    assert sq.name == "square"
    assert sq.capabilities == {
        Capability.SNAPSHOT, Capability.CHANGES, Capability.PUSH_ADJUSTMENTS, Capability.IDEMPOTENT_WRITES,
    }  # fmt: skip
    list(sq.pull_snapshot())
    headers = fake.calls("POST", COUNTS)[0]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Square-Version"] == "2025-08-20"


def test_snapshot_pages_with_the_same_body_and_the_cursor(fake: FakeSquare, waits: list[float]) -> None:
    for i, v in enumerate(VARIATIONS):
        fake.set_count(v, LOCATION_MAIN, 10 + i, occurred_at=T0 - timedelta(minutes=i))
    fake.set_count(VARIATION_A, LOCATION_THIRD, 5)  # a location we do not read
    fake.page_size = 3
    fake.frozen = True
    pages = list(connect(fake, waits).pull_snapshot())
    assert [len(p.observations) for p in pages] == [3, 3, 1]
    assert [p.complete for p in pages] == [False, False, True]
    assert all(p.vendor_time == fake.now() for p in pages)
    seen = {o.item_ref: o.quantity for p in pages for o in p.observations}
    assert seen == {v: Decimal(10 + i) for i, v in enumerate(VARIATIONS)}
    sent = bodies(fake, COUNTS)
    assert sent[0] == {"location_ids": [LOCATION_MAIN, LOCATION_SECOND], "limit": 1000}
    assert [{k: v for k, v in b.items() if k != "cursor"} for b in sent] == [sent[0]] * 3
    assert "cursor" not in sent[0] and all(b.get("cursor") for b in sent[1:])


def test_only_in_stock_is_sellable_and_an_unknown_state_is_a_problem(
    fake: FakeSquare, waits: list[float]
) -> None:
    fake.set_count(VARIATION_A, LOCATION_MAIN, 4)
    fake.adjust(VARIATION_A, LOCATION_MAIN, 1, "IN_STOCK", "WASTE")  # a WASTE count: known, skipped
    fake.set_count(VARIATION_B, LOCATION_MAIN, 2, state="SUPPORTED_BY_NEWER_VERSION")
    odd = {"catalog_object_id": VARIATION_B, "catalog_object_type": "ITEM_VARIATION", "state": "LOANED_OUT",
           "location_id": LOCATION_SECOND, "quantity": "1", "calculated_at": "2025-08-20T10:00:00.000Z"}  # fmt: skip
    fake.extra_counts.append(odd)
    obs = [o for p in connect(fake, waits).pull_snapshot() for o in p.observations]
    good = [o for o in obs if o.problem is None]
    assert [(o.item_ref, o.location_ref, o.quantity) for o in good] == [
        (VARIATION_A, LOCATION_MAIN, Decimal(3))
    ]
    problems = {o.problem: o for o in obs if o.problem}
    assert set(problems) == {"unknown state SUPPORTED_BY_NEWER_VERSION", "unknown state LOANED_OUT"}
    assert problems["unknown state LOANED_OUT"].raw == odd
    assert problems["unknown state LOANED_OUT"].quantity is None


def test_decimal_strings_and_nine_digit_timestamps(fake: FakeSquare, waits: list[float]) -> None:
    fake.ts_digits = 9
    fake.set_count(VARIATION_A, LOCATION_MAIN, "2.5")
    fake.set_count(VARIATION_B, LOCATION_MAIN, 0)
    fake.sell(VARIATION_B, LOCATION_MAIN, 3)  # sold past zero: Square goes negative
    fake.extra_counts += [
        {"catalog_object_id": "6F4K33KPNUVDWKZ43KUIFH6K", "state": "IN_STOCK", "location_id": LOCATION_SECOND,
         "quantity": "90", "calculated_at": "2020-12-29T18:38:45.455006797Z"},
        {"catalog_object_id": VARIATION_A, "state": "IN_STOCK", "location_id": LOCATION_SECOND,
         "quantity": "n/a", "calculated_at": "2020-12-29T18:38:45.10296Z"},
    ]  # fmt: skip
    obs = {
        (o.item_ref, o.location_ref): o for p in connect(fake, waits).pull_snapshot() for o in p.observations
    }
    assert obs[(VARIATION_A, LOCATION_MAIN)].quantity == Decimal("2.5")
    assert obs[(VARIATION_B, LOCATION_MAIN)].quantity == Decimal("-3")
    assert obs[(VARIATION_B, LOCATION_SECOND)].as_of == datetime(2020, 12, 29, 18, 38, 45, 455006, tzinfo=UTC)
    bad = obs[(VARIATION_A, LOCATION_SECOND)]
    assert bad.problem == "quantity 'n/a'" and bad.quantity is None and bad.raw["quantity"] == "n/a"
    assert bad.as_of == datetime(2020, 12, 29, 18, 38, 45, 102960, tzinfo=UTC)
    assert obs[(VARIATION_A, LOCATION_MAIN)].as_of is not None


def test_rfc3339_parsing() -> None:
    assert parse_rfc3339("2016-11-16T22:28:01.223Z") == datetime(2016, 11, 16, 22, 28, 1, 223000, tzinfo=UTC)
    assert parse_rfc3339("2016-11-16T17:28:01-05:00") == datetime(2016, 11, 16, 22, 28, 1, tzinfo=UTC)
    assert parse_rfc3339("2016-11-16T22:28:01.123456789Z").microsecond == 123456  # type: ignore[union-attr]
    for bad in ("2016-11-16", "2016-11-16T22:28:01", "2016-13-16T22:28:01Z", "x", None, 5):
        assert parse_rfc3339(bad) is None


def test_changes_map_to_the_sellable_bucket(fake: FakeSquare, waits: list[float]) -> None:
    fake.frozen = True
    t = T0 - timedelta(minutes=10)
    count = fake.set_count(VARIATION_A, LOCATION_MAIN, 86, occurred_at=t)["physical_count"]
    received = fake.receive(VARIATION_A, LOCATION_MAIN, 5, occurred_at=t + timedelta(minutes=1))["adjustment"]
    sold = fake.sell(VARIATION_A, LOCATION_MAIN, "1.5", occurred_at=t + timedelta(minutes=2))["adjustment"]
    fake.adjust(VARIATION_A, LOCATION_MAIN, 1, "SOLD", "WASTE", occurred_at=t + timedelta(minutes=3))
    moved = fake.transfer(
        VARIATION_A, LOCATION_MAIN, LOCATION_SECOND, 2, occurred_at=t + timedelta(minutes=4)
    )
    fake.transfer(VARIATION_A, LOCATION_MAIN, LOCATION_THIRD, 1, occurred_at=t + timedelta(minutes=5))
    echo = fake.sell(
        VARIATION_B, LOCATION_SECOND, 1, occurred_at=t + timedelta(minutes=6), reference_id="omnistock:mv-17"
    )
    got = [c for p in connect(fake, waits).pull_changes(None) for c in p.changes]
    tid = moved["transfer"]["id"]
    assert [(c.external_id, c.kind, c.location_ref, c.delta, c.absolute) for c in got] == [
        (count["id"], "physical_count", LOCATION_MAIN, None, Decimal(86)),
        (received["id"], "adjustment", LOCATION_MAIN, Decimal(5), None),
        (sold["id"], "adjustment", LOCATION_MAIN, Decimal("-1.5"), None),
        (f"{tid}:out", "transfer_out", LOCATION_MAIN, Decimal(-2), None),
        (f"{tid}:in", "transfer_in", LOCATION_SECOND, Decimal(2), None),
        (f"{got[5].external_id.split(':')[0]}:out", "transfer_out", LOCATION_MAIN, Decimal(-1), None),
        (echo["adjustment"]["id"], "adjustment", LOCATION_SECOND, Decimal(-1), None),
    ]  # the SOLD->WASTE move is not sellable stock; the leg into a store we do not read is dropped
    assert got[2].occurred_at == t + timedelta(minutes=2)
    assert got[2].recorded_at == parse_rfc3339(sold["created_at"]) == T0
    assert got[-1].origin_reference == "omnistock:mv-17" and got[0].origin_reference is None
    assert all(c.problem is None for c in got)
    assert bodies(fake, CHANGES)[0]["types"] == ["PHYSICAL_COUNT", "ADJUSTMENT", "TRANSFER"]


def test_unknown_types_states_and_quantities_are_problems_with_raw(
    fake: FakeSquare, waits: list[float]
) -> None:
    fake.frozen = True
    fake.adjust(VARIATION_A, LOCATION_MAIN, 1, "IN_STOCK", "SUPPORTED_BY_NEWER_VERSION")
    new_type = {"type": "BUNDLE_SPLIT", "bundle_split": {"id": "BSXX", "created_at": "2025-08-20T10:00:00Z"}}
    fake.add_raw_change(new_type)
    bad_qty = {"type": "ADJUSTMENT", "adjustment": {
        "id": "UDMOEO78BG6GYWA2XDRYX3KB", "catalog_object_id": VARIATION_A, "from_state": "IN_STOCK",
        "to_state": "SOLD", "location_id": LOCATION_MAIN, "quantity": "one", "occurred_at": "garbage",
        "created_at": "2016-11-16T23:01:04.112Z"}}  # fmt: skip
    fake.add_raw_change(bad_qty)
    no_time = {"type": "ADJUSTMENT", "adjustment": {
        "id": "NOTIMEO78BG6GYWA2XDRYX3K", "catalog_object_id": VARIATION_A, "from_state": "IN_STOCK",
        "to_state": "SOLD", "location_id": LOCATION_MAIN, "quantity": "1", "created_at": "yesterday"}}  # fmt: skip
    fake.add_raw_change(no_time)
    got = {c.problem: c for p in connect(fake, waits).pull_changes(None) for c in p.changes}
    assert set(got) == {
        "unknown state SUPPORTED_BY_NEWER_VERSION",
        "unknown change type BUNDLE_SPLIT",
        "occurred_at unreadable; quantity 'one'",
        "created_at unreadable; occurred_at unreadable",
    }
    unknown = got["unknown change type BUNDLE_SPLIT"]
    assert unknown.raw == new_type and unknown.delta is None and unknown.external_id == "BSXX"
    assert unknown.recorded_at == datetime(2025, 8, 20, 10, 0, tzinfo=UTC)  # read from the unknown body
    assert got["created_at unreadable; occurred_at unreadable"].recorded_at == fake.now()  # the page's Date
    odd = got["occurred_at unreadable; quantity 'one'"]
    assert odd.external_id == "UDMOEO78BG6GYWA2XDRYX3KB" and odd.raw == bad_qty
    assert odd.recorded_at == datetime(2016, 11, 16, 23, 1, 4, 112000, tzinfo=UTC)


def test_updated_after_filters_on_squares_receipt_time(fake: FakeSquare, waits: list[float]) -> None:
    fake.frozen = True
    fake.sell(VARIATION_A, LOCATION_MAIN, 1)
    fake.advance(60)
    # An offline sale uploaded late: business time long ago, receipt time now.
    late = fake.sell(VARIATION_A, LOCATION_MAIN, 2, occurred_at=T0 - timedelta(hours=3))["adjustment"]
    got = [c for p in connect(fake, waits).pull_changes(T0 + timedelta(seconds=30)) for c in p.changes]
    assert [c.external_id for c in got] == [late["id"]]
    assert got[0].occurred_at == T0 - timedelta(hours=3) and got[0].recorded_at == T0 + timedelta(seconds=60)
    assert bodies(fake, CHANGES)[0]["updated_after"] == (T0 + timedelta(seconds=30)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )


def test_changes_page_oldest_first_and_say_when_more_is_coming(fake: FakeSquare, waits: list[float]) -> None:
    for i in range(5):
        fake.sell(VARIATION_A, LOCATION_MAIN, 1, occurred_at=T0 - timedelta(minutes=5 - i))
    fake.page_size = 2
    pages = list(connect(fake, waits).pull_changes(None))
    assert [(len(p.changes), p.has_more) for p in pages] == [(2, True), (2, True), (1, False)]
    times = [c.occurred_at for p in pages for c in p.changes]
    assert times == sorted(times)


def test_a_count_changed_mid_paging_is_seen_twice_or_skipped(fake: FakeSquare, waits: list[float]) -> None:
    # Newest first: A (newest), B, C, D (oldest); pages of 2.
    for v in ["D", "C", "B", "A"]:
        fake.set_count(f"VAR{v}", LOCATION_MAIN, 10)
        fake.advance(1)
    fake.page_size = 2
    # After page 1 (A, B), C sells: it moves to the head, B slides into page 2, C is missed.
    fake.on_page(COUNTS, 1, lambda: fake.sell("VARC", LOCATION_MAIN, 1))
    items = [o.item_ref for p in connect(fake, waits).pull_snapshot() for o in p.observations]
    assert items == ["VARA", "VARB", "VARB", "VARD"]
    assert fake.count("VARC", LOCATION_MAIN) == Decimal(9)
    # A full pass later sees everything once.
    again = [o.item_ref for p in connect(fake, waits).pull_snapshot() for o in p.observations]
    assert sorted(again) == ["VARA", "VARB", "VARC", "VARD"]


def test_a_sale_before_the_page_is_in_it(fake: FakeSquare, waits: list[float]) -> None:
    fake.set_count(VARIATION_A, LOCATION_MAIN, 10)
    fake.on_page(COUNTS, 1, lambda: fake.sell(VARIATION_A, LOCATION_MAIN, 1), before=True)
    obs = [o for p in connect(fake, waits).pull_snapshot() for o in p.observations]
    assert [o.quantity for o in obs] == [Decimal(9)]


def test_429_then_success(fake: FakeSquare, waits: list[float]) -> None:
    fake.set_count(VARIATION_A, LOCATION_MAIN, 10)
    fake.fault(path=COUNTS, status=429, body=error_body("RATE_LIMIT_ERROR", "RATE_LIMITED"))
    pages = list(connect(fake, waits).pull_snapshot())
    assert pages[-1].complete and pages[0].observations[0].quantity == Decimal(10)
    assert len(waits) == 1 and len(fake.calls("POST", COUNTS)) == 2


def test_a_middle_page_500_is_asked_again_with_its_cursor(fake: FakeSquare, waits: list[float]) -> None:
    for i, v in enumerate(VARIATIONS[:5]):
        fake.set_count(v, LOCATION_MAIN, i)
        fake.advance(1)
    fake.page_size = 2
    fake.fault(path=COUNTS, nth=2, status=500, body=error_body("API_ERROR", "INTERNAL_SERVER_ERROR"))
    pages = list(connect(fake, waits).pull_snapshot())
    assert sorted(o.item_ref for p in pages for o in p.observations) == sorted(VARIATIONS[:5])
    cursors = [b.get("cursor") for b in bodies(fake, COUNTS)]
    assert len(cursors) == 4 and cursors[1] == cursors[2] is not None


def test_a_page_of_the_wrong_shape_fails_the_run(fake: FakeSquare, waits: list[float]) -> None:
    fake.fault(path=COUNTS, status=200, every=True, times=9, body={"counts": "soon"})
    with pytest.raises(MalformedResponse, match="'counts' is not a list"):
        list(connect(fake, waits).pull_snapshot())
    assert len(fake.calls("POST", COUNTS)) == 4


def test_a_wrong_token_is_an_auth_error(fake: FakeSquare, waits: list[float]) -> None:
    fake.token = "EAAA-another-token"
    with pytest.raises(AuthError) as err:
        list(connect(fake, waits).pull_snapshot())
    assert err.value.code == "UNAUTHORIZED" and len(fake.journal) == 1


def adjustment(key: str, delta: int = -1, item: str = VARIATION_A) -> OutboundAdjustment:
    return OutboundAdjustment(
        item, LOCATION_MAIN, delta, idempotency_key=key, reference_id=f"omnistock:{key}"
    )


def test_a_push_replayed_with_its_key_is_applied_once(fake: FakeSquare, waits: list[float]) -> None:
    fake.set_count(VARIATION_A, LOCATION_MAIN, 10, occurred_at=T0 - timedelta(minutes=1))
    sq = connect(fake, waits)
    list(sq.pull_snapshot())  # a Date header to derive Square's time from
    batch = [adjustment("mv-1"), adjustment("mv-2", +3)]
    first = sq.push_adjustments(batch)
    again = sq.push_adjustments(batch)
    assert [r.status for r in first + again] == [PushStatus.APPLIED] * 4
    assert [r.key for r in first] == ["mv-1", "mv-2"]
    assert fake.count(VARIATION_A, LOCATION_MAIN) == Decimal(12)  # -1 +3, once
    sent = bodies(fake, CREATE)
    assert sent[0] == sent[1] and sent[0]["idempotency_key"] == chunk_key(
        sorted(batch, key=lambda a: a.idempotency_key)
    )
    change = sent[0]["changes"][0]["adjustment"]  # type: ignore[index]
    assert change["from_state"] == "IN_STOCK" and change["to_state"] == "SOLD" and change["quantity"] == "1"
    assert sent[0]["changes"][1]["adjustment"]["from_state"] == "NONE"  # type: ignore[index]
    assert change["reference_id"] == "omnistock:mv-1"


def test_a_push_whose_answer_was_lost_is_sent_again_and_applied_once(
    fake: FakeSquare, waits: list[float]
) -> None:
    fake.set_count(VARIATION_A, LOCATION_MAIN, 10, occurred_at=T0 - timedelta(minutes=1))
    fake.fault(path=CREATE, action="drop_after")
    results = connect(fake, waits).push_adjustments([adjustment("mv-9")])
    assert [r.status for r in results] == [PushStatus.APPLIED]
    assert len(fake.calls("POST", CREATE)) == 2
    assert fake.count(VARIATION_A, LOCATION_MAIN) == Decimal(9)


def test_occurred_at_follows_squares_clock_when_it_is_behind_ours(waits: list[float]) -> None:
    behind = FakeSquare(now=datetime.now(UTC) - timedelta(hours=1), seed=False)
    with behind:
        results = connect(behind, waits).push_adjustments([adjustment("mv-3")])  # the first call of the run
        assert [r.status for r in results] == [PushStatus.APPLIED], results
        sent = bodies(behind, CREATE)[0]["changes"][0]["adjustment"]  # type: ignore[index]
        occurred = parse_rfc3339(sent["occurred_at"])
        assert occurred is not None and occurred <= behind.now() - timedelta(seconds=4)
        assert occurred > behind.now() - timedelta(minutes=1)
        assert results[0].vendor_time is not None and results[0].vendor_time < datetime.now(UTC) - timedelta(
            minutes=50
        )
        assert behind.count(VARIATION_A, LOCATION_MAIN) == Decimal(-1)


def test_a_refused_chunk_is_rejected_with_squares_code(fake: FakeSquare, waits: list[float]) -> None:
    fake.max_changes = 2
    results = connect(fake, waits).push_adjustments(
        [adjustment(f"mv-{i}") for i in range(3)] + [adjustment("z", 0)]
    )
    assert [(r.status, r.error_code) for r in results] == [
        (PushStatus.REJECTED, "INVALID_ARRAY_LENGTH")
    ] * 3 + [(PushStatus.NOOP, None)]
    assert fake.calls("POST", CREATE) and not fake.entries


def test_chunks_hold_at_most_a_hundred(fake: FakeSquare, waits: list[float]) -> None:
    results = connect(fake, waits).push_adjustments([adjustment(f"mv-{i:03d}") for i in range(150)])
    assert {r.status for r in results} == {PushStatus.APPLIED}
    assert [len(b["changes"]) for b in bodies(fake, CREATE)] == [100, 50]  # type: ignore[arg-type]
    assert len({b["idempotency_key"] for b in bodies(fake, CREATE)}) == 2


def test_the_same_key_with_another_body_is_refused(fake: FakeSquare, waits: list[float]) -> None:
    assert [r.status for r in connect(fake, waits).push_adjustments([adjustment("mv-5")])] == [
        PushStatus.APPLIED
    ]
    fake.advance(30)  # a later run: Square's time moved, so occurred_at (and the body) differ
    later = connect(fake, waits).push_adjustments([adjustment("mv-5")])
    assert [(r.status, r.error_code) for r in later] == [(PushStatus.REJECTED, "IDEMPOTENCY_KEY_REUSED")]
    assert fake.count(VARIATION_A, LOCATION_MAIN) == Decimal(-1)


def test_a_write_outside_squares_window_is_refused_by_the_fake(fake: FakeSquare, waits: list[float]) -> None:
    import requests

    body = {"idempotency_key": "k1", "changes": [{"type": "ADJUSTMENT", "adjustment": {
        "catalog_object_id": VARIATION_A, "location_id": LOCATION_MAIN, "from_state": "IN_STOCK",
        "to_state": "SOLD", "quantity": "1", "occurred_at": "2099-01-01T00:00:00.000Z"}}]}  # fmt: skip
    resp = requests.post(
        f"{fake.url}{CREATE}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert resp.status_code == 400
    assert resp.json()["errors"][0] == {"category": "INVALID_REQUEST_ERROR", "code": "INVALID_TIME",
        "detail": resp.json()["errors"][0]["detail"], "field": "changes[0].adjustment.occurred_at"}  # fmt: skip


def test_webhook_signature_and_the_pairs_it_names(fake: FakeSquare) -> None:
    fake.set_count(VARIATION_B, LOCATION_THIRD, 90)
    url = "https://omnistock.example/hooks/square"
    body = fake.notification([(VARIATION_B, LOCATION_THIRD), (VARIATION_B, LOCATION_THIRD)])
    signature = FakeSquare.sign(SIGNATURE_KEY, url, body)
    assert verify_webhook(SIGNATURE_KEY, url, body, signature)
    assert not verify_webhook(SIGNATURE_KEY, url, body + b" ", signature)
    assert not verify_webhook(SIGNATURE_KEY, "http://10.0.0.5/hooks/square", body, signature)
    assert not verify_webhook("another-key", url, body, signature)
    assert not verify_webhook(SIGNATURE_KEY, url, body, None)
    assert not verify_webhook(SIGNATURE_KEY, url, body, "é not base64")
    assert parse_webhook(body) == [(VARIATION_B, LOCATION_THIRD)]
    assert parse_webhook({"type": "catalog.version.updated"}) == []
    assert parse_webhook(b"not json") == []


def test_the_fake_folds_like_square_a_count_absorbs_an_earlier_dated_offline_sale(fake: FakeSquare) -> None:
    fake.frozen = True
    start = T0 - timedelta(minutes=30)
    fake.set_count(VARIATION_A, LOCATION_MAIN, 100, occurred_at=start)
    fake.sell(VARIATION_A, LOCATION_MAIN, 3, occurred_at=start + timedelta(minutes=10))
    fake.set_count(VARIATION_A, LOCATION_MAIN, 90, occurred_at=start + timedelta(minutes=30))
    fake.advance(60)
    fake.sell(VARIATION_A, LOCATION_MAIN, 2, occurred_at=start + timedelta(minutes=20))  # uploaded late
    assert fake.count(VARIATION_A, LOCATION_MAIN) == Decimal(90)
    fake.adjust(VARIATION_A, LOCATION_MAIN, 2, "IN_STOCK", "WASTE", occurred_at=start + timedelta(minutes=40))
    assert fake.count(VARIATION_A, LOCATION_MAIN) == Decimal(88)
    assert fake.count(VARIATION_A, LOCATION_MAIN, "WASTE") == Decimal(2)
