"""The web layer: who is calling (auth), page cursors (pagination), the API's description
(openapi) and the one error map answering JSON for the API and HTML for pages (errors).

Routes import from the module they need; nothing here holds business rules.
"""

from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker


def session_factory() -> sessionmaker[Session]:
    """The app's session factory, for a route's one unit of work."""
    return current_app.extensions["session_factory"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """Guard /api/v1 and map every error (call after observability, so a request has its id)."""
    from app.web import auth, errors

    auth.init_app(app)
    errors.init_app(app)
