"""A request body is a JSON object, not nested deeper than MAX_JSON_DEPTH, or it is refused by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import request

from app.domain.errors import InvalidInput
from app.schemas.types import MAX_JSON_DEPTH, json_depth_exceeds
from app.web.errors import BadJson, UnsupportedMedia

F = TypeVar("F", bound=Callable[..., Any])


def _text_nests_deeper(raw: bytes, max_depth: int) -> bool:
    # Whether unparsed JSON text nests past max_depth (strings skipped): did the parser give up on depth?
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _too_deep() -> InvalidInput:
    return InvalidInput(
        "the body is nested too deeply",
        [{"field": "body", "message": f"nests deeper than {MAX_JSON_DEPTH} levels"}],
    )


def require_json_body() -> None:
    """Say plainly what is wrong with a body that is not a JSON object, instead of a schema error."""
    if not request.is_json:
        raise UnsupportedMedia("send the body as application/json")
    body = request.get_json(silent=True)
    if body is None:
        raw = request.get_data().strip()
        if raw == b"null":
            # Valid JSON of the wrong shape, like an array: a 422 on the body, not a 400.
            raise InvalidInput("the body must be a JSON object", [{"field": "body", "message": "got null"}])
        if _text_nests_deeper(raw, MAX_JSON_DEPTH):
            raise _too_deep()
        raise BadJson("the body is not valid JSON")
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise _too_deep()


def raw_body(view: F) -> F:
    """Mark a route whose body is not JSON (an uploaded file): the guard leaves its body alone."""
    view.raw_body = True  # type: ignore[attr-defined]
    return view
