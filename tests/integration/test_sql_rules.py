"""The ledger's rules as SQL (app.db.rules) answer as app.domain.ledger does, row for row, on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
from flask import Flask
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db import Raw, rules, unit_of_work
from app.domain import ledger
from app.models import Location, Sku, StockLevel
from tests.conftest import Api

MAX_ROWS = 12
DEFAULTS = range(0, 6)  # the locations' default safety stock: one location per value


class Row(NamedTuple):
    """One stock level as the test writes it, with the order line that asks for it."""

    on_hand: int
    reserved: int
    override: int | None  # stock_levels.safety_stock; None: the location's default applies
    default: int  # locations.default_safety_stock
    online: bool
    qty: int  # units wanted (>= 1, as every order line)

    @property
    def safety(self) -> int:
        return self.default if self.override is None else self.override


ROWS = st.lists(
    st.builds(
        Row,
        on_hand=st.integers(-8, 12),  # an outside sale may take on_hand below zero
        reserved=st.integers(0, 12),
        override=st.none() | st.integers(0, 6),
        default=st.sampled_from(DEFAULTS),
        online=st.booleans(),
        qty=st.integers(1, 8),
    ),
    min_size=1,
    max_size=MAX_ROWS,
)
# The rows each rule turns on, tried first whatever the generator draws.
EDGES = [
    Row(on_hand=-2, reserved=0, override=None, default=0, online=False, qty=1),  # below zero, nothing promised
    Row(on_hand=-2, reserved=1, override=None, default=0, online=True, qty=1),  # below zero and promised
    Row(on_hand=5, reserved=5, override=None, default=0, online=True, qty=1),  # exactly covered
    Row(on_hand=5, reserved=1, override=None, default=2, online=True, qty=2),  # default safety, at the edge
    Row(on_hand=5, reserved=1, override=0, default=3, online=True, qty=4),  # an override of 0 beats the default
    Row(on_hand=5, reserved=1, override=4, default=0, online=True, qty=1),  # the override holds units back
    Row(on_hand=5, reserved=1, override=4, default=3, online=False, qty=4),  # the till ignores safety stock
]

Check = Callable[[Session, list[Row], dict[int, int]], None]


@pytest.fixture
def places(app: Flask) -> dict[str, Any]:
    """A location per default safety stock and a SKU per row, committed once; rows are written per example."""
    with unit_of_work(app.extensions["session_factory"]) as s:
        s.execute(insert(Location), [{"code": f"D{d}", "name": f"D{d}", "kind": "store",
                                      "default_safety_stock": d} for d in DEFAULTS])  # fmt: skip
        s.execute(insert(Sku), [{"code": f"S{i}", "name": f"S{i}"} for i in range(MAX_ROWS)])
        loc = dict(s.execute(select(Location.default_safety_stock, Location.id)).tuples().all())
        skus = list(s.scalars(select(Sku.id).order_by(Sku.id)))
    return {"factory": app.extensions["session_factory"], "loc": loc, "skus": skus}


def _each_example(places: dict[str, Any], check: Check) -> None:
    """Run check on generated rows, each example written to stock_levels and rolled back."""

    def once(rows: list[Row]) -> None:
        with _rolled_back(places["factory"]) as s:
            sku_of = dict(enumerate(places["skus"][: len(rows)]))  # a SKU per row: each row its own level
            s.execute(insert(StockLevel), [{"sku_id": sku_of[i], "location_id": places["loc"][r.default],
                                            "on_hand": r.on_hand, "reserved": r.reserved, "safety_stock": r.override}
                                           for i, r in enumerate(rows)])  # fmt: skip
            check(s, rows, sku_of)

    run = settings(max_examples=100, deadline=None, database=None, derandomize=True)(given(ROWS)(once))
    for edge in EDGES:
        run = example([edge])(run)
    run = example(EDGES)(run)
    run()


@contextmanager
def _rolled_back(factory: Any) -> Iterator[Session]:
    session: Session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def _disagreements(rows: list[Row], sql: dict[int, Any], python: Callable[[Row], Any]) -> list[str]:
    return [f"{row}: SQL {sql.get(i)!r}, domain {python(row)!r}" for i, row in enumerate(rows)
            if sql.get(i) != python(row)]  # fmt: skip


def _values(raw: Raw, n: int, width: int) -> str:
    # As the reservation statement binds them: PostgreSQL types untyped VALUES as text otherwise.
    one = "(" + ", ".join(["?" if raw.sqlite else "CAST(? AS INTEGER)"] * width) + ")"
    return ", ".join([one] * n)


def test_the_reservation_predicate_admits_exactly_the_rows_free_units_covers(places: dict[str, Any]) -> None:
    def check(s: Session, rows: list[Row], sku_of: dict[int, int]) -> None:
        raw = Raw.of(s)
        got = raw.execute(
            f"WITH v (sku_id, location_id, qty, online, ds) AS (VALUES {_values(raw, len(rows), 5)}) "
            "SELECT s.sku_id FROM stock_levels s JOIN v ON s.sku_id = v.sku_id AND s.location_id = v.location_id "
            f"WHERE {rules.reservable_sql('s', 'v')}",
            [x for i, r in enumerate(rows)
             for x in (sku_of[i], places["loc"][r.default], r.qty, int(r.online), r.default)],
        )  # fmt: skip
        admitted = {sku for (sku,) in got}
        sql = {i: sku_of[i] in admitted for i in range(len(rows))}
        bad = _disagreements(
            rows, sql, lambda r: ledger.free_units(r.on_hand, r.reserved, r.safety, online=r.online) >= r.qty
        )
        assert not bad, bad

    _each_example(places, check)


def test_the_shortage_filter_selects_exactly_the_rows_with_a_shortage(places: dict[str, Any]) -> None:
    def check(s: Session, rows: list[Row], sku_of: dict[int, int]) -> None:
        short = {sku for (sku,) in Raw.of(s).execute(f"SELECT s.sku_id FROM stock_levels s WHERE {rules.short_sql('s')}")}
        orm_short = set(s.scalars(select(StockLevel.sku_id).where(rules.is_short(StockLevel.on_hand, StockLevel.reserved))))
        for form, got in (("short_sql", short), ("is_short", orm_short)):
            sql = {i: sku_of[i] in got for i in range(len(rows))}
            bad = _disagreements(rows, sql, lambda r: ledger.shortage(ledger.Level(r.on_hand, r.reserved)) > 0)
            assert not bad, (form, bad)

    _each_example(places, check)


def test_safety_and_free_units_in_select_are_the_domains(places: dict[str, Any]) -> None:
    def check(s: Session, rows: list[Row], sku_of: dict[int, int]) -> None:
        safety = rules.effective_safety(StockLevel.safety_stock, Location.default_safety_stock)
        got = s.execute(
            select(StockLevel.sku_id, safety,
                   rules.free_units(StockLevel.on_hand, StockLevel.reserved, safety, online=True),
                   rules.free_units(StockLevel.on_hand, StockLevel.reserved, safety, online=False))
            .join(Location, Location.id == StockLevel.location_id)
        ).tuples().all()  # fmt: skip
        text = dict(Raw.of(s).execute(
            f"SELECT s.sku_id, {rules.safety_sql('s', 'l.default_safety_stock')} "
            "FROM stock_levels s JOIN locations l ON l.id = s.location_id"
        ))  # fmt: skip
        index = {sku: i for i, sku in sku_of.items()}
        sql = {index[sku]: (text[sku], safe, online, till) for sku, safe, online, till in got}
        bad = _disagreements(rows, sql, lambda r: (r.safety, r.safety, ledger.free_units(
            r.on_hand, r.reserved, r.safety, online=True), ledger.free_units(r.on_hand, r.reserved, r.safety, online=False)))  # fmt: skip
        assert not bad, bad

    _each_example(places, check)


def test_the_reservation_statements_hold_the_rule_this_file_tests() -> None:
    """Tested SQL is the SQL that runs: an edit to the statement's predicate fails here."""
    from app.services.orders import reservations

    for name in ("_RESERVE_PG", "_RESERVE_SQLITE"):
        statement = " ".join(getattr(reservations, name).split())
        assert f"AND {rules.reservable_sql('s', 'v')}" in statement, name


def test_short_only_lists_only_levels_with_a_shortage(
    ops: Api, network: Callable[..., None], receive: Callable[..., Any]
) -> None:
    network(locations=[{"code": "ST-A"}, {"code": "ST-B"}], skus=["TEE"])
    receive(("TEE", "ST-B", 1))
    # A till sells two units nobody had counted in: on_hand -2, nothing promised, so no shortage.
    r = ops.post("/api/v1/stock/movements",
                 {"movements": [{"kind": "sale", "sku": "TEE", "location": "ST-A", "qty": 2}]})  # fmt: skip
    assert r.status_code == 201, r.json
    levels = ops.get("/api/v1/stock/levels?short_only=true").json["items"]
    assert [(lv["location"], lv["shortage"]) for lv in levels] == []
