"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from app.db import read_only

bp = Blueprint("health", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """Where to look."""
    base = request.host_url
    return {
        "service": "omnistock",
        "api": base + "api/v1",
        "openapi": base + "api/openapi.json",
        "docs": base + "api/swagger",
        "health": base + "healthz",
        "metrics": base + "metrics",
    }


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
