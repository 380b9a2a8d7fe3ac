"""Answers go out only through their *Out schemas, so the API answers what /api/openapi.json says."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# What an API view returns: a JSON body, optionally with a status. (flask.typing's alias holds
# forward references that flask-openapi3 cannot resolve when it reads the view's hints.)
ApiResult = dict[str, Any] | tuple[dict[str, Any], int]


def respond(schema: type[BaseModel], read_model: Any, status: int = 200) -> tuple[dict[str, Any], int]:
    """Serialise a service's read model through the route's *Out schema (fields it lacks are an
    error, fields it does not declare are not sent)."""
    return schema.model_validate(read_model, from_attributes=True).model_dump(), status


def respond_page(schema: type[BaseModel], items: Any, next_cursor: str | None) -> tuple[dict[str, Any], int]:
    """A keyset page of read models through its *Page schema."""
    return respond(schema, {"items": items, "next_cursor": next_cursor})
