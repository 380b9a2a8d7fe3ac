"""Square Inventory API connector: IN_STOCK counts and changes in, our fulfilments out as adjustments.

Only IN_STOCK is sellable. Counts are snapshots (the balance authority), changes are the delta
feed (ADJUSTMENT and TRANSFER move the balance, PHYSICAL_COUNT is an observation). Every record
keeps Square's own clocks; rows that cannot be read come back with `problem` set and their raw
payload, never raised and never dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from app.sync.base import (
    AuthError,
    Capability,
    Change,
    ChangesPage,
    Connection,
    ConnectorBase,
    MalformedResponse,
    Observation,
    OutboundAdjustment,
    PushResult,
    PushStatus,
    SnapshotPage,
    TransientError,
    VendorRejected,
)
from app.sync.http import VendorHTTP, vendor_time

SQUARE_VERSION = "2025-08-20"
COUNTS = "/v2/inventory/counts/batch-retrieve"
CHANGES = "/v2/inventory/changes/batch-retrieve"
CREATE = "/v2/inventory/changes/batch-create"
SELLABLE = "IN_STOCK"
# InventoryState as of Square-Version 2025-08-20; SUPPORTED_BY_NEWER_VERSION is how Square says
# "a state your version does not know", so it counts as unknown here.
KNOWN_STATES = frozenset(
    [
        "IN_STOCK",
        "SOLD",
        "RETURNED_BY_CUSTOMER",
        "RESERVED_FOR_SALE",
        "SOLD_ONLINE",
        "ORDERED_FROM_VENDOR",
        "RECEIVED_FROM_VENDOR",
        "IN_TRANSIT_TO",
        "IN_TRANSIT",
        "NONE",
        "WASTE",
        "UNLINKED_RETURN",
        "COMPOSED",
        "DECOMPOSED",
        "CUSTOM",
    ]
)
PAGE_LIMIT = 1000
BODY_KEYS = {"ADJUSTMENT": "adjustment", "TRANSFER": "transfer", "PHYSICAL_COUNT": "physical_count"}
CHUNK = 100  # Square publishes no maximum per batch-create
OCCURRED_MARGIN = timedelta(seconds=5)  # occurred_at stays behind Square's clock, never ahead

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)
_QUANTITY = re.compile(r"[+-]?\d+(?:\.\d+)?")


def parse_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 instant (up to 9 fractional digits, Z or an offset) as aware UTC; None if not one."""
    if not isinstance(value, str):
        return None
    m = _RFC3339.fullmatch(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micro = int((m[7] or "0")[:6].ljust(6, "0"))  # nanoseconds are cut to Python's microseconds
    offset = timedelta(0) if m[8] else timedelta(hours=int(m[10]), minutes=int(m[11]))
    if m[9] == "-":
        offset = -offset
    try:
        local = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=UTC)
    except ValueError:
        return None
    return local - offset


def format_rfc3339(when: datetime) -> str:
    """Our instants as Square reads them: UTC, milliseconds, Z."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_quantity(value: Any) -> Decimal | None:
    """Square's decimal string ("79", "2.5", "-3") as a Decimal; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None  # a float would already have lost digits
    text = str(value).strip()
    if not _QUANTITY.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def build(conn: Connection) -> SquareConnector:
    return SquareConnector(conn)


class SquareConnector(ConnectorBase):
    """One Square seller's locations over the Inventory API (options: location_refs)."""

    name = "square"
    capabilities = frozenset(
        {Capability.SNAPSHOT, Capability.CHANGES, Capability.PUSH_ADJUSTMENTS, Capability.IDEMPOTENT_WRITES}
    )

    def __init__(self, conn: Connection) -> None:
        token = conn.secrets.get("token")
        if not token:
            raise AuthError("square: no access token (secret 'token')")
        self.location_refs = [str(x) for x in conn.options.get("location_refs") or []]
        self.clock = conn.clock or time.time
        self.http = VendorHTTP(
            conn.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Square-Version": SQUARE_VERSION,
                "Accept": "application/json",
            },
            connect_timeout_s=conn.connect_timeout_s,
            read_timeout_s=conn.read_timeout_s,
            attempts=conn.attempts,
            clock=self.clock,
            sleep=conn.sleep,
            error_code=_error_code,
        )
        self._vendor_seen: tuple[datetime, float] | None = None  # (Square's Date, our clock then)

    # ------------------------------------------------------------ reads

    def _filter(self) -> dict[str, Any]:
        # No location_ids means every location of the seller: only send it when we have some.
        return {"location_ids": list(self.location_refs)} if self.location_refs else {}

    def _pages(
        self, path: str, body: dict[str, Any], key: str
    ) -> Iterator[tuple[list[Any], datetime | None, bool]]:
        """Cursor paging: the same body plus the cursor, until a page comes back without one."""
        cursor: str | None = None
        while True:
            data, resp = self._read(path, {**body, "cursor": cursor} if cursor else body, key)
            at = self._saw(resp)
            cursor = data.get("cursor") or None
            yield data.get(key) or [], at, cursor is not None
            if cursor is None:
                return

    def _read(self, path: str, body: dict[str, Any], key: str) -> tuple[dict[str, Any], requests.Response]:
        """A page whose shape is Square's, re-asked like a 5xx while attempts last."""
        for attempt in range(self.http.attempts):
            data, resp = self.http.json("POST", path, idempotent=True, json=body)
            problem = _shape_problem(data, key)
            if problem is None:
                return data, resp
            err = MalformedResponse(f"square {path}: {problem}", status=resp.status_code)
            if attempt + 1 >= self.http.attempts:
                raise err
            self.http.retries += 1
            self.http._wait(self.http._backoff(attempt), str(err), resp.status_code)
        raise MalformedResponse(f"square {path}: no page")  # pragma: no cover - attempts >= 1

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        """Every count at our locations; only IN_STOCK rows are observations, unknown states are problems."""
        body = {**self._filter(), "limit": PAGE_LIMIT}
        for rows, at, more in self._pages(COUNTS, body, "counts"):
            observations = [o for o in (_observation(r) for r in rows) if o is not None]
            yield SnapshotPage(observations=observations, vendor_time=at, complete=not more)

    def pull_changes(self, since: datetime | None) -> Iterator[ChangesPage]:
        """Changes Square received after `since` (its created_at), in its oldest-first order."""
        body: dict[str, Any] = {
            **self._filter(),
            "types": ["PHYSICAL_COUNT", "ADJUSTMENT", "TRANSFER"],
            "limit": PAGE_LIMIT,
        }
        if since is not None:
            body["updated_after"] = format_rfc3339(since)
        for rows, at, more in self._pages(CHANGES, body, "changes"):
            fallback = at or datetime.fromtimestamp(self.clock(), UTC)
            changes = [c for r in rows for c in _changes(r, fallback, self.location_refs)]
            yield ChangesPage(changes=changes, vendor_time=at, has_more=more)

    # ------------------------------------------------------------ writes

    def _saw(self, resp: requests.Response) -> datetime | None:
        at = vendor_time(resp)
        if at is not None:
            self._vendor_seen = (at, self.clock())
        return at

    def vendor_now(self) -> datetime:
        """Square's clock now: its last Date header plus our elapsed time (one cheap read if none yet)."""
        if self._vendor_seen is None:
            # Without a Square time, ours could be ahead of Square's and every occurred_at refused.
            _, resp = self.http.json("POST", COUNTS, idempotent=True, json={**self._filter(), "limit": 1})
            self._saw(resp)
        if self._vendor_seen is None:
            return datetime.fromtimestamp(self.clock(), UTC)
        at, ours = self._vendor_seen
        return at + timedelta(seconds=max(0.0, self.clock() - ours))

    def push_adjustments(self, adjustments: Sequence[OutboundAdjustment]) -> list[PushResult]:
        """Our fulfilments as IN_STOCK->SOLD (or NONE->IN_STOCK) adjustments, replay-safe per chunk."""
        results: dict[str, PushResult] = {}
        todo = []
        for a in adjustments:
            if a.delta == 0:
                results[a.idempotency_key] = PushResult(a.idempotency_key, PushStatus.NOOP)
            else:
                todo.append(a)
        # Sorted, so the same adjustments always make the same chunks, keys and bodies.
        todo.sort(key=lambda a: a.idempotency_key)
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        for n, chunk in enumerate(chunks):
            try:
                results.update(self._push_chunk(chunk))
            except (TransientError, MalformedResponse) as exc:
                # Not known to be applied: this and every later chunk are retried next run.
                for rest in chunks[n:]:
                    for a in rest:
                        results[a.idempotency_key] = PushResult(
                            a.idempotency_key, PushStatus.RETRYABLE, error_code=exc.code, message=exc.message
                        )
                break
        return [results[a.idempotency_key] for a in adjustments]

    def _push_chunk(self, chunk: Sequence[OutboundAdjustment]) -> dict[str, PushResult]:
        key = chunk_key(chunk)
        occurred = format_rfc3339(self.vendor_now() - OCCURRED_MARGIN)
        body = {
            "idempotency_key": key,
            "changes": [_adjustment(a, occurred) for a in chunk],
            "ignore_unchanged_counts": True,
        }
        try:
            data, resp = self.http.json("POST", CREATE, idempotent=True, json=body)
        except VendorRejected as exc:
            return {
                a.idempotency_key: PushResult(
                    a.idempotency_key, PushStatus.REJECTED, error_code=exc.code, message=exc.message
                )
                for a in chunk
            }
        at = self._saw(resp)
        if not isinstance(data, dict) or data.get("errors"):
            raise MalformedResponse(f"square {CREATE}: 2xx without the changes: {str(data)[:200]}")
        return {
            a.idempotency_key: PushResult(a.idempotency_key, PushStatus.APPLIED, vendor_time=at)
            for a in chunk
        }

    def close(self) -> None:
        self.http.close()


def chunk_key(chunk: Sequence[OutboundAdjustment]) -> str:
    """Square's idempotency_key for a chunk: sha256 of its adjustments' own keys (64 hex chars)."""
    return hashlib.sha256("\n".join(a.idempotency_key for a in chunk).encode()).hexdigest()


def _adjustment(a: OutboundAdjustment, occurred_at: str) -> dict[str, Any]:
    out = a.delta < 0
    return {
        "type": "ADJUSTMENT",
        "adjustment": {
            "reference_id": a.reference_id,
            "catalog_object_id": a.item_ref,
            "location_id": a.location_ref,
            "from_state": SELLABLE if out else "NONE",
            "to_state": "SOLD" if out else SELLABLE,
            "quantity": str(abs(a.delta)),
            "occurred_at": occurred_at,
        },
    }


def _error_code(resp: requests.Response) -> str | None:
    """The first Square error code of an error answer ({"errors": [{"code": ...}]})."""
    try:
        errors = resp.json().get("errors")
        code = errors[0].get("code")
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return None
    return str(code) if code else None


def _shape_problem(data: Any, key: str) -> str | None:
    if not isinstance(data, dict):
        return f"body is {type(data).__name__}, not an object"
    if key in data and not isinstance(data[key], list):
        return f"'{key}' is not a list"  # absent is fine: Square omits empty lists
    if "cursor" in data and data["cursor"] is not None and not isinstance(data["cursor"], str):
        return "'cursor' is not text"
    return None


def _observation(row: Any) -> Observation | None:
    """A count row as an Observation; None for a known non-sellable state (not a problem)."""
    if not isinstance(row, Mapping):
        return Observation("", "", None, problem="count is not an object", raw={"row": row})
    item, loc = str(row.get("catalog_object_id") or ""), str(row.get("location_id") or "")
    state = row.get("state")
    as_of = parse_rfc3339(row.get("calculated_at"))  # a hint only: unreadable is None, not a problem
    if state != SELLABLE:
        if state in KNOWN_STATES:
            return None
        return Observation(item, loc, None, as_of, problem=f"unknown state {state}", raw=row)
    if not item or not loc:
        return Observation(
            item, loc, None, as_of, problem="count without catalog_object_id or location_id", raw=row
        )
    qty = parse_quantity(row.get("quantity"))
    if qty is None:
        return Observation(item, loc, None, as_of, problem=f"quantity {row.get('quantity')!r}", raw=row)
    return Observation(item, loc, qty, as_of, raw=row)


def _changes(entry: Any, page_time: datetime, locations: Sequence[str]) -> list[Change]:
    """One Square change as Changes to the IN_STOCK bucket (§9.2); [] when it does not touch it."""
    entry = entry if isinstance(entry, Mapping) else {"value": entry}
    typ = entry.get("type")
    known = BODY_KEYS.get(str(typ))
    # A type we do not know still carries its body under some key: read its id and times from it.
    body = entry.get(known) if known else next((v for v in entry.values() if isinstance(v, Mapping)), None)
    b: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    digest = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()
    change_id = str(b.get("id") or "") or f"noid:{digest[:24]}"
    recorded, occurred = parse_rfc3339(b.get("created_at")), parse_rfc3339(b.get("occurred_at"))
    qty = parse_quantity(b.get("quantity"))
    if not known or not b:
        problems = [f"unknown change type {typ}"]
    else:
        problems = [] if recorded else ["created_at unreadable"]
        problems += [] if occurred else ["occurred_at unreadable"]
        problems += [] if qty is not None else [f"quantity {b.get('quantity')!r}"]
    item = str(b.get("catalog_object_id") or "")

    def make(ext: str, loc: Any, kind: str, delta: Decimal | None, absolute: Decimal | None,
             extra: Sequence[str] = ()) -> Change:  # fmt: skip
        why = "; ".join([*problems, *extra]) or None
        return Change(
            external_id=ext, item_ref=item, location_ref=str(loc or ""), kind=kind,
            delta=None if why else delta, absolute=None if why else absolute,
            occurred_at=occurred or recorded or page_time, recorded_at=recorded or page_time,
            origin_reference=str(b["reference_id"]) if b.get("reference_id") else None,
            problem=why, raw=entry,
        )  # fmt: skip

    if not known or not b:
        return [make(change_id, b.get("location_id"), "unknown", None, None)]
    q = qty or Decimal(0)
    if typ == "ADJUSTMENT":
        src, dst = b.get("from_state"), b.get("to_state")
        unknown = [f"unknown state {s}" for s in (src, dst) if s not in KNOWN_STATES]
        if unknown:
            return [make(change_id, b.get("location_id"), "adjustment", None, None, unknown)]
        if (src == SELLABLE) == (dst == SELLABLE):
            return []  # SOLD->WASTE and the like leave the sellable bucket alone
        return [make(change_id, b.get("location_id"), "adjustment", q if dst == SELLABLE else -q, None)]
    state = b.get("state")
    if state not in KNOWN_STATES:
        where = b.get("location_id") or b.get("from_location_id")
        return [make(change_id, where, str(typ).lower(), None, None, [f"unknown state {state}"])]
    if state != SELLABLE:
        return []
    if typ == "PHYSICAL_COUNT":
        return [make(change_id, b.get("location_id"), "physical_count", None, q)]
    legs = [
        make(f"{change_id}:out", b.get("from_location_id"), "transfer_out", -q, None),
        make(f"{change_id}:in", b.get("to_location_id"), "transfer_in", q, None),
    ]
    # A leg at a location we do not read is the other store's business, not an unmapped row.
    return [c for c in legs if not locations or c.location_ref in locations or c.problem]


def verify_webhook(signature_key: str, notification_url: str, body: bytes, header_value: str | None) -> bool:
    """x-square-hmacsha256-signature is base64 HMAC-SHA256(key, notification URL + raw body)."""
    if not signature_key or not header_value:
        return False
    mac = hmac.new(signature_key.encode(), notification_url.encode() + body, hashlib.sha256)
    expected = base64.b64encode(mac.digest())
    return hmac.compare_digest(expected, header_value.strip().encode("utf-8", "replace"))


def parse_webhook(payload: Mapping[str, Any] | bytes | str) -> list[tuple[str, str]]:
    """(catalog_object_id, location_id) pairs an inventory.count.updated names: hints to pull."""
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError:
            return []
    if not isinstance(payload, Mapping) or payload.get("type") != "inventory.count.updated":
        return []
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    counts = obj.get("inventory_counts") if isinstance(obj, Mapping) else None
    pairs: list[tuple[str, str]] = []
    for c in counts if isinstance(counts, list) else []:
        if isinstance(c, Mapping) and c.get("catalog_object_id") and c.get("location_id"):
            pair = (str(c["catalog_object_id"]), str(c["location_id"]))
            if pair not in pairs:  # a state move names the same pair twice
                pairs.append(pair)
    return pairs
