"""A request body is a JSON object, or it is refused saying what it is instead."""

from __future__ import annotations

from flask import request

from app.domain.errors import InvalidInput
from app.web.errors import BadJson, UnsupportedMedia


def require_json_body() -> None:
    """Say plainly what is wrong with a body that is not a JSON object, instead of a schema error."""
    if not request.is_json:
        raise UnsupportedMedia("send the body as application/json")
    if request.get_json(silent=True) is None:
        raw = request.get_data().strip()
        if raw == b"null":
            # Valid JSON of the wrong shape, like an array: a 422 on the body, not a 400.
            raise InvalidInput("the body must be a JSON object", [{"field": "body", "message": "got null"}])
        raise BadJson("the body is not valid JSON")
