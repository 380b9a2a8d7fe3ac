"""Shopify Admin GraphQL: a channel we push available-to-sell to and whose orders come in.

Reads `available` per level (other quantity names are Shopify's own bookkeeping), writes it with
`inventorySetQuantities` guarded by compare-and-swap and an `@idempotent` key, pulls orders with
their fulfillment orders (the only place a pickup and its store are known), verifies webhooks.
Rate limits are GraphQL cost points: THROTTLED is waited on whether it comes in a 200 or a 429.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from app.sync.base import (
    AuthError,
    AvailabilityUpdate,
    Capability,
    Connection,
    ConnectorBase,
    IncomingOrder,
    MalformedResponse,
    NotFound,
    OrdersPage,
    PushResult,
    PushStatus,
    SnapshotPage,
    SyncError,
    TransientError,
    VendorRejected,
)
from app.sync.http import VendorHTTP, vendor_time
from app.sync.shopify_shapes import (
    _bounded,
    _code,
    _connection,
    _describe_errors,
    _get,
    _graphql_order,
    _is_int,
    _iso,
    _number,
    _numeric,
    _observation,
    _order,
    _ship,
)

DEFAULT_API_VERSION = "2026-04"
LAST_COMPARE_QUANTITY_VERSION = "2025-10"  # up to here CAS is compareQuantity; later changeFromQuantity
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
RETRYABLE_CODES = frozenset({"IDEMPOTENCY_CONCURRENT_REQUEST"})

LEVELS_QUERY = """
query Levels($loc: ID!, $first: Int!, $after: String) {
  location(id: $loc) {
    inventoryLevels(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id
        updatedAt
        item { id sku tracked }
        quantities(names: ["available", "committed", "on_hand"]) { name quantity updatedAt }
      }
    }
  }
}"""

LEVEL_QUERY = """
query Level($item: ID!, $loc: ID!) {
  inventoryItem(id: $item) {
    id
    inventoryLevel(locationId: $loc) { id quantities(names: ["available"]) { name quantity } }
  }
}"""

SET_MUTATION = """
mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { createdAt reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""

ORDERS_QUERY = """
query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      name
      createdAt
      updatedAt
      customer { id }
      shippingAddress { zip latitude longitude }
      lineItems(first: 250) {
        pageInfo { hasNextPage }
        nodes { sku quantity variant { id inventoryItem { id } } }
      }
      fulfillmentOrders(first: 20) {
        nodes { assignedLocation { location { id } } deliveryMethod { methodType } }
      }
    }
  }
}"""


def build(conn: Connection) -> ShopifyConnector:
    return ShopifyConnector(conn)


class ShopifyConnector(ConnectorBase):
    """One shop over GraphQL: levels of the configured locations, available pushes, orders."""

    name = "shopify"
    capabilities = frozenset({Capability.SNAPSHOT, Capability.PUSH_AVAILABLE, Capability.CAS,
                              Capability.IDEMPOTENT_WRITES, Capability.ORDERS})  # fmt: skip

    def __init__(self, conn: Connection) -> None:
        token = conn.secrets.get("token")
        if not token:
            raise AuthError("shopify: no access token (secret 'token')")
        opts = conn.options
        self.api_version = str(opts.get("api_version") or DEFAULT_API_VERSION)
        if not re.fullmatch(r"\d{4}-\d{2}", self.api_version):
            raise SyncError(f"shopify: api_version {self.api_version!r} is not YYYY-MM")
        refs = opts.get("location_refs") or ()
        if isinstance(refs, str):
            refs = [r.strip() for r in refs.split(",") if r.strip()]
        self.location_refs = tuple(str(r) for r in refs)
        self.page_size = _bounded(opts.get("page_size"), 250)
        self.orders_page_size = _bounded(opts.get("orders_page_size"), 50)
        self.compare_quantity = self.api_version <= LAST_COMPARE_QUANTITY_VERSION
        self.endpoint = f"/admin/api/{self.api_version}/graphql.json"
        self.http = VendorHTTP(
            conn.base_url,
            headers={"X-Shopify-Access-Token": token, "Accept": "application/json"},
            connect_timeout_s=conn.connect_timeout_s,
            read_timeout_s=conn.read_timeout_s,
            attempts=conn.attempts,
            clock=conn.clock,
            sleep=conn.sleep,
            throttle=_throttle,
            pace=_pace,
        )

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------ transport

    def _graphql(self, query: str, variables: Mapping[str, Any]) -> tuple[Mapping[str, Any], datetime | None]:
        # Every operation is a POST, but reads are safe and writes carry @idempotent: all replayable.
        body, resp = self.http.json(
            "POST", self.endpoint, idempotent=True, json={"query": query, "variables": dict(variables)}
        )
        if not isinstance(body, Mapping):
            raise MalformedResponse(f"shopify: GraphQL body is not an object: {str(body)[:200]}")
        errors = body.get("errors")
        if errors:
            message, code = _describe_errors(errors)
            raise VendorRejected(f"shopify: GraphQL error: {message}", status=resp.status_code, code=code)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise MalformedResponse(f"shopify: GraphQL answer without data: {str(body)[:200]}")
        return data, vendor_time(resp)

    # ------------------------------------------------------------ snapshot

    def pull_snapshot(self) -> Iterator[SnapshotPage]:
        """Every level of every configured location; complete only after the last page of the last."""
        if not self.location_refs:
            raise SyncError("shopify: no location_refs configured, so there is nothing to read")
        for index, loc in enumerate(self.location_refs):
            after: str | None = None
            while True:
                data, when = self._graphql(
                    LEVELS_QUERY, {"loc": loc, "first": self.page_size, "after": after}
                )
                location = data.get("location")
                if location is None:
                    raise NotFound(f"shopify: location {loc} does not exist or is not readable")
                nodes, has_next, cursor = _connection(_get(location, "inventoryLevels"), "inventoryLevels")
                observations = [_observation(loc, node) for node in nodes]
                last = not has_next and index == len(self.location_refs) - 1
                yield SnapshotPage(observations, when, complete=last)
                if not has_next:
                    break
                after = cursor

    # ------------------------------------------------------------ push

    def push_available(self, updates: Sequence[AvailabilityUpdate]) -> list[PushResult]:
        """One CAS-guarded, idempotent set per update; a lost CAS reports the vendor's current value."""
        results: list[PushResult] = []
        for n, update in enumerate(updates):
            try:
                results.append(self._push_one(update))
            except TransientError as exc:
                # The shop is struggling: stop here; the keys make the next run's replay safe.
                results.extend(
                    PushResult(
                        u.idempotency_key, PushStatus.RETRYABLE, error_code=exc.code, message=exc.message
                    )
                    for u in updates[n:]
                )
                break
        return results

    def _set_input(self, update: AvailabilityUpdate) -> dict[str, Any]:
        quantity: dict[str, Any] = {
            "inventoryItemId": update.item_ref,
            "locationId": update.location_ref,
            "quantity": update.target,
        }
        payload: dict[str, Any] = {"name": "available", "reason": "correction", "quantities": [quantity]}
        if update.reference:
            ref = update.reference
            payload["referenceDocumentUri"] = ref if "://" in ref else f"gid://omnistock/SyncRun/{ref}"
        if self.compare_quantity:
            if update.expected_current is None:
                payload["ignoreCompareQuantity"] = True
            else:
                quantity["compareQuantity"] = update.expected_current
        else:
            # Always present: from 2026-04 omitting it is an error, and null is the explicit opt-out.
            quantity["changeFromQuantity"] = update.expected_current
        return payload

    def _push_one(self, update: AvailabilityUpdate) -> PushResult:
        key = update.idempotency_key
        data, when = self._graphql(SET_MUTATION, {"input": self._set_input(update), "key": key})
        answer = data.get("inventorySetQuantities")
        if not isinstance(answer, Mapping):
            raise MalformedResponse(f"shopify: inventorySetQuantities answered {str(answer)[:200]}")
        user_errors = [e for e in answer.get("userErrors") or [] if isinstance(e, Mapping)]
        if user_errors:
            codes = [str(e.get("code") or "USER_ERROR") for e in user_errors]
            message = "; ".join(str(e.get("message") or "") for e in user_errors)[:500]
            stale = next((c for c in codes if c in STALE_CODES), None)
            if stale is not None:
                current, read_at = self.read_available(update.item_ref, update.location_ref)
                return PushResult(
                    key, PushStatus.STALE, actual_current=current, vendor_time=read_at or when,
                    error_code=stale, message=message,
                )  # fmt: skip
            status = PushStatus.RETRYABLE if codes[0] in RETRYABLE_CODES else PushStatus.REJECTED
            return PushResult(key, status, vendor_time=when, error_code=codes[0], message=message)
        # No adjustment group and no error: the level already held the target.
        applied = answer.get("inventoryAdjustmentGroup") is not None
        return PushResult(key, PushStatus.APPLIED if applied else PushStatus.NOOP, vendor_time=when)

    def read_available(self, item_ref: str, location_ref: str) -> tuple[int | None, datetime | None]:
        """The shop's `available` for one level now (None when the level or the number is absent)."""
        data, when = self._graphql(LEVEL_QUERY, {"item": item_ref, "loc": location_ref})
        item = data.get("inventoryItem")
        level = item.get("inventoryLevel") if isinstance(item, Mapping) else None
        if not isinstance(level, Mapping):
            return None, when
        for q in level.get("quantities") or []:
            if isinstance(q, Mapping) and q.get("name") == "available" and _is_int(q.get("quantity")):
                return int(q["quantity"]), when
        return None, when

    # ------------------------------------------------------------ orders

    def pull_orders(self, since: datetime | None) -> Iterator[OrdersPage]:
        """Orders updated after `since` (shop clock), oldest update first, with pickup routing."""
        search = f"updated_at:>'{_iso(since)}'" if since is not None else None
        after: str | None = None
        while True:
            variables = {"first": self.orders_page_size, "after": after, "query": search}
            data, when = self._graphql(ORDERS_QUERY, variables)
            nodes, has_next, cursor = _connection(data.get("orders"), "orders")
            yield OrdersPage([_graphql_order(node) for node in nodes], when, has_more=has_next)
            if not has_next:
                return
            after = cursor

    def parse_order(self, payload: Mapping[str, Any]) -> IncomingOrder:
        """An orders/create webhook (REST shape); pickup is unknowable here, so it says ship."""
        items = payload.get("line_items")

        def item_of(li: Mapping[str, Any]) -> str | None:  # REST line items rarely carry one
            inv = _numeric(li.get("inventory_item_id"))
            return f"gid://shopify/InventoryItem/{inv}" if inv else None

        return _order(
            payload, payload.get("id"), items if isinstance(items, list) else None, item_of,
            _ship(payload.get("shipping_address")), payload.get("customer"), payload.get("created_at"), [],
        )  # fmt: skip


# ---------------------------------------------------------------- webhooks


def verify_webhook(secrets: Sequence[str], body: bytes, header_value: str | None) -> bool:
    """True when X-Shopify-Hmac-Sha256 is the base64 HMAC-SHA256 of the raw body under any secret."""
    if not header_value:
        return False
    given = header_value.strip().encode("utf-8", "replace")
    ok = False
    for secret in secrets:
        if not secret:
            continue
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        # Every secret is compared (no early exit) so timing does not say which one matched.
        ok = hmac.compare_digest(expected, given) or ok
    return ok


# ---------------------------------------------------------------- rate limits


def _body(resp: requests.Response) -> Mapping[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, Mapping) else None


def _throttled_wait(body: Mapping[str, Any] | None) -> float | None:
    """Seconds until the bucket holds the refused query's cost, from the answer's own numbers."""
    if body is None:
        return None
    errors = body.get("errors")
    if not isinstance(errors, list) or not any(_code(e) == "THROTTLED" for e in errors):
        return None
    return _cost_wait(body, throttled=True)


def _cost_wait(body: Mapping[str, Any], *, throttled: bool) -> float | None:
    cost = _get(_get(body, "extensions"), "cost")
    status = _get(cost, "throttleStatus")
    numbers: tuple[Any, ...] = (
        cost.get("requestedQueryCost"), status.get("currentlyAvailable"), status.get("restoreRate"),
    )  # fmt: skip
    if not all(_number(n) for n in numbers):
        return 1.0 if throttled else None  # THROTTLED without numbers still means wait: briefly
    requested, available, rate = (float(n) for n in numbers)
    if rate <= 0 or available >= requested:
        return 1.0 if throttled else None
    return float(math.ceil((requested - available) / rate))


def _throttle(resp: requests.Response) -> float | None:
    """THROTTLED inside a 200: wait, then the HTTP layer sends the same request again."""
    return _throttled_wait(_body(resp))


def _pace(resp: requests.Response) -> float | None:
    """Wait before the next request when the bucket is below what the last query cost.

    A 429 never reaches `throttle`: the HTTP layer retries it after Retry-After (or its backoff),
    so its THROTTLED wait is set here and the retry waits whatever of it is left."""
    body = _body(resp)
    if body is None:
        return None
    if resp.status_code == 429:
        return _throttled_wait(body)
    if _throttled_wait(body) is not None:
        return None  # `throttle` waits for this one
    return _cost_wait(body, throttled=False)


# ---------------------------------------------------------------- mapping helpers
