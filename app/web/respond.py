"""Answers go out only through their *Out schemas, so the API answers what /api/openapi.json says."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.schemas import problem_responses

# What an API view returns: a JSON body, optionally with a status. (flask.typing's alias holds
# forward references that flask-openapi3 cannot resolve when it reads the view's hints.)
ApiResult = dict[str, Any] | tuple[dict[str, Any], int]
# Every problem an API route can answer, documented with the problem schema. Any route: no or a
# bad key (401), a role or store it may not use (403), an unknown object (404), input it refuses
# (422), the unexpected (500, logged with the request id). A route with a body also: a body that
# is not JSON (400), too large (413) or not sent as JSON (415), and a refusal by the ledger or
# the order's state (409).
READ_PROBLEMS: dict[int | str, Any] = problem_responses(401, 403, 404, 422, 500)
WRITE_PROBLEMS: dict[int | str, Any] = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 500)


def respond(schema: type[BaseModel], read_model: Any, status: int = 200) -> tuple[dict[str, Any], int]:
    """Serialise a service's read model through the route's *Out schema (fields it lacks are an
    error, fields it does not declare are not sent)."""
    return schema.model_validate(read_model, from_attributes=True).model_dump(), status


def respond_page(schema: type[BaseModel], items: Any, next_cursor: str | None) -> tuple[dict[str, Any], int]:
    """A keyset page of read models through its *Page schema."""
    return respond(schema, {"items": items, "next_cursor": next_cursor})
