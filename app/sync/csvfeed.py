"""CSV stock files: one file is one full snapshot, taken whole or refused whole.

Business rule: a file with any bad line is refused with every bad line named (BadFile), because
a half-imported stock file would silently zero or skip stock. Canonical columns are
`sku, location|location_code, on_hand|qty|quantity[, as_of]` (names case/space-insensitive).
The file's time T is the `as_of` column, else options["as_of"], else the download's Date header.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import requests

from app.sync.base import (
    BadFile,
    Capability,
    Connection,
    ConnectorBase,
    FileProblem,
    MalformedResponse,
    Observation,
    SnapshotPage,
    SyncError,
    TransientError,
)
from app.sync.http import VendorHTTP, vendor_time

PAGE_ROWS = 5000
MAX_LISTED = 1000  # a garbage file of a million lines must not build a million problems

# One shared empty mapping: good rows keep no raw copy (a million dicts would cost ~64 MB).
_NO_RAW: MappingProxyType[str, Any] = MappingProxyType({})

# Header names with case, spaces, "_" and "-" removed -> the canonical column.
_COLUMNS = {"sku": "sku", "location": "location", "locationcode": "location", "asof": "as_of"}
_COLUMNS.update(dict.fromkeys(("onhand", "qty", "quantity"), "on_hand"))
_EXCEL_ERRORS = frozenset({"#N/A", "#VALUE!", "#REF!", "#NAME?", "#DIV/0!", "#NUM!", "#NULL!", "#SPILL!"})
# How Excel prints a long barcode it turned into a number ("4.00638E+12"): the digits are gone.
_SCIENTIFIC = re.compile(r"[0-9](?:[.,][0-9]+)?[eE][+-][0-9]+")


def _fast_observation() -> Callable[[str, str, Decimal, datetime | None, int], Observation]:
    """Observation(sku, loc, qty, when, True, sku, None, line, no raw) at half the cost.

    A frozen dataclass sets each field through object.__setattr__; for a million rows that is
    ~1 s. The slot descriptors give the same object directly. The field list is checked here
    so a change to Observation fails at import instead of building wrong records.
    """
    names = ("item_ref", "location_ref", "quantity", "as_of", "tracked", "sku", "problem", "line", "raw")
    if tuple(f.name for f in fields(Observation)) != names:  # pragma: no cover - guards base.py edits
        raise ImportError("Observation's fields changed: update csvfeed._fast_observation")
    s_item, s_loc, s_qty, s_when, s_tracked, s_sku, s_problem, s_line, s_raw = (
        getattr(Observation, n).__set__ for n in names
    )
    new = object.__new__

    def make(sku: str, loc: str, qty: Decimal, when: datetime | None, line: int) -> Observation:
        o = new(Observation)
        s_item(o, sku)
        s_loc(o, loc)
        s_qty(o, qty)
        s_when(o, when)
        s_tracked(o, True)
        s_sku(o, sku)
        s_problem(o, None)
        s_line(o, line)
        s_raw(o, _NO_RAW)
        return o

    return make


_observation = _fast_observation()
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NUMBER_CHARS = frozenset("0123456789.,' \u00a0\u202f")
_THIN_SPACES = (" ", "\u00a0", "\u202f", "'")


def build(conn: Connection) -> CsvConnector:
    """A CSV connector for one store's stock file (an upload or a URL)."""
    return CsvConnector(conn)


@dataclass
class ParsedFile:
    observations: list[Observation]
    report: dict[str, Any]


class CsvConnector(ConnectorBase):
    """Reads one stock file per snapshot; `report` tells ops how the file was read."""

    name = "csv"
    capabilities = frozenset({Capability.SNAPSHOT})
    unique_rows = True  # the parser refuses conflicting duplicates and collapses identical ones

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.report: dict[str, Any] = {}

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        """The whole file checked first, then pages of PAGE_ROWS; the last page is complete."""
        data, header_time = self._fetch()
        option_time = _option_time(self.conn.options.get("as_of"))
        file_time = option_time or header_time
        parsed = parse_stock_file(
            data, location_ref=self.conn.options.get("location_ref"), default_as_of=file_time
        )
        del data  # the parsed rows are all that is needed now (a million-row file is ~25 MB)
        self.report = parsed.report
        if parsed.report["as_of_source"] is None:
            parsed.report["as_of_source"] = (
                "option" if option_time else "date_header" if header_time else None
            )
        obs = parsed.observations
        per_row = parsed.report["as_of_source"] == "column"
        for start in range(0, len(obs), PAGE_ROWS):
            chunk = obs[start : start + PAGE_ROWS]
            when = file_time
            if per_row:
                times = [o.as_of for o in chunk if o.as_of is not None]
                when = max(times) if times else file_time
            yield SnapshotPage(chunk, when, complete=start + PAGE_ROWS >= len(obs))

    def _fetch(self) -> tuple[bytes, datetime | None]:
        if self.conn.file_bytes is not None:
            return self.conn.file_bytes, None
        url = self.conn.base_url
        headers = {"Accept": "text/csv, text/plain;q=0.9, */*;q=0.1"}
        token = self.conn.secrets.get("token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        http = VendorHTTP(
            url,
            connect_timeout_s=self.conn.connect_timeout_s,
            read_timeout_s=self.conn.read_timeout_s,
            attempts=self.conn.attempts,
            clock=self.conn.clock,
            sleep=self.conn.sleep,
        )
        try:
            resp = http.request("GET", url, idempotent=True, headers=headers, stream=True)
            try:
                if "html" in resp.headers.get("Content-Type", "").lower():
                    raise MalformedResponse(f"GET {url}: an HTML page, not a stock file")
                try:
                    data = b"".join(resp.iter_content(chunk_size=1 << 20))
                except requests.RequestException as exc:
                    raise TransientError(f"GET {url}: download cut short: {str(exc)[:200]}") from exc
                length = resp.headers.get("Content-Length")
                plain = length and length.isdigit() and not resp.headers.get("Content-Encoding")
                if plain and int(length or 0) != len(data):
                    raise TransientError(f"GET {url}: got {len(data)} of {length} bytes")
                return data, vendor_time(resp)
            finally:
                resp.close()
        finally:
            http.close()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a file's rows are built.

    A million rows are ~3 million new container objects, so the collector would rescan the
    growing heap again and again (3 s of 7 on a 1M-row file). The rows form no cycles;
    reference counting frees everything as usual.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _option_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else None
    if when is None:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise SyncError(f"options as_of {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise SyncError(f"options as_of {value!r} has no UTC offset")
    return when.astimezone(UTC)


def _encoding(data: bytes) -> tuple[str, str, bool]:
    """(codec to read with, encoding for the report, BOM seen): UTF-8 first, else Excel's cp1252."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16", True
    if data.isascii():
        return "utf-8", "utf-8", False
    bom = data.startswith(codecs.BOM_UTF8)
    for codec, label in (("utf-8-sig", "utf-8"), ("cp1252", "cp1252")):
        try:
            data.decode(codec)  # a check only: the text is read as a stream below
        except UnicodeDecodeError:
            continue
        return codec, label, bom
    return "latin-1", "latin-1", False  # bytes cp1252 leaves undefined (0x81, 0x8d, ...)


def parse_quantity(token: str) -> Decimal | str:
    """A quantity token as a Decimal, or why it is refused (a message)."""
    t = token.strip()
    if not t:
        return "quantity is empty"
    body = t[1:] if t[0] in "+-" else t
    if body.isascii() and body.isdigit():
        return Decimal(t)
    if not body or not set(body) <= _NUMBER_CHARS or not any(c.isdigit() for c in body):
        return f"quantity {token.strip()!r} is not a number"
    if any(s in body for s in _THIN_SPACES) or ("." in body and "," in body):
        return f"quantity {t!r} has a thousands separator: ambiguous, write plain digits"
    sep = "." if "." in body else ","
    whole, _, frac = body.partition(sep)
    if not whole.isdigit() or not frac.isdigit() or sep in frac:
        return f"quantity {t!r} is not a number"
    if len(frac) == 3:
        return f"quantity {t!r} is ambiguous: 1{sep}234 may be a thousands separator, write plain digits"
    return Decimal(f"{t[0] if t[0] in '+-' else ''}{whole}.{frac}")


def _row_time(text: str) -> datetime | str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return f"as_of {text!r} is not an ISO 8601 time"
    if when.tzinfo is None:
        return f"as_of {text!r} has no UTC offset"
    return when.astimezone(UTC)


def _header_and_delimiter(head: str) -> tuple[str, bool, int]:
    """(delimiter, whether a `sep=` line came first, line number of the header)."""
    sep_line = False
    delim = ""
    for line, raw in enumerate(_LINE_BREAK.split(head), start=1):
        raw = raw.strip()
        if line == 1 and raw.lower().startswith(("sep=", '"sep=')):
            delim = raw.strip('"')[4:5]
            sep_line = True
        elif raw.strip(",;\t"):
            if not delim:
                counts = {d: raw.count(d) for d in (",", ";", "\t")}
                delim = max(counts, key=lambda d: counts[d])
                if counts[delim] == 0:
                    raise BadFile(
                        [FileProblem(line, "the header has one column: sku, location, on_hand expected")]
                    )
            return delim, sep_line, line
    raise BadFile([FileProblem(1, "the file has no header and no rows")])


def _columns(header: list[str], line: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = _COLUMNS.get(name.strip().lower().replace(" ", "").replace("_", "").replace("-", ""))
        if key is None:
            continue
        if key in found:
            raise BadFile([FileProblem(line, f"two columns mean {key}: {header[found[key]]!r} and {name!r}")])
        found[key] = i
    missing = [c for c in ("sku", "on_hand") if c not in found]
    if missing:
        raise BadFile([FileProblem(line, f"no {' or '.join(missing)} column in header {header!r}")])
    return found


def _numbered(rows: Any) -> Iterator[tuple[int, list[str] | str]]:
    """(first line of the row, its fields) or (line, why its quoting is broken), on to the end."""
    prev = rows.line_num
    while True:
        try:
            for row in rows:
                yield prev + 1, row
                prev = rows.line_num
            return
        except csv.Error as exc:  # the reader goes on with the next line
            yield prev + 1, f"broken quoting ({exc}): a truncated or damaged line"
            prev = rows.line_num


def parse_stock_file(
    data: bytes, *, location_ref: str | None = None, default_as_of: datetime | None = None
) -> ParsedFile:
    """Every line checked before anything is returned; any bad line refuses the file (BadFile)."""
    codec, encoding, bom = _encoding(data)
    head = data[:65536].decode(codec, errors="ignore")
    delim, sep_line, header_line = _header_and_delimiter(head.lstrip("\ufeff"))
    # A stream over the bytes, not one big str: io.StringIO would hold 4 bytes a character.
    stream = io.TextIOWrapper(io.BytesIO(data), encoding=codec, newline="")
    rows = csv.reader(stream, delimiter=delim, strict=True)
    try:
        while rows.line_num < header_line - 1:  # the sep= line and blank lines before the header
            next(rows)
        header = next(rows)
    except (csv.Error, StopIteration) as exc:
        raise BadFile([FileProblem(header_line, f"the header cannot be read: {exc}")]) from None
    cols = _columns(header, header_line)
    si, qi = cols["sku"], cols["on_hand"]
    li, ai = cols.get("location"), cols.get("as_of")
    if li is None and not location_ref:
        raise BadFile([FileProblem(header_line, "no location column and no location_ref for the feed")])
    fixed_loc = str(location_ref) if li is None else ""
    width = len(header)
    header_sku = header[si].strip().lower()

    problems: list[FileProblem] = []
    bad = 0

    def refuse(line: int, message: str) -> None:
        nonlocal bad
        bad += 1
        if bad <= MAX_LISTED:
            problems.append(FileProblem(line, message))
        elif bad == MAX_LISTED + 1:
            problems.append(FileProblem(line, "more bad lines from here on are not listed"))

    # Per location, sku -> its first row: no (sku, location) tuple per row (64 MB a million).
    by_loc: dict[str, tuple[str, dict[str, Observation]]] = {}
    fixed_bucket: dict[str, Observation] = {}
    out: list[Observation] = []
    qcache: dict[str, Decimal] = {}
    tcache: dict[str, datetime | str] = {}
    collapsed = 0
    make, append, qget = _observation, out.append, qcache.get
    with _cyclic_gc_paused():
        for line, row in _numbered(rows):
            if isinstance(row, str):
                refuse(line, row)
                continue
            if len(row) != width:
                if not any(f.strip() for f in row):
                    continue  # blank line or a ";;;;" row
                if len(row) < width:
                    refuse(line, f"{len(row)} fields where the header has {width} (a truncated line?)")
                    continue
                if any(f.strip() for f in row[width:]):
                    refuse(line, f"{len(row)} fields where the header has {width}")
                    continue
            sku = row[si].strip()
            if not sku:
                if any(f.strip() for f in row):
                    refuse(line, "blank sku")
                continue
            c0 = sku[0]
            if c0 == "=" and len(sku) > 3 and sku[1] == '"' and sku[-1] == '"':
                sku = sku[2:-1].strip()  # Excel's ="00123" keeps leading zeros: the text is inside
            elif c0 == "#" and sku.upper() in _EXCEL_ERRORS:
                refuse(line, f"sku {sku!r} is a spreadsheet error value")
                continue
            elif c0.isdigit() and ("E" in sku or "e" in sku) and _SCIENTIFIC.fullmatch(sku):
                refuse(line, f"sku {sku!r} is in scientific notation: Excel damaged it, digits are lost")
                continue
            elif len(sku) == len(header_sku) and sku.lower() == header_sku:
                refuse(line, "the header is repeated here (files concatenated?)")
                continue
            token = row[qi]
            qty = qget(token)
            if qty is None:
                parsed = parse_quantity(token)
                if isinstance(parsed, str):
                    refuse(line, parsed)
                    continue
                qty = parsed
                if len(qcache) < 50_000:
                    qcache[token] = qty
            if li is None:
                loc, bucket = fixed_loc, fixed_bucket
            else:
                loc = row[li].strip()
                entry = by_loc.get(loc)
                if entry is None:
                    if not loc:
                        refuse(line, f"blank location for sku {sku!r}")
                        continue
                    entry = by_loc[loc] = (loc, {})
                loc, bucket = entry  # one shared string per location
            when = default_as_of
            if ai is not None:
                stamp = row[ai].strip()
                if stamp:
                    got = tcache.get(stamp)
                    if got is None:
                        got = _row_time(stamp)
                        if len(tcache) < 50_000:
                            tcache[stamp] = got
                    if isinstance(got, str):
                        refuse(line, got)
                        continue
                    when = got
            prior = bucket.get(sku)
            if prior is None:
                bucket[sku] = obs = make(sku, loc, qty, when, line)
                append(obs)
            elif prior.quantity == qty:
                collapsed += 1
            else:
                refuse(
                    line,
                    f"sku {sku!r} at {loc!r} is {token.strip()} here but {prior.quantity} on line {prior.line}",
                )
    if problems:
        raise BadFile(problems)
    if not out:
        raise BadFile([FileProblem(header_line, "no stock rows under the header")])
    report: dict[str, Any] = {
        "encoding": encoding,
        "bom": bom,
        "delimiter": delim,
        "sep_line": sep_line,
        "rows": len(out),
        "lines": rows.line_num,
        "duplicates_collapsed": collapsed,
        "columns": {k: header[i] for k, i in cols.items()},
        "as_of_source": "column" if ai is not None else None,
    }
    return ParsedFile(out, report)
