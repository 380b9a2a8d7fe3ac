"""The database layer: base and types, engine, unit of work, raw hot-path statements, upserts.

Import from here (``from app.db import unit_of_work``); the modules say what each part is for:
``base`` (declarative base, naming convention, UTC timestamps, the clock), ``engine`` (engine
and session factory per backend), ``uow`` (transactions and their retries), ``raw`` (the order
path's statements on the driver's cursor), ``dialect`` (portable INSERT ... ON CONFLICT) and
``rules`` (the ledger's rules as SQL, kept in step with app.domain.ledger by a test).
"""

from app.db.base import NAMING_CONVENTION, Base, UTCDateTime, utcnow
from app.db.dialect import Upsert, insert_for
from app.db.engine import is_sqlite, make_engine, make_session_factory
from app.db.raw import RAW_MAX_PARAMS, Raw
from app.db.uow import Retry, after_commit, read_only, transaction, unit_of_work

__all__ = [
    "NAMING_CONVENTION",
    "RAW_MAX_PARAMS",
    "Base",
    "Raw",
    "Retry",
    "UTCDateTime",
    "Upsert",
    "after_commit",
    "insert_for",
    "is_sqlite",
    "make_engine",
    "make_session_factory",
    "read_only",
    "transaction",
    "unit_of_work",
    "utcnow",
]
