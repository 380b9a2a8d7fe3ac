"""The staged snapshot: mapped rows spooled to a local file while the vendor is read (no database
transaction is open during HTTP), loaded into a temporary table inside the run's one ledger
transaction (COPY on PostgreSQL), compared there, and gone when that transaction ends."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

TABLE = "staged_snapshot"
_CHUNK = 1 << 20


class Spool:
    """One run's rows as tab-separated text in a temporary file; read times are kept by index."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="omnistock-snapshot-")  # noqa: SIM115 - closed in close()
        self.rows = 0
        self.times: list[datetime] = []
        self._time_index: dict[datetime, int] = {}
        self._buffer: list[str] = []
        self.again: list[tuple[int, int, int, int]] = []  # keys seen again later in the pass

    def time_index(self, at: datetime) -> int:
        i = self._time_index.get(at)
        if i is None:
            i = self._time_index[at] = len(self.times)
            self.times.append(at)
        return i

    def add(self, sku_id: int, location_id: int, qty: int, t: int) -> None:
        self._buffer.append(f"{sku_id}\t{location_id}\t{qty}\t{t}\n")
        self.rows += 1
        if len(self._buffer) >= 20_000:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.file.write("".join(self._buffer).encode())
            self._buffer.clear()

    def chunks(self) -> Iterator[bytes]:
        self.flush()
        self.file.seek(0)
        while chunk := self.file.read(_CHUNK):
            yield chunk

    def close(self) -> None:
        self.file.close()


def load(session: Session, spool: Spool) -> None:
    """The spooled rows as the temporary table staged_snapshot(sku_id, location_id, qty, t) of this
    transaction; a key read again later in the pass takes its later reading."""
    conn = session.connection()
    dbapi: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with dbapi.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE {TABLE} (sku_id integer, location_id integer, qty integer, t integer) ON COMMIT DROP"
            )
            with cur.copy(f"COPY {TABLE} (sku_id, location_id, qty, t) FROM STDIN") as copy:
                for chunk in spool.chunks():
                    copy.write(chunk)
            cur.execute(f"ANALYZE {TABLE}")  # a temporary table has no statistics: the join needs them
    else:
        cur = dbapi.cursor()
        cur.execute(f"DROP TABLE IF EXISTS temp.{TABLE}")
        cur.execute(f"CREATE TEMP TABLE {TABLE} (sku_id integer, location_id integer, qty integer, t integer)")
        rest = b""
        for chunk in spool.chunks():
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            rows = [line.split(b"\t") for line in data[:cut].splitlines()]
            cur.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", [tuple(int(v) for v in r) for r in rows])
    for sku_id, loc_id, qty, t in spool.again:
        session.execute(
            text(f"UPDATE {TABLE} SET qty = :q, t = :t WHERE sku_id = :s AND location_id = :l AND t <= :t").bindparams(
                q=qty, t=t, s=sku_id, l=loc_id
            )
        )


def drop(session: Session) -> None:
    """SQLite keeps a temporary table for the connection's life: drop it when the run is done."""
    if session.connection().dialect.name == "sqlite":
        session.execute(text(f"DROP TABLE IF EXISTS temp.{TABLE}"))
