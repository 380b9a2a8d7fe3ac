"""Dialect-specific statements: one place picks PostgreSQL's or SQLite's INSERT ... ON CONFLICT."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

Upsert = postgresql.Insert | sqlite.Insert


def insert_for(where: Session | Connection | Engine, table: Any) -> Upsert:
    """An INSERT into `table` for the backend `where` runs on, with its on_conflict_do_* methods.

    Both constructs take ``on_conflict_do_nothing()`` and ``on_conflict_do_update(index_elements=,
    set_=)`` with ``.excluded``; PostgreSQL's extras (``constraint=``) are not portable, so callers
    keep to the shared subset.
    """
    bind = where.get_bind() if isinstance(where, Session) else where
    name = bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {name} dialect")
