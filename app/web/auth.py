"""Who is calling: every /api/v1 request is authenticated and authorised before its body is read.

A request yields one Principal (app.domain.access) from whichever resolver recognises its
credentials: an API key for /api/v1, a signed-in staff session (Flask's signed session cookie)
for pages. Routes and services never care which; they check locations through
Principal.require_location or pass Principal.scope() on. Every page form carries a CSRF token
(Flask-WTF); the API, vendor hooks and demo vendors authenticate by key or HMAC and are exempt.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeGuard, TypeVar

from flask import Flask, Response, current_app, g, request, session
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]

from app.db import read_only
from app.domain.access import Principal
from app.domain.errors import Forbidden
from app.services import keys, staff
from app.web import session_factory
from app.web.body import require_json_body
from app.web.errors import Unauthorized
from app.web.openapi import API_PREFIX

F = TypeVar("F", bound=Callable[..., Any])
# A resolver gives the request's Principal, None when the request carries no credentials of its
# kind, or raises Unauthorized for credentials that name nobody.
Resolver = Callable[[], Principal | None]
# Keys are "osk_<hex>_<urlsafe base64>"; anything outside that alphabet (a control character, a
# space, NUL) names nobody and is refused before it reaches the cache or the database.
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_RESOLVERS = "omnistock.principal_resolvers"
# What a signed-in session holds: {"uid": account id, "epoch": its session epoch, "iat": issued at (s)}.
SESSION_KEY = "staff"
SESSION_COOKIE = "omnistock_session"
# Requests that authenticate by key or signature, not by the session cookie: no CSRF token.
CSRF_EXEMPT_PREFIXES = ("/api/", "/hooks/", "/demo-vendors/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_UNSET = object()


def roles(*allowed: str) -> Callable[[F], F]:
    """Declare which roles may call a route; a route without a declaration is refused to all."""

    def mark(view: F) -> F:
        view.roles = frozenset(allowed)  # type: ignore[attr-defined]
        doc = (view.__doc__ or "").strip()
        view.__doc__ = f"{doc}\n\nRoles: {', '.join(sorted(allowed))}."
        return view

    return mark


def principal() -> Principal:
    """The authenticated caller of this request (set by the guard)."""
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


def presented_key() -> str | None:
    """The API key sent as Authorization: Bearer, or else in X-API-Key."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


class ApiKeyResolver:
    """The Principal of the request's API key; known and unknown keys are cached for ttl seconds."""

    def __init__(self, ttl: float) -> None:
        self._cache = _KeyCache()
        self._ttl = ttl

    def __call__(self) -> Principal | None:
        plain = presented_key()
        if not plain:
            return None
        if not _KEY_SHAPE.fullmatch(plain):
            raise Unauthorized("malformed API key")
        digest = hashlib.sha256(plain.encode()).hexdigest()
        hit, who = self._cache.get(digest)
        if not hit:
            with read_only(session_factory()) as session:
                who = keys.authenticate(session, plain)
            self._cache.put(digest, who, self._ttl)
        if who is None:
            raise Unauthorized("unknown or revoked API key")
        return who


def sign_in_session(user_id: int, epoch: int) -> None:
    """Start a signed-in session for an account (a fresh cookie: nothing of the old one is kept)."""
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = {"uid": user_id, "epoch": epoch, "iat": int(time.time())}
    g.pop("session_principal", None)


def sign_out_session() -> None:
    """Forget the session in this browser (staff.end_sessions ends it everywhere)."""
    session.clear()
    g.pop("session_principal", None)


def _session_claims() -> tuple[int, int] | None:
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    uid, epoch, issued = data.get("uid"), data.get("epoch"), data.get("iat")
    if not (_is_int(uid) and _is_int(epoch) and _is_int(issued)):
        return None
    lifetime = float(current_app.config["SESSION_HOURS"]) * 3600
    now = time.time()
    if issued > now + 60 or now - issued > lifetime:
        return None
    return uid, epoch


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def session_principal() -> Principal | None:
    """The Principal of a signed-in staff session, or None (no session, expired, ended, disabled).

    The cookie is signed (itsdangerous, SECRET_KEY), so its account id, epoch and issue time are
    the ones sign-in wrote; the account is looked up on every request, so a deactivation, a new
    password or a sign-out elsewhere (a raised epoch) ends it at once. Once per request.
    """
    cached = g.get("session_principal", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[no-any-return]
    who: Principal | None = None
    claims = _session_claims()
    if claims is not None:
        with read_only(session_factory()) as db:
            who = staff.principal_for(db, *claims)
    if who is None and SESSION_KEY in session:
        session.pop(SESSION_KEY)  # expired or ended: the browser need not send it again
    g.session_principal = who
    return who


def api_resolvers() -> Sequence[Resolver]:
    """Who may call /api/v1: API keys only (a session cookie carries no CSRF token there)."""
    return current_app.extensions[_RESOLVERS]["api"]  # type: ignore[no-any-return]


def page_resolvers() -> Sequence[Resolver]:
    """Who may open pages: a signed-in session."""
    return current_app.extensions[_RESOLVERS]["pages"]  # type: ignore[no-any-return]


def resolve_principal(resolvers: Sequence[Resolver]) -> Principal:
    """The first Principal a resolver recognises; no credentials at all is a 401."""
    for resolve in resolvers:
        who = resolve()
        if who is not None:
            return who
    raise Unauthorized("send an API key: Authorization: Bearer <key>")


def authorise(resolvers: Sequence[Resolver]) -> Principal:
    """Authenticate the request and check its view's role declaration; the caller is g.principal."""
    view = current_app.view_functions.get(request.endpoint or "")
    allowed = getattr(view, "roles", None)
    who = resolve_principal(resolvers)
    if not allowed or who.role not in allowed:
        raise Forbidden(f"role {who.role} may not call this", role=who.role)
    g.principal = who
    return who


def _configure_sessions(app: Flask) -> None:
    """The session cookie (HttpOnly, SameSite=Lax, Secure behind TLS) and CSRF on every page form."""
    app.config["SESSION_COOKIE_NAME"] = SESSION_COOKIE
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = bool(app.config.get("SESSION_COOKIE_SECURE"))
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=float(app.config["SESSION_HOURS"]))
    # A token lives as long as its session (bounded by SESSION_HOURS), not an hour: a counter
    # tablet left on the pickup screen must not find every form expired after lunch.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf = CSRFProtect(app)

    @app.before_request
    def _csrf_guard() -> None:
        if request.method in _SAFE_METHODS or request.endpoint is None:
            return
        if not current_app.config.get("WTF_CSRF_ENABLED", True):
            return
        if request.path.startswith(CSRF_EXEMPT_PREFIXES):
            return
        csrf.protect()

    @app.after_request
    def _no_store_when_signed_in(response: Response) -> Response:
        # A signed-in page must not come back from the browser's cache after sign-out (Back).
        if g.get("session_principal") is not None:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _signed_in() -> dict[str, Any]:
        return {"current_staff": session_principal}


def init_app(app: Flask) -> None:
    """Authenticate and authorise every /api/v1 request before its body is even parsed."""
    _configure_sessions(app)
    app.extensions[_RESOLVERS] = {
        "api": (ApiKeyResolver(float(app.config["API_KEY_CACHE_SECONDS"])),),
        "pages": (session_principal,),
    }

    @app.before_request
    def _guard() -> None:
        if not request.path.startswith(API_PREFIX) or request.endpoint is None:
            return
        authorise(api_resolvers())
        view = current_app.view_functions.get(request.endpoint or "")
        if (
            request.method in {"POST", "PUT", "PATCH"}
            and request.content_length
            and not getattr(view, "raw_body", False)
        ):
            require_json_body()
