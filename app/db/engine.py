"""The process's engine and session factory, tuned per backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool


def is_sqlite(where: str | Engine | Connection | Session) -> bool:
    """SQLite needs its own SQL in a few places (no row locks, different upsert limits)."""
    if isinstance(where, str):
        return where.startswith("sqlite")
    if isinstance(where, Session):
        return bool(where.get_bind().dialect.name == "sqlite")
    return bool(where.dialect.name == "sqlite")


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
        # invalidated and the unit of work retried by transaction() instead (see uow._is_transient).
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
