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


def keys_in(where: Session | Connection | Engine, sku_col: Any, loc_col: Any, keys: Any) -> Any:
    """`(sku_col, loc_col) IN keys` for any number of (sku_id, location_id) pairs, in one parameter.

    A tuple IN list costs PostgreSQL planning time per pair and fails past about 7,600 pairs
    (stack depth); SQLite caps a statement's parameters. Arrays unnested on PostgreSQL and a JSON
    array walked on SQLite are one parameter each, planned as a semi-join."""
    import json

    from sqlalchemy import ARRAY, Integer, String, bindparam, func, select, tuple_

    pairs = sorted(set(keys))
    bind = where.get_bind() if isinstance(where, Session) else where
    if bind.dialect.name == "postgresql":
        skus = bindparam(None, [p[0] for p in pairs], type_=ARRAY(Integer), unique=True)
        locs = bindparam(None, [p[1] for p in pairs], type_=ARRAY(Integer), unique=True)
        rows = func.unnest(skus, locs).table_valued("s", "l").render_derived()
        return tuple_(sku_col, loc_col).in_(select(rows.c.s, rows.c.l))
    doc = bindparam(None, json.dumps(pairs), type_=String, unique=True)
    each = func.json_each(doc).table_valued("value")
    return tuple_(sku_col, loc_col).in_(
        select(func.json_extract(each.c.value, "$[0]"), func.json_extract(each.c.value, "$[1]"))
    )
