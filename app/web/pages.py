"""Server-rendered pages: a PageBlueprint's requests answer errors as HTML pages, not problem+json,
and its views require a signed-in staff session with `@signed_in` (or the whole blueprint with
`bp.before_request(require_signed_in)`).

A signed-in page request has the same Principal an API key gives, as g.principal
(app.web.auth.principal()), so services take principal().scope() alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, request, url_for

from app.domain.errors import Forbidden
from app.web.auth import session_principal
from app.web.errors import Unauthorized, wants_html

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NEXT = "/pickup"
_NO_RETURN = ("/sign-in", "/sign-out")


class PageBlueprint(Blueprint):
    """A blueprint of HTML pages (its errors, and 404s under its url_prefix, are HTML pages)."""

    serves_html = True


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """Where to go after signing in: a path on this site, never another site (open redirect)."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith("//"):
        return default
    if any(ord(ch) < 32 or ch in "\\\x7f" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in _NO_RETURN:
        return default
    return target


def _return_path() -> str | None:
    if request.method == "GET":
        return request.full_path.removesuffix("?")
    # A form posted after the session ended: back to the page it was on, not to the form's action.
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path:
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return None


def sign_in_url(next_path: str | None = None) -> str:
    """The sign-in page, returning to next_path (a local path) afterwards."""
    nxt = safe_next(next_path, default="") if next_path else ""
    return url_for("pages_auth.sign_in", next=nxt) if nxt else url_for("pages_auth.sign_in")


def require_signed_in() -> Response | None:
    """None when a staff session is signed in (g.principal set); else a redirect to sign-in.

    Usable as a blueprint's before_request. A request preferring JSON (a script's fetch) gets a
    401 problem instead of a redirect. A view's @roles, if any, is checked too (403).
    """
    who = session_principal()
    if who is None:
        if not wants_html():
            raise Unauthorized("sign in first")
        return cast(Response, redirect(sign_in_url(_return_path()), 302 if request.method == "GET" else 303))
    allowed = getattr(current_app.view_functions.get(request.endpoint or ""), "roles", None)
    if allowed and who.role not in allowed:
        raise Forbidden(f"role {who.role} may not open this page", role=who.role)
    g.principal = who
    return None


def signed_in(view: F) -> F:
    """A page view only a signed-in staff member may open; others go to /sign-in?next=<this page>."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        refused = require_signed_in()
        if refused is not None:
            return refused
        return view(*args, **kwargs)

    return cast(F, guarded)
