"""The unit of work: one transaction per request or job, retried whole on transient conflicts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import exc
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import is_sqlite

log = logging.getLogger(__name__)
T = TypeVar("T")


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        if is_sqlite(session.get_bind()):
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
