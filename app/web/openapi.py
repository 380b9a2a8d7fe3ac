"""How the API is mounted and described: its prefix, security schemes and the headers views
read themselves, added to the OpenAPI document flask-openapi3 generates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from flask_openapi3 import OpenAPI

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/api/v1"
# Either scheme alone authenticates (OpenAPI: alternatives are separate requirement objects).
SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"ApiKeyHeader": []}]
SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `flask --app app keys create`, as `Authorization: Bearer osk_...`",
    },
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key in an X-API-Key header, for clients that cannot set Authorization",
    },
}


def documented_headers(**headers: str) -> Callable[[F], F]:
    """Document request headers a view reads itself (parsing them per request through a schema
    made flask-openapi3 rebuild that schema's JSON schema on every call)."""

    def mark(view: F) -> F:
        view.doc_headers = headers  # type: ignore[attr-defined]
        return view

    return mark


def add_documented_headers(app: Flask, spec: dict[str, Any]) -> None:
    """Put each view's documented headers into the OpenAPI operation as header parameters."""
    for rule in app.url_map.iter_rules():
        headers = getattr(app.view_functions.get(rule.endpoint), "doc_headers", None)
        if not headers:
            continue
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            op = spec.get("paths", {}).get(path, {}).get(method.lower())
            if op is None:
                continue
            params = op.setdefault("parameters", [])
            for name, description in headers.items():
                if not any(p.get("name") == name and p.get("in") == "header" for p in params):
                    params.append({"name": name, "in": "header", "required": False,
                                   "schema": {"type": "string", "maxLength": 200}, "description": description})  # fmt: skip


class OmnistockAPI(OpenAPI):
    """flask-openapi3, plus the request headers views document themselves."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()  # type: ignore[no-untyped-call]
        add_documented_headers(self, self.spec_json)
