"""The database layer: hot-path raw statements store what the ORM reads, and dropped connections heal."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from sqlalchemy import exc, select, text
from sqlalchemy.orm import Session

from app.db import RAW_MAX_PARAMS, Raw, read_only, transaction, unit_of_work
from app.models import LocationDayUsage, Movement, OutboxEvent
from app.services import catalog
from tests.conftest import make_test_app


def _ids(app: Flask) -> tuple[int, int]:
    with unit_of_work(app.extensions["session_factory"]) as s:
        loc = catalog.create_location(s, {"code": "L1", "name": "L1", "kind": "store"})
        catalog.upsert_skus(s, [{"code": "A", "name": "A"}])
        sku = catalog.sku_ids(s, ["A"])["A"]
        return sku, loc.id


def test_raw_rows_read_back_through_the_orm_unchanged(app: Flask) -> None:
    _, loc = _ids(app)
    when = datetime(2026, 11, 24, 7, 30, 15, 123456, tzinfo=UTC)
    with unit_of_work(app.extensions["session_factory"]) as s:
        raw = Raw.of(s)
        assert Raw.of(s) is raw
        raw.insert("outbox_events", ("type", "order_id", "fulfilment_id", "payload", "created_at"),
                   [("order.created", 7, None, {"a": [1, "x"], "b": None}, when)])  # fmt: skip
        raw.insert("location_day_usage", ("location_id", "day", "used"), [(loc, date(2026, 11, 24), 3)])
        got = raw.execute("SELECT used FROM location_day_usage WHERE location_id = ? AND day = ?",
                          [loc, date(2026, 11, 24)])  # fmt: skip
        assert got == [(3,)]
        assert raw.execute("UPDATE location_day_usage SET used = used + 1 WHERE location_id = ?", [loc]) == []
    with read_only(app.extensions["session_factory"]) as s:
        event = s.scalars(select(OutboxEvent)).one()
        assert (event.type, event.order_id, event.fulfilment_id) == ("order.created", 7, None)
        assert event.payload == {"a": [1, "x"], "b": None}
        assert event.created_at == when
        usage = s.scalars(select(LocationDayUsage)).one()
        assert (usage.day, usage.used) == (date(2026, 11, 24), 4)


def test_a_raw_insert_larger_than_one_statement_allows_is_split_and_complete(app: Flask) -> None:
    sku, loc = _ids(app)
    columns = ("kind", "sku_id", "location_id", "qty", "source", "external_ref", "leg", "occurred_at",
               "recorded_at")  # fmt: skip
    n = RAW_MAX_PARAMS // len(columns) * 2 + 5  # three statements
    now = datetime.now(UTC)
    with unit_of_work(app.extensions["session_factory"]) as s:
        Raw.of(s).insert(
            "movements", columns, [("note", sku, loc, 0, "t", f"r{i}", 0, now, now) for i in range(n)]
        )
    with read_only(app.extensions["session_factory"]) as s:
        refs = s.scalars(select(Movement.external_ref)).all()
    assert sorted(refs) == sorted(f"r{i}" for i in range(n))


def test_a_connection_the_server_dropped_is_replaced_and_the_work_retried(
    pg_database: str, tmp_path: Path
) -> None:
    app = make_test_app(pg_database, tmp_path)
    factory = app.extensions["session_factory"]
    try:
        pid = transaction(factory, lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar_one())
        # The pooled connection is now idle; kill it from outside, as a server restart would.
        with psycopg.connect(pg_database.replace("+psycopg", ""), autocommit=True) as other:
            assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
        calls: list[int] = []

        def work(s: Session) -> int:
            calls.append(1)
            # The hot path's raw statements are retried like SQLAlchemy's own.
            return int(Raw.of(s).execute("SELECT pg_backend_pid()")[0][0])

        new_pid = transaction(factory, work)
        assert new_pid != pid
        assert len(calls) == 2  # the first attempt hit the dead connection
    finally:
        app.extensions["engine"].dispose()


def test_a_failed_commit_is_not_replayed() -> None:
    from sqlalchemy import exc

    from app.db.uow import _is_transient

    dropped = exc.OperationalError(
        "COMMIT", {}, Exception("server closed the connection"), connection_invalidated=True
    )
    assert _is_transient(dropped)
    dropped.during_commit = True  # type: ignore[attr-defined]
    assert not _is_transient(dropped)


def test_raw_sql_numbers_placeholders_for_postgresql_and_leaves_the_rest() -> None:
    class _Fake(Raw):
        def __init__(self) -> None:
            self.sqlite = False

    assert _Fake().sql("SELECT '50%' WHERE x = ? AND y = ?") == "SELECT '50%' WHERE x = $1 AND y = $2"


def test_raw_driver_errors_surface_as_sqlalchemy_errors_and_roll_back(app: Flask) -> None:
    _, loc = _ids(app)
    day = date(2026, 11, 24)
    factory = app.extensions["session_factory"]

    def twice(s: Session) -> None:
        raw = Raw.of(s)
        raw.insert("location_day_usage", ("location_id", "day", "used"), [(loc, day, 1)])
        raw.insert("location_day_usage", ("location_id", "day", "used"), [(loc, day, 2)])

    with pytest.raises(exc.IntegrityError):
        transaction(factory, twice)
    with read_only(factory) as s:
        assert s.scalars(select(LocationDayUsage)).all() == []


def test_inserts_run_together_with_a_final_statement_all_or_nothing(app: Flask) -> None:
    _, loc = _ids(app)
    factory = app.extensions["session_factory"]
    now = datetime.now(UTC)
    usage = (
        "location_day_usage",
        ("location_id", "day", "used"),
        [(loc, date(2026, 1, d), d) for d in (1, 2)],
    )
    events = ("outbox_events", ("type", "payload", "created_at"), [("t", {"n": 1}, now)])
    with unit_of_work(factory) as s:
        # The final statement runs with the inserts (one snapshot on PostgreSQL): it sees none of them.
        got = Raw.of(s).execute_together([usage, events], "SELECT count(*) FROM location_day_usage", [])
        assert got == ([(2,)] if Raw.of(s).sqlite else [(0,)])
    with read_only(factory) as s:
        assert sorted(u.used for u in s.scalars(select(LocationDayUsage))) == [1, 2]
        assert [e.payload for e in s.scalars(select(OutboxEvent))] == [{"n": 1}]

    def clash(s: Session) -> None:  # a duplicate row in the batch: nothing of it may stay
        Raw.of(s).execute_together([("outbox_events", events[1], events[2]), usage], "SELECT ?", [1])

    with pytest.raises(exc.IntegrityError):
        transaction(factory, clash)
    with read_only(factory) as s:
        assert len(s.scalars(select(OutboxEvent)).all()) == 1
