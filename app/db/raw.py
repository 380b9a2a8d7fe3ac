"""The hot path's raw statements: the driver's cursor, one placeholder style, values as the ORM stores them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, cast

import orjson
from psycopg import RawCursor
from psycopg.pq import ExecStatus
from psycopg.types.json import Json
from sqlalchemy import exc
from sqlalchemy.orm import Session


class Raw:
    """Hot-path statements on the driver's own cursor, inside the session's transaction.

    Profiling the order path showed SQLAlchemy's per-statement bookkeeping costing more CPU than
    PostgreSQL spends running these small statements, and each round trip costing both sides
    system calls, so the hottest statements go straight to the DBAPI and, on PostgreSQL, several
    can run as one (``execute_together``). (psycopg's pipeline mode was measured too: it saves
    waiting, not CPU; it cost more CPU per statement than plain round trips.) SQL is written with
    ``?`` placeholders for both drivers; values are adapted the way the models' column types
    store them (aware UTC datetimes, dicts and lists as JSON). Driver errors surface as
    SQLAlchemy's, so the error map and transaction()'s retries treat them like any other
    statement's.
    """

    def __init__(self, session: Session) -> None:
        self._conn = session.connection()
        self.sqlite = self._conn.dialect.name == "sqlite"
        self._dbapi: Any = cast(Any, self._conn.connection.driver_connection)
        # psycopg's RawCursor takes $n placeholders as they are: no query parsing per call.
        self._cursor: Any = self._dbapi.cursor() if self.sqlite else RawCursor(self._dbapi)
        self._adapt = _sqlite_value if self.sqlite else _pg_value
        self._errors: type[Exception] = self._conn.dialect.loaded_dbapi.Error

    @staticmethod
    def of(session: Session) -> Raw:
        """The session's Raw for this unit of work (a session never outlives its transaction here)."""
        raw = session.info.get("raw")
        if raw is None:
            raw = session.info["raw"] = Raw(session)
        return raw  # type: ignore[no-any-return]

    def sql(self, text: str) -> str:
        """The statement in this driver's placeholder style (cached per text)."""
        if self.sqlite:
            return text
        out = _RAW_SQL.get(text)
        if out is None:
            parts = text.split("?")
            out = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
            if len(text) <= 8192:
                _RAW_SQL[text] = out
        return out

    def execute(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement now and return its rows (none for plain DML)."""
        cursor = self._cursor
        self._send(cursor, text, params)
        try:
            # A cheaper test than cursor.description, which builds column objects every call.
            if self.sqlite:
                return cursor.fetchall() if cursor.description else []  # type: ignore[no-any-return]
            return cursor.fetchall() if cursor.pgresult.status == TUPLES_OK else []  # type: ignore[no-any-return]
        except self._errors as error:
            raise self._wrap(error, text) from error

    def execute_together(
        self,
        inserts: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
        final: str,
        params: Sequence[Any],
    ) -> list[tuple[Any, ...]]:
        """Multi-row inserts, then a statement whose rows are wanted, as one statement where possible.

        PostgreSQL runs them as data-modifying WITH clauses of the final statement: one message,
        one execution, one snapshot; every row is written or, on any error, none. SQLite (or an
        oversized batch) runs them in turn.
        """
        inserts = [(t, c, r) for t, c, r in inserts if r]
        if self.sqlite or sum(len(c) * len(r) for _, c, r in inserts) + len(params) > RAW_MAX_PARAMS:
            for table, columns, rows in inserts:
                self.insert(table, columns, rows)
            return self.execute(final, params)
        text = _together(tuple((t, tuple(c), len(r)) for t, c, r in inserts), final)
        return self.execute(text, [v for _, _, rows in inserts for row in rows for v in row] + list(params))

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], suffix: str = ""
    ) -> list[tuple[Any, ...]]:
        """One multi-row INSERT for all rows; `suffix` adds ON CONFLICT/RETURNING (rows returned)."""
        out: list[tuple[Any, ...]] = []
        returning = "RETURNING" in suffix
        # Both servers cap the parameters in one statement (PostgreSQL 65,535; SQLite 32,766).
        per = max(1, RAW_MAX_PARAMS // len(columns))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            text = _insert_text(table, tuple(columns), len(chunk), suffix)
            rows_back = self.execute(text, [v for row in chunk for v in row])
            if returning:
                out += rows_back
        return out

    def _send(self, cursor: Any, text: str, params: Sequence[Any]) -> None:
        adapt = self._adapt
        try:
            cursor.execute(self.sql(text), [adapt(v) for v in params])
        except self._errors as error:
            raise self._wrap(error, text) from error

    def _wrap(self, error: Exception, text: str) -> exc.DBAPIError:
        dialect = self._conn.dialect
        invalidated = dialect.is_disconnect(error, self._dbapi, self._cursor)  # type: ignore[arg-type]
        if invalidated:
            self._conn.invalidate(error)
        wrapped = exc.DBAPIError.instance(
            text, None, error, self._errors, connection_invalidated=invalidated, dialect=dialect
        )
        return cast(exc.DBAPIError, wrapped)  # orig is a driver error, so never a bare StatementError


RAW_MAX_PARAMS = 30_000
TUPLES_OK = ExecStatus.TUPLES_OK
_RAW_SQL: dict[str, str] = {}
_RAW_INSERTS: dict[tuple[str, tuple[str, ...], int, str], str] = {}


def _insert_text(table: str, columns: tuple[str, ...], rows: int, suffix: str) -> str:
    key = (table, columns, rows, suffix)
    text = _RAW_INSERTS.get(key)
    if text is None:
        one = "(" + ", ".join("?" * len(columns)) + ")"
        text = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)} {suffix}"
        if rows <= 32:  # big batches vary in size: keep only the small, hot shapes
            _RAW_INSERTS[key] = text
    return text


@lru_cache(maxsize=512)
def _together(shapes: tuple[tuple[str, tuple[str, ...], int], ...], final: str) -> str:
    ctes = ", ".join(f"w{i} AS ({_insert_text(t, c, n, '')})" for i, (t, c, n) in enumerate(shapes))
    if not ctes:
        return final
    body = final.lstrip()
    if body[:5].upper() == "WITH ":
        return f"WITH {ctes}, {body[5:]}"
    return f"WITH {ctes} {body}"


def _pg_value(value: Any) -> Any:
    # orjson: encoding the stored routing explanation was a visible share of an order's CPU.
    return Json(value, _orjson_dumps) if isinstance(value, dict | list) else value


def _orjson_dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _sqlite_value(value: Any) -> Any:
    # As SQLAlchemy's SQLite types store them, so the ORM reads these rows back unchanged.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value
