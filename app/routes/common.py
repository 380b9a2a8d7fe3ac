"""What every API route shares: role declarations, the caller, sessions and page cursors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session, sessionmaker

from app.db import read_only
from app.domain.errors import DomainError, Forbidden, InvalidInput
from app.services import keys
from app.services.keys import Principal

F = TypeVar("F", bound=Callable[..., Any])
# What an API view returns: a JSON body, optionally with a status. (flask.typing's alias holds
# forward references that flask-openapi3 cannot resolve when it reads the view's hints.)
ApiResult = dict[str, Any] | tuple[dict[str, Any], int]
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


class Unauthorized(DomainError):
    code = "unauthorized"
    kind = "unauthorized"


class UnsupportedMedia(DomainError):
    code = "unsupported_media_type"
    kind = "unsupported_media"


class BadJson(DomainError):
    code = "invalid_json"
    kind = "bad_request"


def roles(*allowed: str) -> Callable[[F], F]:
    """Declare which roles may call a route; a route without a declaration is refused to all."""

    def mark(view: F) -> F:
        view.roles = frozenset(allowed)  # type: ignore[attr-defined]
        doc = (view.__doc__ or "").strip()
        view.__doc__ = f"{doc}\n\nRoles: {', '.join(sorted(allowed))}."
        return view

    return mark


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


def session_factory() -> sessionmaker[Session]:
    return current_app.extensions["session_factory"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


class _KeyCache:
    """Authenticated keys per process for a few seconds, so a request costs no key lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Principal | None]] = {}

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        with self._lock:
            hit = self._items.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, digest: str, value: Principal | None, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[digest] = (time.monotonic() + ttl, value)


def _presented_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


def init_app(app: Flask) -> None:
    """Authenticate and authorise every /api/v1 request before its body is even parsed."""
    cache = _KeyCache()

    @app.before_request
    def _guard() -> None:
        if not request.path.startswith(API_PREFIX) or request.endpoint is None:
            return
        view = app.view_functions.get(request.endpoint)
        allowed = getattr(view, "roles", None)
        plain = _presented_key()
        if not plain:
            raise Unauthorized("send an API key: Authorization: Bearer <key>")
        digest = hashlib.sha256(plain.encode()).hexdigest()
        hit, who = cache.get(digest)
        if not hit:
            with read_only(session_factory()) as session:
                who = keys.authenticate(session, plain)
            cache.put(digest, who, float(app.config["API_KEY_CACHE_SECONDS"]))
        if who is None:
            raise Unauthorized("unknown or revoked API key")
        if not allowed or who.role not in allowed:
            raise Forbidden(f"role {who.role} may not call this", role=who.role)
        g.principal = who
        if request.method in {"POST", "PUT", "PATCH"} and request.content_length:
            _require_json_body()


def _require_json_body() -> None:
    # Say plainly what is wrong with a body that is not JSON, instead of a schema error.
    if not request.is_json:
        raise UnsupportedMedia("send the body as application/json")
    if request.get_json(silent=True) is None:
        if request.get_data().strip() == b"null":
            # Valid JSON of the wrong shape, like an array: a 422 on the body, not a 400.
            raise InvalidInput("the body must be a JSON object", [{"field": "body", "message": "got null"}])
        raise BadJson("the body is not valid JSON")


def check_location_scope(location_id: int, code: str) -> None:
    """Staff act only on their own locations."""
    scope = principal().scope()
    if scope is not None and location_id not in scope:
        raise Forbidden(f"this key is not for location {code}", location=code)


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
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
    return type(x) is int and 0 <= x <= 2**63 - 1


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
    if not (isinstance(value, str) and len(value) <= 200):
        raise _bad_cursor()
    return value


def page_limit(limit: int | None) -> int:
    return min(
        limit or int(current_app.config["PAGE_SIZE_DEFAULT"]), int(current_app.config["PAGE_SIZE_MAX"])
    )
