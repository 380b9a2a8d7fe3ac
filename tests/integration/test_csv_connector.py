"""The CSV stock-file connector: every quirk of real exports, refused whole with line numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.sync.base import AuthError, BadFile, Connection, MalformedResponse, Observation, SnapshotPage
from app.sync.csvfeed import PAGE_ROWS, build, parse_quantity
from app.sync.fakes.csvfile import FakeCsvHost

FILE_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TOKEN = "tok-1"  # the fake host's bearer token


@pytest.fixture
def host() -> Iterator[FakeCsvHost]:
    fake = FakeCsvHost(token=TOKEN, now=FILE_TIME)
    fake.frozen = True
    fake.start()
    yield fake
    fake.stop()


def pull(data: bytes, **options: Any) -> tuple[list[SnapshotPage], dict[str, Any]]:
    conn = Connection(base_url="", secrets={}, file_bytes=data, options=options)
    connector = build(conn)
    pages = list(connector.pull_snapshot())
    return pages, connector.report


def rows(data: bytes, **options: Any) -> list[Observation]:
    pages, _ = pull(data, **options)
    return [o for p in pages for o in p.observations]


def refused(data: bytes, **options: Any) -> list[tuple[int, str]]:
    with pytest.raises(BadFile) as info:
        pull(data, **options)
    return [(p.line, p.message) for p in info.value.problems]


def lines_refused(data: bytes, **options: Any) -> list[int]:
    return [line for line, _ in refused(data, **options)]


def test_canonical_file_gives_one_observation_per_row_with_its_line() -> None:
    pages, report = pull(b"sku,location_code,on_hand\nA-1,ST-A,5\nB-2,ST-B,-3\n", as_of=FILE_TIME.isoformat())
    [page] = pages
    assert page.complete and page.vendor_time == FILE_TIME
    assert [(o.item_ref, o.location_ref, o.quantity, o.line, o.sku) for o in page.observations] == [
        ("A-1", "ST-A", Decimal(5), 2, "A-1"),
        ("B-2", "ST-B", Decimal(-3), 3, "B-2"),
    ]
    assert page.observations[0].tracked and page.observations[0].problem is None
    assert report["rows"] == 2 and report["delimiter"] == "," and report["encoding"] == "utf-8"
    assert report["as_of_source"] == "option"


def test_header_names_are_case_and_space_insensitive_with_aliases() -> None:
    [obs] = rows(b" SKU ,Location Code, Qty ,Name\nA-1,ST-A,7,Blue mug\n")
    assert (obs.item_ref, obs.location_ref, obs.quantity) == ("A-1", "ST-A", Decimal(7))
    [obs] = rows(b"Sku,LOCATION,Quantity\nA-1,ST-A,7\n")
    assert obs.quantity == Decimal(7)


def test_location_ref_option_when_there_is_no_location_column() -> None:
    [obs] = rows(b"sku,on_hand\nA-1,4\n", location_ref="ST-C")
    assert obs.location_ref == "ST-C"
    assert refused(b"sku,on_hand\nA-1,4\n")[0][0] == 1


def test_missing_quantity_column_is_refused_at_the_header() -> None:
    assert lines_refused(b"sku,location\nA,ST\n") == [1]
    assert lines_refused(b"sku,qty,on_hand\nA,1,1\n", location_ref="S") == [1]  # two quantity columns


def test_bom_sep_line_and_decimal_comma() -> None:
    data = "\ufeffsep=;\r\nSKU;Location;On hand\r\nA-1;ST-A;2,5\r\nB-2;ST-A;3\r\n".encode()
    pages, report = pull(data)
    obs = pages[0].observations
    assert [(o.item_ref, o.quantity, o.line) for o in obs] == [
        ("A-1", Decimal("2.5"), 3),
        ("B-2", Decimal(3), 4),
    ]
    assert report["bom"] and report["sep_line"] and report["delimiter"] == ";"


def test_cp1252_file_is_read_and_reported() -> None:
    data = "sku;location;qty\nCafé-1;Entrepôt;3\n".encode("cp1252")
    pages, report = pull(data)
    [obs] = pages[0].observations
    assert (obs.item_ref, obs.location_ref) == ("Café-1", "Entrepôt")
    assert report["encoding"] == "cp1252"


def test_tab_delimiter_is_sniffed() -> None:
    pages, report = pull(b"sku\tlocation\ton_hand\nA\tST\t1\n")
    assert report["delimiter"] == "\t" and pages[0].observations[0].quantity == Decimal(1)


def test_quoted_fields_and_embedded_newlines_keep_line_numbers_right() -> None:
    data = b'sku,location,on_hand\r\n"A,1","ST\r\nA",1\r\nB,ST,"2"\r\nC,ST,x\r\n'
    assert refused(data) == [(5, "quantity 'x' is not a number")]
    good = rows(data.replace(b"x", b"4"))
    assert [(o.item_ref, o.location_ref, o.line) for o in good] == [
        ("A,1", "ST\r\nA", 2),
        ("B", "ST", 4),
        ("C", "ST", 5),
    ]


def test_trailing_empty_rows_and_delimiter_only_rows_are_ignored() -> None:
    obs = rows(b"sku;location;on_hand\nA;S;1\n;;\n\nB;S;2\n;;;;\n\n\n")
    assert [o.item_ref for o in obs] == ["A", "B"]


def test_truncated_last_line_is_refused_with_its_number() -> None:
    assert refused(b"sku,location,on_hand\nA,S,1\nB,S\n") == [
        (3, "2 fields where the header has 3 (a truncated line?)")
    ]


def test_unterminated_quote_on_the_last_line_is_refused() -> None:
    assert lines_refused(b'sku,location,on_hand\nA,S,1\nB,"S,2\n') == [3]


def test_extra_fields_are_refused_but_trailing_empty_ones_are_not() -> None:
    assert lines_refused(b"sku,location,on_hand\nA,S,1,oops\n") == [2]
    assert [o.quantity for o in rows(b"sku,location,on_hand\nA,S,1,,\n")] == [Decimal(1)]


def test_duplicated_header_row_is_refused() -> None:
    data = b"sku,location,on_hand\nA,S,1\nsku,location,on_hand\nB,S,2\n"
    assert refused(data) == [(3, "the header is repeated here (files concatenated?)")]


def test_identical_duplicate_rows_collapse_and_are_counted() -> None:
    pages, report = pull(b"sku,location,on_hand\nA,S,1\nA,S,1\nA,T,1\n")
    assert [(o.item_ref, o.location_ref) for o in pages[0].observations] == [("A", "S"), ("A", "T")]
    assert report["duplicates_collapsed"] == 1 and report["rows"] == 2


def test_conflicting_duplicates_are_refused_naming_both_lines() -> None:
    [(line, message)] = refused(b"sku,location,on_hand\nA,S,1\nB,S,1\nA,S,4\n")
    assert line == 4 and "on line 2" in message


def test_blank_sku_is_refused() -> None:
    assert refused(b"sku,location,on_hand\nA,S,1\n  ,S,2\n") == [(3, "blank sku")]


def test_blank_location_cell_is_refused() -> None:
    assert lines_refused(b"sku,location,on_hand\nA,,1\n") == [2]


@pytest.mark.parametrize("token", ["not stocked", "-", "n/a", "", "#N/A", "1e3", "abc"])
def test_non_numeric_quantity_tokens_are_refused(token: str) -> None:
    data = f"sku;location;on_hand\nA;S;1\nB;S;{token}\n".encode()
    assert lines_refused(data) == [3]


@pytest.mark.parametrize("token", ["1.234", "1 234", "1\u00a0234", "1.234,5", "1,234"])
def test_thousands_separators_are_refused_as_ambiguous(token: str) -> None:
    [(line, message)] = refused(f"sku;location;on_hand\nA;S;{token}\n".encode())
    assert line == 2 and ("thousands" in message or "ambiguous" in message)


def test_fractional_quantities_are_kept_as_decimals() -> None:
    assert parse_quantity("2,5") == Decimal("2.5") == parse_quantity(" 2.50 ")
    assert parse_quantity("-3") == Decimal(-3) and parse_quantity("+4") == Decimal(4)


def test_scientific_notation_sku_is_refused_as_excel_damage() -> None:
    [(line, message)] = refused(b"sku,location,on_hand\n4.00638E+12,S,1\n")
    assert line == 2 and "Excel" in message
    assert rows(b"sku,location,on_hand\n12E45,S,1\n")[0].item_ref == "12E45"  # not Excel's shape


def test_excel_text_escape_keeps_leading_zeros() -> None:
    assert rows(b'sku,location,on_hand\n"=""00123""",S,1\n')[0].item_ref == "00123"


def test_every_bad_line_is_named_in_one_refusal() -> None:
    data = b"sku,location,on_hand\nA,S,1\n,S,2\nC,S,-\nD,S,3\nE,S\n"
    assert lines_refused(data) == [3, 4, 6]


def test_as_of_column_sets_rows_and_the_page_time_to_the_latest() -> None:
    data = b"sku,location,on_hand,as_of\nA,S,1,2026-03-01T10:00:00+01:00\nB,S,2,2026-03-01T08:00:00Z\n"
    pages, report = pull(data)
    [page] = pages
    assert [o.as_of for o in page.observations] == [
        datetime(2026, 3, 1, 9, tzinfo=UTC),
        datetime(2026, 3, 1, 8, tzinfo=UTC),
    ]
    assert page.vendor_time == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert report["as_of_source"] == "column"


def test_as_of_without_offset_is_refused() -> None:
    assert lines_refused(b"sku,location,on_hand,as_of\nA,S,1,2026-03-01T10:00:00\n") == [2]


def test_big_file_comes_in_pages_complete_only_on_the_last() -> None:
    n = PAGE_ROWS * 2 + 7
    data = ("sku,location,on_hand\n" + "".join(f"S{i},L,{i % 9}\n" for i in range(n))).encode()
    pages, report = pull(data, as_of=FILE_TIME.isoformat())
    assert [len(p.observations) for p in pages] == [PAGE_ROWS, PAGE_ROWS, 7]
    assert [p.complete for p in pages] == [False, False, True]
    assert report["rows"] == n and pages[-1].observations[-1].line == n + 1


def test_header_only_file_is_refused_rather_than_read_as_no_stock() -> None:
    assert lines_refused(b"sku,location,on_hand\n\n") == [1]
    assert lines_refused(b"") == [1]


def _url_conn(host: FakeCsvHost, path: str, *, token: str | None = TOKEN, **options: Any) -> Connection:
    return Connection(
        base_url=f"{host.url}{path}",
        secrets={"token": token} if token else {},
        options=options,
        sleep=lambda s: None,
    )


def test_url_download_matches_the_upload_and_takes_the_date_header_as_t(host: FakeCsvHost) -> None:
    data = b"sku;location;on_hand\nA;S;1\nB;S;2,5\n"
    host.put("/exports/stock.csv", data)
    connector = build(_url_conn(host, "/exports/stock.csv"))
    pages = list(connector.pull_snapshot())
    assert pages[0].observations == rows(data, as_of=FILE_TIME.isoformat())
    assert pages[0].vendor_time == FILE_TIME and connector.report["as_of_source"] == "date_header"
    assert host.calls("GET")[0]["headers"]["Authorization"] == "Bearer tok-1"


def test_option_as_of_wins_over_the_date_header(host: FakeCsvHost) -> None:
    host.put("/s.csv", b"sku,location,on_hand\nA,S,1\n")
    pages = list(build(_url_conn(host, "/s.csv", as_of="2026-03-01T00:00:00+00:00")).pull_snapshot())
    assert pages[0].vendor_time == datetime(2026, 3, 1, tzinfo=UTC)


def test_wrong_token_is_an_auth_error(host: FakeCsvHost) -> None:
    host.put("/s.csv", b"sku,location,on_hand\nA,S,1\n")
    with pytest.raises(AuthError):
        list(build(_url_conn(host, "/s.csv", token="nope")).pull_snapshot())


def test_truncated_download_is_refused_naming_the_last_line(host: FakeCsvHost) -> None:
    data = b"sku,location,on_hand\n" + b"".join(b"A-%d,STORE-NORTH,10\n" % i for i in range(1, 5))
    host.put("/s.csv", data)
    host.fault(method="GET", path="/s.csv", action="truncate")
    with pytest.raises(BadFile) as info:
        list(build(_url_conn(host, "/s.csv")).pull_snapshot())
    # the first half (48 of 97 bytes) ends inside line 3 at "A-2,STOR": named as cut short
    assert data[: len(data) // 2].endswith(b"\nA-2,STOR")
    assert [(p.line, p.message) for p in info.value.problems] == [
        (3, "2 fields where the header has 3 (a truncated line?)")
    ]


def test_503_then_the_file(host: FakeCsvHost) -> None:
    host.put("/s.csv", b"sku,location,on_hand\nA,S,1\n")
    host.fault(method="GET", path="/s.csv", status=503, body="busy")
    waits: list[float] = []
    conn = Connection(base_url=f"{host.url}/s.csv", secrets={"token": "tok-1"}, sleep=waits.append)
    pages = list(build(conn).pull_snapshot())
    assert pages[0].observations[0].item_ref == "A" and len(waits) == 1
    assert len(host.calls("GET", "/s.csv")) == 2


def test_an_html_page_instead_of_the_file_is_malformed(host: FakeCsvHost) -> None:
    host.put("/s.csv", b"<html><body>Log in</body></html>", content_type="text/html")
    with pytest.raises(MalformedResponse):
        list(build(_url_conn(host, "/s.csv")).pull_snapshot())
