"""Engine, session factory and the unit of work: one transaction per request or job."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, TypeVar, cast

import orjson
from psycopg import RawCursor
from psycopg.pq import ExecStatus
from psycopg.types.json import Json
from sqlalchemy import DateTime, Dialect, MetaData, event, exc
from sqlalchemy.engine import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)
T = TypeVar("T")

# Named constraints let Alembic drop and alter them later on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and returned as aware UTC (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The one clock of the service: aware UTC."""
    return datetime.now(UTC)


def is_sqlite(url_or_engine: str | Engine) -> bool:
    """SQLite needs its own SQL in a few places (no row locks, different upsert limits)."""
    if isinstance(url_or_engine, str):
        return url_or_engine.startswith("sqlite")
    return bool(url_or_engine.dialect.name == "sqlite")


class Raw:
    """Hot-path statements on the driver's own cursor, inside the session's transaction.

    Profiling the order path showed SQLAlchemy's per-statement bookkeeping costing more CPU than
    PostgreSQL spends running these small statements, and each round trip costing both sides
    system calls, so the hottest statements go straight to the DBAPI and, on PostgreSQL, several
    can run as one (``execute_together``). (psycopg's pipeline mode was measured too: it saves
    waiting, not CPU; it cost more CPU per statement than plain round trips.) SQL is written with ``?`` placeholders for both
    drivers; values are adapted the way the models' column types store them (aware UTC
    datetimes, dicts and lists as JSON). Driver errors surface as SQLAlchemy's, so the error map
    and transaction()'s retries treat them like any other statement's.
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


def make_engine(config: dict[str, Any]) -> Engine:
    """Build the process's engine; SQLite gets WAL, a busy timeout and explicit BEGINs."""
    url = str(config["DATABASE_URL"])
    echo = bool(config.get("DATABASE_ECHO", False))
    if is_sqlite(url):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": float(config.get("SQLITE_BUSY_TIMEOUT_S", 30))},
            # One connection per checkout: SQLite connections are cheap and file locks are
            # what serialise writers, so pooling buys nothing and shares state across threads.
            poolclass=NullPool,
        )
        _sqlite_transactions(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        # JIT compiles a plan when its estimate crosses a threshold; with stale statistics that
        # can add ~10 ms to every sub-millisecond OLTP query. These queries never need it.
        connect_args={"options": "-c jit=off"},
        pool_size=int(config.get("DATABASE_POOL_SIZE", 10)),
        max_overflow=int(config.get("DATABASE_MAX_OVERFLOW", 10)),
        # No ping per checkout (a round trip per request): a connection found dead is
        # invalidated and the unit of work retried by transaction() instead (see _is_transient).
        pool_pre_ping=bool(config.get("DATABASE_POOL_PRE_PING", False)),
        pool_recycle=int(config.get("DATABASE_POOL_RECYCLE_S", 1800)),
    )
    # A small executemany INSERT as one multi-row statement: one round trip, where psycopg's
    # pipelined executemany costs several (pipeline enter, sync, exit) for a handful of rows.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling starts a DEFERRED transaction only before DML; a read
    # then write in it can fail with "database is locked" regardless of the busy timeout. We
    # take over BEGIN so writers start IMMEDIATE (wait for the lock up front) and readers DEFERRED.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """One factory per process; objects stay usable after commit for serialising responses."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
        try:
            session.commit()
        except BaseException as error:
            # Whether a commit that failed took effect is unknown: never replay it blindly.
            error.during_commit = True  # type: ignore[attr-defined]
            raise
        for hook in session.info.pop("after_commit", []):
            hook()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A read transaction: never commits; closing ends it and keeps loaded objects readable."""
    session = factory()
    try:
        yield session
    finally:
        session.close()


def after_commit(session: Session, hook: Callable[[], None]) -> None:
    """Run hook only once the unit of work has committed (metrics, wake-ups)."""
    session.info.setdefault("after_commit", []).append(hook)


class Retry(Exception):
    """Raised inside a transaction to ask for the whole unit of work to run again."""


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, Retry):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        # A pooled connection the server had dropped (restart, failover): nothing was
        # written on it, so the whole unit of work can run again on a fresh one.
        return not getattr(error, "during_commit", False)
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    # 40001 serialization failure, 40P01 deadlock: PostgreSQL asks the client to retry.
    if sqlstate in {"40001", "40P01"}:
        return True
    return "database is locked" in str(orig)


def transaction(factory: sessionmaker[Session], work: Callable[[Session], T], attempts: int = 5) -> T:
    """Run work in one unit of work, retrying the whole of it on transient conflicts."""
    for attempt in range(1, attempts + 1):
        try:
            with unit_of_work(factory) as session:
                return work(session)
        except Exception as error:
            if attempt == attempts or not _is_transient(error):
                raise
            log.info("retrying transaction after transient conflict", extra={"attempt": attempt})
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")
