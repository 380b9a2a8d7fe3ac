"""The staged snapshot: mapped rows written outside the ledger transaction, read by the reconcile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from app.models_sync import SnapshotRow

Row = tuple[int, int, int, datetime]  # sku_id, location_id, qty, vendor_time (T)
COLUMNS = ("run_id", "sku_id", "location_id", "qty", "vendor_time")


def stage(session: Session, run_id: int, rows: Sequence[Row]) -> None:
    """Append rows (keys new to this run); PostgreSQL gets COPY, SQLite one executemany."""
    if not rows:
        return
    conn = session.connection()
    dbapi: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with (
            dbapi.cursor() as cur,
            cur.copy(f"COPY sync_snapshot_rows ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for sku_id, loc_id, qty, at in rows:
                copy.write_row((run_id, sku_id, loc_id, qty, at))
        return
    cur = dbapi.cursor()
    cur.executemany(
        "INSERT INTO sync_snapshot_rows (run_id, sku_id, location_id, qty, vendor_time) VALUES (?, ?, ?, ?, ?)",
        [(run_id, s, loc, q, at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")) for s, loc, q, at in rows],
    )


def restage(session: Session, run_id: int, rows: Sequence[Row]) -> int:
    """A key seen again later in the same pass (stale pages repeat rows): the later read wins."""
    n = 0
    for sku_id, loc_id, qty, at in rows:
        n += session.execute(  # type: ignore[attr-defined]
            text(
                "UPDATE sync_snapshot_rows SET qty = :q, vendor_time = :t "
                "WHERE run_id = :r AND sku_id = :s AND location_id = :l AND vendor_time <= :t"
            ).bindparams(q=qty, t=at, r=run_id, s=sku_id, l=loc_id)
        ).rowcount
    return n


def drop(session: Session, run_id: int) -> None:
    session.execute(delete(SnapshotRow).where(SnapshotRow.run_id == run_id))
