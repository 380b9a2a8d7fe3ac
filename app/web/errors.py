"""The one error map: every failure gets a stable code, as problem+json for the API and an HTML
page for pages, always with the request id and never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, json, render_template, request
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from markupsafe import escape
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from app.domain.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://omnistock.dev/problems/"
# Domain kinds are HTTP-neutral; this is where they meet a status.
STATUS_BY_KIND = {
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unauthorized": 401,
    "rate_limited": 429,
}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_JSON_TYPES = ("application/json", "application/problem+json")


class WebError(Exception):
    """A request refused for its shape (credentials, media type, syntax), before any business rule."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthorized(WebError):
    """No credentials, or ones that name nobody (unknown, revoked, malformed)."""

    status = 401
    code = "unauthorized"


class UnsupportedMedia(WebError):
    status = 415
    code = "unsupported_media_type"


class BadJson(WebError):
    status = 400
    code = "invalid_json"


def _is_page_request() -> bool:
    # A view of a page blueprint, or a path under one's prefix (a 404 matched no view to ask).
    for name, bp in current_app.blueprints.items():
        if not getattr(bp, "serves_html", False):
            continue
        if name in request.blueprints:
            return True
        prefix = (bp.url_prefix or "").rstrip("/")
        if prefix and (request.path == prefix or request.path.startswith(prefix + "/")):
            return True
    return False


def wants_html() -> bool:
    """An HTML error page for pages (or a caller preferring HTML); problem+json for the rest.

    An Accept header that ranks text/html and JSON differently decides (a browser prefers HTML,
    an API client JSON); otherwise a page blueprint's requests get HTML and everything else,
    the API, health, metrics and unknown paths, problem+json.
    """
    if not request:
        return False
    accept = request.accept_mimetypes
    html = accept["text/html"]
    as_json = max(accept[t] for t in _JSON_TYPES)
    if html != as_json:
        return html > as_json
    return _is_page_request()


def problem(status: int, code: str, detail: str | None = None, /, **extra: Any) -> Response:
    """Build an RFC 9457 problem response; extra members never replace the standard ones."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.path if request else None,
        "request_id": g.get("request_id"),
    }
    body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="omnistock"'
    return response


def error_page(status: int, code: str, detail: str | None = None, /, **extra: Any) -> Response:
    """The same problem as an HTML page: what went wrong, the fields at fault and the request id."""
    context = {
        "status": status,
        "title": TITLES.get(status, "Error"),
        "code": code,
        "detail": detail,
        "errors": [e for e in extra.get("errors") or () if isinstance(e, dict)],
        "request_id": g.get("request_id"),
    }
    try:
        html = render_template("errors/error.html", **context)
    except Exception:  # a broken template must not hide the error it was to show
        log.exception("error page template failed")
        html = (
            f"<!doctype html><title>{status} {escape(context['title'])}</title>"
            f"<h1>{status} {escape(context['title'])}</h1><p>{escape(detail or '')}</p>"
            f"<p>Request id: <code>{escape(context['request_id'] or '')}</code></p>"
        )
    response = Response(html, status=status, mimetype="text/html")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="omnistock"'
    return response


def respond(status: int, code: str, detail: str | None = None, /, **extra: Any) -> Response:
    """The error in the form this request takes: an HTML page or problem+json."""
    if wants_html():
        return error_page(status, code, detail, **extra)
    return problem(status, code, detail, **extra)


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _as_sent(loc: tuple[int | str, ...], body: Any) -> tuple[int | str, ...]:
    # Pydantic puts a tagged union's tag in the path (delivery.ship.lat); the client sent
    # delivery.lat, so a step that is not a key of the object but is its "type" is dropped.
    out: list[int | str] = []
    node = body
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def validation_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as {field, message}, fields as paths into the JSON sent."""
    errors = []
    body = request.get_json(silent=True) if request and request.is_json else None
    for e in error.errors(include_url=False, include_input=False):
        loc = _as_sent(tuple(e["loc"]), body)
        message = e["msg"]
        # A model-level rule says which field it is about as "field: message".
        if e["type"] == "value_error" and ": " in message.removeprefix("Value error, "):
            message = message.removeprefix("Value error, ")
            head, _, rest = message.partition(": ")
            if head.isidentifier():
                loc, message = (*loc, head), rest
        errors.append({"field": _field(loc), "message": message.removeprefix("Value error, ")})
    return errors or [{"field": "body", "message": "invalid"}]


def validation_problem(error: ValidationError) -> Response:
    """Pydantic errors as a 422 naming every field at fault (flask-openapi3's callback too)."""
    errors = validation_errors(error)
    return respond(422, "validation_error", f"{len(errors)} field(s) invalid", errors=errors)


def init_app(app: Flask) -> None:
    """Map web, domain and HTTP errors and the unexpected through respond(), never a stack trace."""
    # The error page's template, where an app-level templates/errors/error.html may override it.
    app.register_blueprint(Blueprint("web_errors", __name__, template_folder="templates"))

    @app.errorhandler(WebError)
    def _web(error: WebError) -> Response:
        return respond(error.status, error.code, error.message, **error.details)

    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        status = STATUS_BY_KIND.get(error.kind, 409)
        return respond(status, error.code, error.message, **error.details)

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> Response:
        # A page form without a valid token: most often one left open past its session.
        return respond(400, "form_expired", "The form has expired. Reload the page and try again.")

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError) -> Response:
        return validation_problem(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        if error.response is not None:
            # flask-openapi3 aborts with a ready-made (problem) response for invalid input.
            return error.response  # type: ignore[return-value]
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        response = respond(status, code, error.description)
        # Allow (405), Retry-After and the like belong to the answer; werkzeug's Content-Type does not.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers.setdefault(name, value)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return respond(500, "internal_error", "the error was logged with this request id")
