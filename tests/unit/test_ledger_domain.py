import ast
from pathlib import Path

import pytest

from app.domain.ledger import Deltas, Kind, Level, available, deltas_for, shortage, sum_deltas


@pytest.mark.parametrize(
    ("kind", "qty", "expected"),
    [
        (Kind.RECEIPT, 5, Deltas(on_hand=5)),
        (Kind.SALE, 2, Deltas(on_hand=-2)),
        (Kind.ADJUSTMENT, -3, Deltas(on_hand=-3)),
        (Kind.TRANSFER_OUT, 4, Deltas(on_hand=-4)),
        (Kind.TRANSFER_EXPECTED, 4, Deltas(incoming=4)),
        (Kind.TRANSFER_IN, 4, Deltas(on_hand=4, incoming=-4)),
        (Kind.RESERVATION, 1, Deltas(reserved=1)),
        (Kind.RELEASE, 1, Deltas(reserved=-1)),
        (Kind.FULFILMENT, 3, Deltas(on_hand=-3, reserved=-3)),
        (Kind.RETURN, 2, Deltas(on_hand=2)),
    ],
)
def test_each_movement_kind_moves_the_right_quantities(kind: Kind, qty: int, expected: Deltas) -> None:
    assert deltas_for(kind, qty) == expected


def test_a_damaged_return_is_recorded_but_does_not_rejoin_stock() -> None:
    assert deltas_for(Kind.RETURN, 2, resellable=False) == Deltas()


def test_online_availability_holds_back_safety_stock_and_the_till_does_not() -> None:
    level = Level(on_hand=10, reserved=3, safety_stock=2)
    assert available(level, online=True) == 5
    assert available(level, online=False) == 7


def test_availability_is_never_shown_below_zero() -> None:
    assert available(Level(on_hand=-2, reserved=3, safety_stock=1), online=True) == 0
    assert available(Level(on_hand=1, reserved=0, safety_stock=5), online=True) == 0


def test_shortage_counts_promised_units_that_are_not_there() -> None:
    assert shortage(Level(on_hand=2, reserved=5)) == 3
    assert shortage(Level(on_hand=-1, reserved=2)) == 2
    assert shortage(Level(on_hand=5, reserved=2)) == 0


def test_a_level_is_the_sum_of_its_movements() -> None:
    rows = [deltas_for(Kind.RECEIPT, 10), deltas_for(Kind.RESERVATION, 4), deltas_for(Kind.FULFILMENT, 4)]
    assert sum_deltas(rows) == Deltas(on_hand=6, reserved=0, incoming=0)


def test_the_domain_imports_no_framework() -> None:
    banned = {"flask", "sqlalchemy", "requests", "werkzeug", "psycopg", "pydantic"}
    domain = Path(__file__).resolve().parents[2] / "app" / "domain"
    offenders = []
    for path in domain.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []
