"""WooCommerce REST v3: one shop-wide stock pool read by offset paging, written by absolute sets.

Business rule: a Woo snapshot is complete only when every page was read and the shop's own
totals (X-WP-Total) agree with the distinct rows seen and never moved during paging; otherwise
IncompleteSnapshot, and nothing may be inferred. Writes have no CAS and no idempotency, so they
are sent once (never resent after a dropped connection) and the lead re-reads afterwards.

item_ref encoding: a product is its id ("794"); a variation is "<parent id>:<variation id>"
("799:800"), because Woo writes variations under their parent
(POST /products/{parent}/variations/batch). Variations whose manage_stock is "parent" have no
row: the parent's row carries that stock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from app.sync.base import (
    AuthError,
    AvailabilityUpdate,
    Capability,
    Connection,
    ConnectorBase,
    IncompleteSnapshot,
    MalformedResponse,
    NotFound,
    Observation,
    PushResult,
    PushStatus,
    SnapshotPage,
    TransientError,
    VendorRejected,
)
from app.sync.http import VendorHTTP, vendor_time

API = "/wp-json/wc/v3"
MAX_PER_PAGE = 100  # WordPress refuses per_page > 100 with 400 rest_invalid_param
_CODE = re.compile(r'"code"\s*:\s*"([^"]+)"')
MAX_BATCH = 100  # Woo's default batch limit (create + update + delete)


def build(conn: Connection) -> WooConnector:
    """A WooCommerce connector for one shop (site root in conn.base_url)."""
    return WooConnector(conn)


def verify_webhook(secret: str, body: bytes, header: str | None) -> bool:
    """X-WC-Webhook-Signature is base64 HMAC-SHA256 of the raw payload keyed with the secret."""
    if not header:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, header.strip())


def parse_ref(item_ref: str) -> tuple[int, int | None] | None:
    """(product id, variation id or None) from an item_ref, None when it is not ours."""
    head, colon, tail = item_ref.partition(":")
    if not head.isdigit() or (colon and not tail.isdigit()):
        return None
    return int(head), (int(tail) if colon else None)


class WooConnector(ConnectorBase):
    """Snapshot of products and variations, and available-to-sell pushed as stock_quantity."""

    name = "woocommerce"
    capabilities = frozenset({Capability.SNAPSHOT, Capability.PUSH_AVAILABLE, Capability.TWO_STRIKE})

    def __init__(self, conn: Connection) -> None:
        key, secret = conn.secrets.get("key"), conn.secrets.get("secret")
        if not key or not secret:
            raise AuthError("woocommerce needs the secrets key (ck_...) and secret (cs_...)")
        opts = conn.options
        self.location_ref = str(opts.get("location_ref") or "web")
        self.per_page = max(1, min(MAX_PER_PAGE, int(opts.get("per_page", MAX_PER_PAGE))))
        self.batch_limit = max(1, min(MAX_BATCH, int(opts.get("batch_limit", MAX_BATCH))))
        # Some hosts strip Authorization ("Consumer key is missing"): Woo then takes the keys
        # as query parameters, over HTTPS only.
        query_auth = opts.get("auth") == "query"
        self._auth_params = {"consumer_key": key, "consumer_secret": secret} if query_auth else {}
        self.http = VendorHTTP(
            conn.base_url.rstrip("/") + API,
            headers={"Accept": "application/json", "Cache-Control": "no-cache"},
            auth=None if query_auth else (key, secret),
            connect_timeout_s=conn.connect_timeout_s,
            read_timeout_s=conn.read_timeout_s,
            attempts=conn.attempts,
            clock=conn.clock,
            sleep=conn.sleep,
        )

    # ------------------------------------------------------------ snapshot

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        """Every product (id ascending) and the variations of variable products; complete last."""
        pending: SnapshotPage | None = None
        try:
            for observations, when in self._pages():
                if pending is not None:
                    yield pending
                pending = SnapshotPage(observations, when, complete=False)
        except IncompleteSnapshot:
            if pending is not None:  # its rows are good; only the whole is not
                yield pending
            raise
        if pending is not None:
            yield SnapshotPage(pending.observations, pending.vendor_time, complete=True)

    def _pages(self) -> Iterator[tuple[list[Observation], datetime | None]]:
        seen: set[str] = set()
        for rows, when in self._collection("products"):
            out: list[Observation] = []
            variable: list[int] = []
            for row in rows:
                ref = str(row.get("id"))
                if ref in seen:
                    continue  # shifted into this page again by offset paging
                seen.add(ref)
                out.append(self._observe(row, ref))
                if row.get("type") == "variable" and isinstance(row.get("id"), int):
                    variable.append(row["id"])
            yield out, when
            for pid in variable:
                for vrows, vwhen in self._collection(f"products/{pid}/variations"):
                    vout: list[Observation] = []
                    for v in vrows:
                        if v.get("manage_stock") == "parent":
                            continue  # the parent's row is this variation's stock
                        ref = f"{pid}:{v.get('id')}"
                        if ref not in seen:
                            seen.add(ref)
                            vout.append(self._observe(v, ref))
                    yield vout, vwhen

    def _collection(self, path: str) -> Iterator[tuple[list[dict[str, Any]], datetime | None]]:
        """Pages of one list endpoint; raises IncompleteSnapshot after the end if rows went missing."""
        page, dupes = 1, 0
        ids: set[Any] = set()
        totals: list[int] = []
        total_pages: int | None = None
        short_at: int | None = None
        while True:
            params = {"per_page": self.per_page, "page": page, "orderby": "id", "order": "asc"}
            try:
                body, resp = self.http.json(
                    "GET", path, idempotent=True, params={**params, **self._auth_params}
                )
            except VendorRejected as exc:
                if page > 1 and exc.status == 400:
                    break  # rest_post_invalid_page_number: past the end
                raise
            if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
                raise MalformedResponse(f"GET {path} page {page}: not a JSON list of objects")
            total, pages = _int_header(resp, "X-WP-Total"), _int_header(resp, "X-WP-TotalPages")
            if total is not None:
                totals.append(total)
            if pages is not None:
                total_pages = pages
            if not body:
                if page == 1:
                    yield body, vendor_time(resp)  # an empty shop: still one page with its time
                break
            before = len(ids)
            for row in body:
                if row.get("id") in ids:
                    dupes += 1
                ids.add(row.get("id"))
            yield body, vendor_time(resp)
            if total_pages is not None and page >= total_pages:
                break
            if len(ids) == before:
                break  # nothing new on a whole page: the shop ignores `page`; never loop forever
            if len(body) < self.per_page:
                if total_pages is None:
                    break
                short_at = page
            page += 1
        why = []
        if totals and len(set(totals)) > 1:
            why.append(f"the shop's total moved during paging ({totals[0]} -> {totals[-1]})")
        if totals and len(ids) < totals[-1]:
            why.append(f"{len(ids)} distinct rows seen of the {totals[-1]} the shop counts")
        if dupes:
            why.append(f"{dupes} rows shifted into a later page again (a row was inserted before them)")
        if short_at is not None:
            why.append(f"page {short_at} came back short before the last page")
        if why:
            raise IncompleteSnapshot(f"GET {path}: " + "; ".join(why), code="incomplete_snapshot")

    def _observe(self, row: Mapping[str, Any], ref: str) -> Observation:
        sku = row.get("sku") or None
        when = _gmt(row.get("date_modified_gmt"))
        if row.get("id") is None:
            return Observation(
                ref, self.location_ref, None, when, sku=sku, problem="row without an id", raw=row
            )
        if row.get("manage_stock") is not True:
            return Observation(ref, self.location_ref, None, when, tracked=False, sku=sku)
        raw_qty = row.get("stock_quantity")
        qty = _quantity(raw_qty)
        if qty is None:
            return Observation(
                ref, self.location_ref, None, when, sku=sku,
                problem=f"stock_quantity {raw_qty!r} is not a whole number", raw=row,
            )  # fmt: skip
        return Observation(ref, self.location_ref, qty, when, sku=sku)

    # ------------------------------------------------------------ push

    def push_available(self, updates: Sequence[AvailabilityUpdate]) -> list[PushResult]:
        """Absolute stock_quantity sets, ≤100 a batch, products and each parent's variations apart."""
        results: dict[int, PushResult] = {}
        groups: dict[str, list[tuple[int, AvailabilityUpdate, int]]] = {}
        for i, u in enumerate(updates):
            ref = parse_ref(u.item_ref)
            if ref is None:
                results[i] = _rejected(u, "invalid_item_ref", f"{u.item_ref!r} is not <id> or <parent>:<id>")
            elif u.location_ref != self.location_ref:
                results[i] = _rejected(
                    u, "unknown_location", f"the shop's one location is {self.location_ref!r}"
                )
            else:
                parent, vid = ref
                path = "products/batch" if vid is None else f"products/{parent}/variations/batch"
                groups.setdefault(path, []).append((i, u, parent if vid is None else vid))
        for path, items in groups.items():
            for start in range(0, len(items), self.batch_limit):
                self._send(path, items[start : start + self.batch_limit], results)
        return [results[i] for i in range(len(updates))]

    def _send(
        self, path: str, items: list[tuple[int, AvailabilityUpdate, int]], results: dict[int, PushResult]
    ) -> None:
        payload = {"update": [{"id": wid, "stock_quantity": int(u.target)} for _, u, wid in items]}
        try:
            # No CAS and no idempotency key: a write that may have landed is never resent.
            body, resp = self.http.json(
                "POST", path, idempotent=False, json=payload, params=self._auth_params
            )
        except VendorRejected as exc:
            if exc.status == 413 and len(items) > 1:
                half = len(items) // 2  # the shop's batch limit is lower than ours
                self._send(path, items[:half], results)
                self._send(path, items[half:], results)
                return
            code = _woo_code(exc.message) or f"http_{exc.status}"
            for i, u, _ in items:
                results[i] = _rejected(u, code, exc.message)
            return
        except NotFound as exc:  # the parent product is gone
            for i, u, _ in items:
                results[i] = _rejected(u, _woo_code(exc.message) or "not_found", exc.message)
            return
        except TransientError as exc:  # maybe applied, maybe not: the lead re-reads
            for i, u, _ in items:
                results[i] = PushResult(u.idempotency_key, PushStatus.RETRYABLE, message=exc.message)
            return
        when = vendor_time(resp)
        answered = body.get("update") if isinstance(body, dict) else None
        if not isinstance(answered, list):
            for i, u, _ in items:
                results[i] = PushResult(
                    u.idempotency_key, PushStatus.RETRYABLE, message="batch answer without update"
                )
            return
        by_id = {r.get("id"): r for r in answered if isinstance(r, dict)}
        in_order = len(answered) == len(items)
        for k, (i, u, wid) in enumerate(items):
            row = answered[k] if in_order else by_id.get(wid)
            if not isinstance(row, dict):
                results[i] = PushResult(
                    u.idempotency_key, PushStatus.RETRYABLE, message="item missing from answer"
                )
                continue
            err = row.get("error")
            if isinstance(err, dict):
                results[i] = _rejected(u, str(err.get("code") or "error"), str(err.get("message") or ""))
                continue
            stock = row.get("stock_quantity")
            results[i] = PushResult(
                u.idempotency_key, PushStatus.APPLIED,
                actual_current=stock if isinstance(stock, int) and not isinstance(stock, bool) else None,
                vendor_time=when,
            )  # fmt: skip

    def close(self) -> None:
        self.http.close()


def _rejected(u: AvailabilityUpdate, code: str, message: str) -> PushResult:
    return PushResult(u.idempotency_key, PushStatus.REJECTED, error_code=code, message=message)


def _woo_code(message: str) -> str | None:
    """The Woo error code from the body snippet the HTTP layer put in the message (it may be cut)."""
    found = _CODE.search(message)
    return found.group(1) if found else None


def _int_header(resp: requests.Response, name: str) -> int | None:
    value = resp.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _quantity(value: Any) -> Decimal | None:
    """stock_quantity as a Decimal when it is a whole number (negative with backorders)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float) and value.is_integer():
        return Decimal(int(value))
    if isinstance(value, str):
        text = value.strip()
        body = text[1:] if text[:1] in ("-", "+") else text
        if body.isascii() and body.isdigit():
            return Decimal(text)
    return None


def _gmt(value: Any) -> datetime | None:
    """date_modified_gmt is naive UTC: attach the zone; garbage is no hint rather than an error."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
