"""The ledger's rules where a statement must decide them in the database: the SQL forms of
app.domain.ledger's free_units and shortage, kept in one place.

Each rule comes as SQL text (for the raw hot-path statements, written against table aliases)
and, where a select() needs it, as a SQLAlchemy expression. tests/integration/test_sql_rules.py
evaluates every form against the domain function on the same generated rows, on SQLite and
on PostgreSQL; change a form here only with its domain function.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, case, func


def safety_sql(level: str = "s", default: str = "l.default_safety_stock") -> str:
    """The safety stock that applies: the level's own override, else its location's default.

    The SQL form of ``app.domain.ledger.safety_for``.
    """
    return f"COALESCE({level}.safety_stock, {default})"


def reservable_sql(level: str = "s", wanted: str = "v") -> str:
    """``free_units(on_hand, reserved, safety, online=online) >= qty`` for a wanted qty >= 1.

    `level` is a stock_levels alias; `wanted` a row source with ``qty`` (>= 1), ``online`` (1 for
    an online channel, 0 at the store's till: the domain's ``online=``) and ``ds`` (the location's
    default safety stock). free_units clamps at zero, which cannot change the answer for qty >= 1,
    so the statement compares the unclamped difference.
    """
    return (
        f"{level}.on_hand - {level}.reserved - {wanted}.online * "
        f"{safety_sql(level, f'{wanted}.ds')} >= {wanted}.qty"
    )


def short_sql(level: str = "s") -> str:
    """``shortage(level) > 0``: more reserved than is physically there (a negative on_hand with
    nothing reserved promises nothing, so it is no shortage)."""
    return f"({level}.reserved > 0 AND {level}.reserved > {level}.on_hand)"


def effective_safety(
    override: SQLColumnExpression[int | None], default: SQLColumnExpression[int]
) -> ColumnElement[int]:
    """safety_sql() for select(): the level's override, else its location's default."""
    return cast("ColumnElement[int]", func.coalesce(override, default))


def free_units(
    on_hand: SQLColumnExpression[int],
    reserved: SQLColumnExpression[int],
    safety: SQLColumnExpression[int],
    *,
    online: bool,
) -> ColumnElement[int]:
    """``ledger.free_units`` for select(): on_hand - reserved (- safety online), never below zero."""
    rest = on_hand - reserved - safety if online else on_hand - reserved
    return case((rest > 0, rest), else_=0)


def is_short(on_hand: SQLColumnExpression[int], reserved: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """short_sql() for select(): ``shortage(level) > 0``."""
    return and_(reserved > 0, reserved > on_hand)
