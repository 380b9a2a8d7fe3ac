"""A faithful fake of Square's Inventory API (FEED-FORMATS §1.9): counts are Square's own fold.

Every change lives in one receipt-ordered log. A count is the last PHYSICAL_COUNT by occurred_at
plus the adjustments and transfers that occurred after it, and its calculated_at is the receipt
time of the newest change it applied (so an absorbed offline sale does not move it). Lists are
rebuilt on every request and cursors are offsets into them, so a change made while a client pages
shifts the list under it: rows are skipped or seen twice, as with Square's stale pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from flask import Response, request

from app.sync.fakes.harness import FakeVendor, rfc3339
from app.sync.square import KNOWN_STATES

SQUARE_VERSION = "2025-08-20"
COUNTS = "/v2/inventory/counts/batch-retrieve"
CHANGES = "/v2/inventory/changes/batch-retrieve"
CREATE = "/v2/inventory/changes/batch-create"

STATES = KNOWN_STATES | {"SUPPORTED_BY_NEWER_VERSION"}  # what a newer Square sends an older client
UNTRACKED = frozenset({"NONE", "SOLD", "UNLINKED_RETURN"})  # Square keeps no count for these
READ_ONLY = frozenset({"RESERVED_FOR_SALE", "SOLD_ONLINE", "IN_TRANSIT_TO", "SUPPORTED_BY_NEWER_VERSION"})
BODY_KEY = {"PHYSICAL_COUNT": "physical_count", "ADJUSTMENT": "adjustment", "TRANSFER": "transfer"}

# Ids from Square's doc examples, so logs look like the real thing.
LOCATION_MAIN = "59TNP9SA8VGDA"
LOCATION_SECOND = "C6W5YS5QM06F5"
LOCATION_THIRD = "EF6D9SACKWBKZ"
VARIATION_A = "W62UWFY35CWMYGVWK6TWJDNI"
VARIATION_B = "6F4K33KPNUVDWKZ43KUIFH6K"
TOKEN = "EAAAEOuLQPDbXdfRUJ2tj7Tw-fake-square-token"  # noqa: S105 - the fake's own
SIGNATURE_KEY = "asdf1234-fake-signature-key"
_QTY = re.compile(r"^-?\d{1,20}(\.\d{1,5})?$")


def square_error(status: int, category: str, code: str, detail: str, field: str | None = None) -> Response:
    """Square's error envelope (also what tests hand the harness as a fault body)."""
    err: dict[str, Any] = {"category": category, "code": code, "detail": detail}
    if field:
        err["field"] = field
    return Response(json.dumps({"errors": [err]}), status=status, mimetype="application/json")


def error_body(category: str, code: str, detail: str = "") -> dict[str, Any]:
    return {"errors": [{"category": category, "code": code, "detail": detail or code.lower()}]}


def decimal_string(q: Decimal) -> str:
    """Square's decimal string: no exponent, no trailing zeros ("79", "2.5", "-3")."""
    text = format(q.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"(.{19})(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value)
    if not m:
        return None
    try:
        base = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    except ValueError:
        return None
    return (base + timedelta(microseconds=int((m[2] or "0")[:6].ljust(6, "0")))).astimezone(UTC)


@dataclass
class _Entry:
    change: dict[str, Any]  # Square's wire shape: {"type": ..., "adjustment": {...}}
    occurred: datetime
    created: datetime
    seq: int

    @property
    def body(self) -> dict[str, Any]:
        value = self.change.get(BODY_KEY.get(self.change.get("type", ""), ""), {})
        return value if isinstance(value, dict) else {}


@dataclass
class _PageHook:
    path: str
    n: int
    fn: Callable[[], object]
    before: bool


class FakeSquare(FakeVendor):
    """Square's inventory endpoints over an in-memory change log; Python helpers act as the POS."""

    name = "square"

    def __init__(
        self,
        *,
        now: datetime | None = None,
        token: str = TOKEN,
        seed: bool = True,
        page_size: int = 1000,
        max_changes: int = 100,
        ts_digits: int = 3,
    ) -> None:
        self.token = token
        self.page_size = page_size  # capped by the request's limit
        self.max_changes = max_changes  # per batch-create (unpublished by Square: configurable)
        self.ts_digits = ts_digits  # fractional digits in the timestamps we send (Square: up to 9)
        self.entries: list[_Entry] = []
        self.extra_counts: list[dict[str, Any]] = []  # rows served as-is (a newer Square's shapes)
        self.idempotency: dict[str, tuple[str, str]] = {}  # key -> (request body, response body)
        self.page_hooks: list[_PageHook] = []
        self._pages_served: dict[str, int] = {}
        self._seq = itertools.count(1)
        super().__init__(now=now)
        if seed:
            self.seed()

    # ------------------------------------------------------------ the POS side (Python helpers)

    def seed(self) -> None:
        """Two stores of the doc examples: counted an hour ago, one sale since."""
        hour_ago = self.now() - timedelta(hours=1)
        self.set_count(VARIATION_A, LOCATION_MAIN, 79, occurred_at=hour_ago)
        self.set_count(VARIATION_B, LOCATION_MAIN, 12, occurred_at=hour_ago)
        self.set_count(VARIATION_A, LOCATION_SECOND, 86, occurred_at=hour_ago)
        self.sell(VARIATION_A, LOCATION_SECOND, 1, occurred_at=hour_ago + timedelta(minutes=20))

    def set_count(
        self, variation: str, location: str, qty: Decimal | int | str, *,
        occurred_at: datetime | None = None, state: str = "IN_STOCK", reference_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A PHYSICAL_COUNT as the POS records it (any state, unknown ones included)."""
        return self._record("PHYSICAL_COUNT", {
            "catalog_object_id": variation, "catalog_object_type": "ITEM_VARIATION", "state": state,
            "location_id": location, "quantity": decimal_string(Decimal(qty)),
            "source": {"product": "SQUARE_POS", "name": "Square Point of Sale 4.37"},
        }, occurred_at, reference_id)  # fmt: skip

    def adjust(
        self, variation: str, location: str, qty: Decimal | int | str, from_state: str, to_state: str, *,
        occurred_at: datetime | None = None, reference_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._record("ADJUSTMENT", {
            "catalog_object_id": variation, "catalog_object_type": "ITEM_VARIATION",
            "from_state": from_state, "to_state": to_state, "location_id": location,
            "quantity": decimal_string(Decimal(qty)),
        }, occurred_at, reference_id)  # fmt: skip

    def sell(
        self, variation: str, location: str, qty: Decimal | int | str = 1, *,
        occurred_at: datetime | None = None, reference_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A POS sale; a back-dated occurred_at is an offline sale uploaded late."""
        return self.adjust(variation, location, qty, "IN_STOCK", "SOLD",
                           occurred_at=occurred_at, reference_id=reference_id)  # fmt: skip

    def receive(
        self, variation: str, location: str, qty: Decimal | int | str, *,
        occurred_at: datetime | None = None, reference_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Stock received (NONE -> IN_STOCK)."""
        return self.adjust(variation, location, qty, "NONE", "IN_STOCK",
                           occurred_at=occurred_at, reference_id=reference_id)  # fmt: skip

    def transfer(
        self, variation: str, from_location: str, to_location: str, qty: Decimal | int | str, *,
        state: str = "IN_STOCK", occurred_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return self._record("TRANSFER", {
            "catalog_object_id": variation, "catalog_object_type": "ITEM_VARIATION", "state": state,
            "from_location_id": from_location, "to_location_id": to_location,
            "quantity": decimal_string(Decimal(qty)),
        }, occurred_at, None)  # fmt: skip

    def add_raw_change(self, change: dict[str, Any]) -> None:
        """A change served exactly as given (unknown types, odd quantities), received now."""
        with self.lock:
            now = self.now()
            body = change.get(BODY_KEY.get(change.get("type", ""), ""), {})
            occurred = _parse_time(body.get("occurred_at") if isinstance(body, dict) else None)
            self.entries.append(_Entry(change, occurred or now, now, next(self._seq)))

    def count(self, variation: str, location: str, state: str = "IN_STOCK") -> Decimal:
        """The count Square would report (0 when it has none)."""
        with self.lock:
            folded = self._fold(variation, location, state)
        return folded[0] if folded else Decimal(0)

    def on_page(self, path: str, n: int, fn: Callable[[], object], *, before: bool = False) -> None:
        """Run fn when the nth page of path is served: after it is built, or before with before=True."""
        with self.lock:
            self.page_hooks.append(_PageHook(path, n, fn, before))

    def _record(
        self, typ: str, fields: dict[str, Any], occurred_at: datetime | None, reference_id: str | None
    ) -> dict[str, Any]:
        with self.lock:
            now = self.now()
            occurred = occurred_at or now
            body = {
                "id": self._new_id(),
                **({"reference_id": reference_id} if reference_id else {}),
                **fields,
            }
            body["occurred_at"] = rfc3339(occurred, self.ts_digits)
            body["created_at"] = rfc3339(now, self.ts_digits)
            change = {"type": typ, BODY_KEY[typ]: body}
            self.entries.append(_Entry(change, occurred, now, next(self._seq)))
            return change

    def _new_id(self) -> str:
        raw = hashlib.sha256(f"{id(self)}:{next(self._seq)}".encode()).digest()
        return base64.b32encode(raw).decode()[:24]

    # ------------------------------------------------------------ Square's fold

    def _fold(self, variation: str, location: str, state: str) -> tuple[Decimal, _Entry] | None:
        """(quantity, newest applied change): last physical count by occurred_at, then later moves."""
        qty, newest = Decimal(0), None  # no physical count yet: Square starts from zero
        for e in sorted(self.entries, key=lambda e: (e.occurred, e.seq)):
            effect = _effect(e, variation, location, state)
            if effect is None:
                continue
            if effect[0] == "count":  # absorbs everything that occurred before it
                qty, newest = effect[1], e
            else:
                qty += effect[1]
                newest = e if newest is None or (e.created, e.seq) > (newest.created, newest.seq) else newest
        return None if newest is None else (qty, newest)

    def _counts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        keys: set[tuple[str, str, str]] = set()
        for e in self.entries:
            b, typ = e.body, e.change.get("type")
            locs = (
                [b.get("from_location_id"), b.get("to_location_id")]
                if typ == "TRANSFER"
                else [b.get("location_id")]
            )
            states = [b.get("from_state"), b.get("to_state")] if typ == "ADJUSTMENT" else [b.get("state")]
            for loc, st in itertools.product(locs, states):
                if isinstance(loc, str) and isinstance(st, str) and st not in UNTRACKED:
                    keys.add((str(b.get("catalog_object_id")), loc, st))
        rows: list[tuple[datetime, int, dict[str, Any]]] = []
        for var, loc, st in keys:
            if not _wanted(body, var, loc, st):
                continue
            folded = self._fold(var, loc, st)
            if folded is None:
                continue
            qty, newest = folded
            after = _parse_time(body.get("updated_after"))
            if after is not None and newest.created <= after:
                continue
            rows.append((newest.created, newest.seq, {
                "catalog_object_id": var, "catalog_object_type": "ITEM_VARIATION", "state": st,
                "location_id": loc, "quantity": decimal_string(qty),
                "calculated_at": rfc3339(newest.created, self.ts_digits),
            }))  # fmt: skip
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)  # newest first, as Square sorts counts
        return [r[2] for r in rows] + list(self.extra_counts)

    def _changes(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        types = body.get("types") or ["PHYSICAL_COUNT", "ADJUSTMENT"]
        after, before = _parse_time(body.get("updated_after")), _parse_time(body.get("updated_before"))
        out: list[_Entry] = []
        for e in self.entries:
            if (after and e.created <= after) or (before and e.created >= before):
                continue
            typ, b = e.change.get("type"), e.body
            if typ in BODY_KEY:
                if typ not in types:
                    continue
                locs = (
                    [b.get("from_location_id"), b.get("to_location_id")]
                    if typ == "TRANSFER"
                    else [b.get("location_id")]
                )
                if body.get("location_ids") and not set(locs) & set(body["location_ids"]):
                    continue
                if (
                    body.get("catalog_object_ids")
                    and b.get("catalog_object_id") not in body["catalog_object_ids"]
                ):
                    continue
                if (
                    typ == "ADJUSTMENT"
                    and body.get("states")
                    and not {b.get("from_state"), b.get("to_state")} & set(body["states"])
                ):
                    continue
            out.append(e)  # a type this fake does not know is served as-is (a newer Square's)
        out.sort(key=lambda e: (e.occurred, e.seq))  # oldest first by business time
        return [e.change for e in out]

    # ------------------------------------------------------------ HTTP

    def routes(self) -> None:
        app = self.app

        @app.before_request
        def authenticate() -> Response | None:
            if request.path.startswith("/__"):
                return None
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return square_error(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED",
                                    "This request could not be authorized.")  # fmt: skip
            version = request.headers.get("Square-Version")
            if version is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
                return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_SQUARE_VERSION_FORMAT",
                                    f"Invalid Square-Version {version!r}.")  # fmt: skip
            return None

        @app.errorhandler(404)
        def not_found(_: Exception) -> Response:  # deprecated aliases too: catches stale client code
            return square_error(
                404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Resource not found: {request.path}"
            )

        @app.post(COUNTS)
        def batch_retrieve_counts() -> Response:
            return self._page(COUNTS, "counts", self._counts)

        @app.post(CHANGES)
        def batch_retrieve_changes() -> Response:
            return self._page(CHANGES, "changes", self._changes)

        @app.post(CREATE)
        def batch_create() -> Response:
            return self._batch_create()

    def _body(self) -> dict[str, Any] | Response:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_CONTENT_TYPE", "Body is not JSON.")
        if not isinstance(body, dict):
            return square_error(400, "INVALID_REQUEST_ERROR", "EXPECTED_OBJECT", "Body must be an object.")
        return body

    def _page(self, path: str, key: str, build: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> Response:
        body = self._body()
        if isinstance(body, Response):
            return body
        limit = body.get("limit", 1000)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            code = "VALUE_TOO_LOW" if isinstance(limit, int) and limit < 1 else "VALUE_TOO_HIGH"
            return square_error(400, "INVALID_REQUEST_ERROR", code, "limit must be 1..1000", "limit")
        offset = _decode_cursor(body.get("cursor"))
        if offset is None:
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_CURSOR", "Invalid cursor.", "cursor")
        with self.lock:
            n = self._pages_served.get(path, 0) + 1
            self._pages_served[path] = n
            self._run_hooks(path, n, before=True)
            rows = build(body)  # the LIVE list: whatever changed since the last page shows here
            size = min(self.page_size, limit)
            page = rows[offset : offset + size]
            out: dict[str, Any] = {key: page} if page else {}  # Square omits empty lists
            if offset + size < len(rows):
                out["cursor"] = base64.urlsafe_b64encode(json.dumps({"o": offset + size}).encode()).decode()
            self._run_hooks(path, n, before=False)
        return Response(json.dumps(out), mimetype="application/json")

    def _run_hooks(self, path: str, n: int, *, before: bool) -> None:
        for hook in [h for h in self.page_hooks if h.path == path and h.n == n and h.before == before]:
            self.page_hooks.remove(hook)
            hook.fn()

    def _batch_create(self) -> Response:
        body = self._body()
        if isinstance(body, Response):
            return body
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_VALUE",
                                "idempotency_key must be 1..128 characters", "idempotency_key")  # fmt: skip
        canonical = json.dumps(body, sort_keys=True)
        with self.lock:
            seen = self.idempotency.get(key)
            if seen is not None:
                if seen[0] != canonical:
                    return square_error(400, "INVALID_REQUEST_ERROR", "IDEMPOTENCY_KEY_REUSED",
                                        "The idempotency key was used with another request.")  # fmt: skip
                return Response(seen[1], mimetype="application/json")  # the original answer, replayed
            changes = body.get("changes")
            if not isinstance(changes, list) or not 1 <= len(changes) <= self.max_changes:
                return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_ARRAY_LENGTH",
                                    f"changes must hold 1..{self.max_changes} changes", "changes")  # fmt: skip
            problem = next((p for i, c in enumerate(changes) if (p := self._invalid(i, c))), None)
            if problem is not None:
                return problem
            now = self.now()
            recorded: list[dict[str, Any]] = []
            for c in changes:
                typ = c["type"]
                fields = {
                    k: v for k, v in c[BODY_KEY[typ]].items() if k not in ("occurred_at", "reference_id")
                }
                if typ == "PHYSICAL_COUNT" and body.get("ignore_unchanged_counts", True):
                    last = self._fold(fields["catalog_object_id"], fields["location_id"], fields["state"])
                    if (
                        last
                        and last[1].change["type"] == "PHYSICAL_COUNT"
                        and last[0] == Decimal(fields["quantity"])
                    ):
                        continue  # Square drops a count equal to the last one
                occurred = _parse_time(c[BODY_KEY[typ]]["occurred_at"]) or now
                recorded.append(self._record(typ, fields, occurred, c[BODY_KEY[typ]].get("reference_id")))
            refs = {
                (c[BODY_KEY[c["type"]]].get("catalog_object_id"), c[BODY_KEY[c["type"]]].get("location_id"))
                for c in changes
            }
            counts = [r for r in self._counts({}) if (r["catalog_object_id"], r["location_id"]) in refs]
            answer = json.dumps({"counts": counts, "changes": recorded})
            self.idempotency[key] = (canonical, answer)
        return Response(answer, mimetype="application/json")

    def _invalid(self, i: int, c: Any) -> Response | None:
        """Square's per-change validation: known type, writable states, decimal quantity, time window."""
        typ = c.get("type") if isinstance(c, dict) else None
        b = c.get(BODY_KEY.get(typ or ""), None) if isinstance(c, dict) else None
        where = f"changes[{i}].{BODY_KEY.get(typ or '', 'type')}"
        if typ not in BODY_KEY or not isinstance(b, dict):
            return square_error(
                400, "INVALID_REQUEST_ERROR", "INVALID_ENUM_VALUE", "Unknown change type.", where
            )
        for f in ("state", "from_state", "to_state"):
            if f in b and (b[f] not in STATES or b[f] in READ_ONLY):
                return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_VALUE",
                                    f"{f} {b[f]!r} cannot be written.", f"{where}.{f}")  # fmt: skip
        if not isinstance(b.get("quantity"), str) or not _QTY.match(b["quantity"]):
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_VALUE",
                                "quantity must be a decimal string.", f"{where}.quantity")  # fmt: skip
        when, now = _parse_time(b.get("occurred_at")), self.now()
        if when is None or when > now or when < now - timedelta(hours=24):
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_TIME",
                                "occurred_at must be within the last 24 hours and not in the future.",
                                f"{where}.occurred_at")  # fmt: skip
        return None

    # ------------------------------------------------------------ webhooks

    def notification(self, pairs: Iterable[tuple[str, str]]) -> bytes:
        """An inventory.count.updated body for these (variation, location) pairs, as Square sends it."""
        with self.lock:
            counts = [
                {"calculated_at": rfc3339(self.now(), 6), "catalog_object_id": v, "catalog_object_type": "ITEM_VARIATION",
                 "location_id": loc, "quantity": decimal_string(self.count(v, loc)), "state": "IN_STOCK"}
                for v, loc in pairs
            ]  # fmt: skip
        return json.dumps({
            "merchant_id": "6SSW7HV8K2ST5", "type": "inventory.count.updated", "event_id": self._new_id().lower(),
            "created_at": rfc3339(self.now(), 9),
            "data": {"type": "inventory_counts", "id": self._new_id().lower(), "object": {"inventory_counts": counts}},
        }).encode()  # fmt: skip

    @staticmethod
    def sign(signature_key: str, notification_url: str, body: bytes) -> str:
        """x-square-hmacsha256-signature: base64 HMAC-SHA256 over the notification URL + raw body."""
        mac = hmac.new(signature_key.encode(), notification_url.encode() + body, hashlib.sha256)
        return base64.b64encode(mac.digest()).decode()

    def deliver(
        self, url: str, body: bytes, *, signature_key: str = SIGNATURE_KEY, times: int = 1
    ) -> list[int]:
        """POST a notification (times > 1: Square's duplicate deliveries); the statuses answered."""
        headers = {"Content-Type": "application/json",
                   "x-square-hmacsha256-signature": self.sign(signature_key, url, body)}  # fmt: skip
        return [requests.post(url, data=body, headers=headers, timeout=10).status_code for _ in range(times)]


def _effect(e: _Entry, variation: str, location: str, state: str) -> tuple[str, Decimal] | None:
    """What a change does to one (variation, location, state) count: ("count", q) or ("move", ±q)."""
    typ, b = e.change.get("type"), e.body
    if b.get("catalog_object_id") != variation:
        return None
    try:
        q = Decimal(str(b.get("quantity")))
    except InvalidOperation:
        return None
    if typ == "PHYSICAL_COUNT" and b.get("location_id") == location and b.get("state") == state:
        return "count", q
    if typ == "ADJUSTMENT" and b.get("location_id") == location and b.get("from_state") != b.get("to_state"):
        if b.get("to_state") == state:
            return "move", q
        if b.get("from_state") == state:
            return "move", -q
    if typ == "TRANSFER" and b.get("state") == state and b.get("from_location_id") != b.get("to_location_id"):
        if b.get("to_location_id") == location:
            return "move", q
        if b.get("from_location_id") == location:
            return "move", -q
    return None


def _wanted(body: dict[str, Any], variation: str, location: str, state: str) -> bool:
    return (
        (not body.get("location_ids") or location in body["location_ids"])
        and (not body.get("catalog_object_ids") or variation in body["catalog_object_ids"])
        and (not body.get("states") or state in body["states"])
    )


def _decode_cursor(cursor: Any) -> int | None:
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(cursor).encode())).get("o")
    except (ValueError, binascii.Error, AttributeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None
