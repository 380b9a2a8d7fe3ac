"""Keyset page cursors: opaque to clients, checked on the way back in (a bad one is a 422)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import current_app

from app.domain.errors import InvalidInput

_MAX_DB_INT = 2**63 - 1


def encode_cursor(value: Any) -> str:
    """A JSON value as an opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The JSON value inside a cursor (None for no cursor); anything undecodable is a 422."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc


def _bad_cursor() -> InvalidInput:
    return InvalidInput("bad cursor", [{"field": "cursor", "message": "not a cursor this API gave"}])


def _db_int(x: Any) -> bool:
    return type(x) is int and 0 <= x <= _MAX_DB_INT


def cursor_id(cursor: str | None) -> int | None:
    """A keyset cursor holding one id (anything else is the caller's 422, never a 500)."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not _db_int(value):
        raise _bad_cursor()
    return int(value)


def cursor_ids(cursor: str | None, n: int) -> tuple[int, ...] | None:
    """A keyset cursor holding n ids."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == n and all(_db_int(x) for x in value)):
        raise _bad_cursor()
    return tuple(value)


def cursor_text(cursor: str | None) -> str | None:
    """A keyset cursor holding one code."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not (isinstance(value, str) and len(value) <= 200 and _storable(value)):
        raise _bad_cursor()
    return value


def _storable(text: str) -> bool:
    # A forged cursor could carry what no column holds (NUL, a lone surrogate): a 422, not a 500.
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def page_limit(limit: int | None) -> int:
    """The page size asked for, or the default, never over PAGE_SIZE_MAX."""
    return min(
        limit or int(current_app.config["PAGE_SIZE_DEFAULT"]), int(current_app.config["PAGE_SIZE_MAX"])
    )
