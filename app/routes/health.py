"""The front page for a person, and liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from app.db import read_only

bp = Blueprint("health", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """The front page: what omnistock is and where to go (the same links as JSON, if JSON is preferred)."""
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        base = request.host_url
        return {
            "service": "omnistock",
            "api": base + "api/v1",
            "openapi": base + "api/openapi.json",
            "docs": base + "api/swagger",
            "pickup": base + "pickup",
            "health": base + "healthz",
            "metrics": base + "metrics",
        }
    return render_template("home.html")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up (says nothing of the database)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready to serve: the database answers."""
    try:
        with read_only(current_app.extensions["session_factory"]) as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the reason is for the operator
        current_app.logger.warning("readiness check failed: %s", exc)
        return {"status": "unavailable", "checks": {"database": "unreachable"}}, 503
    return {"status": "ok", "checks": {"database": "ok"}}
