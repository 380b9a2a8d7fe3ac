"""Cursors: what the API gave comes back; anything else is a 422 on `cursor`, never a 500."""

from __future__ import annotations

import pytest
from flask import Flask

from app.domain.errors import InvalidInput
from app.web.pagination import cursor_id, cursor_ids, cursor_text, encode_cursor, page_limit


def test_cursors_round_trip() -> None:
    assert cursor_id(encode_cursor(2**63 - 1)) == 2**63 - 1
    assert cursor_ids(encode_cursor([3, 4]), 2) == (3, 4)
    assert cursor_text(encode_cursor("WEB-1")) == "WEB-1"
    assert cursor_id(None) is None and cursor_text("") is None


@pytest.mark.parametrize(
    ("read", "value"),
    [
        (cursor_id, 2**63),
        (cursor_id, -1),
        (cursor_id, True),
        (cursor_id, "1"),
        (lambda c: cursor_ids(c, 2), [1]),
        (lambda c: cursor_ids(c, 2), [1, 2.0]),
        (cursor_text, 5),
        (cursor_text, "x" * 201),
        (cursor_text, "A\x00B"),
        (cursor_text, "\ud800"),
    ],
)
def test_a_cursor_the_api_did_not_give_is_a_422(read: object, value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        read(encode_cursor(value))  # type: ignore[operator]
    assert caught.value.details["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("garbage", ["%%%", "!", "eyJ"])
def test_garbage_is_a_422(garbage: str) -> None:
    with pytest.raises(InvalidInput):
        cursor_id(garbage)


def test_page_limit_defaults_and_caps() -> None:
    app = Flask(__name__)
    app.config.update(PAGE_SIZE_DEFAULT=50, PAGE_SIZE_MAX=200)
    with app.app_context():
        assert (page_limit(None), page_limit(10), page_limit(10_000)) == (50, 10, 200)
