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
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    IncomingLine,
    IncomingOrder,
    MalformedResponse,
    NotFound,
    Observation,
    OrdersPage,
    PushResult,
    PushStatus,
    SnapshotPage,
    SyncError,
    TransientError,
    VendorRejected,
)
from app.sync.http import VendorHTTP, vendor_time

DEFAULT_API_VERSION = "2026-04"
LAST_COMPARE_QUANTITY_VERSION = "2025-10"  # up to here CAS is compareQuantity; later changeFromQuantity
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
RETRYABLE_CODES = frozenset({"IDEMPOTENCY_CONCURRENT_REQUEST"})
PICKUP = "PICK_UP"  # PICKUP_POINT is a carrier's drop point: a shipment, not a store pickup

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


def _observation(loc: str, node: Any) -> Observation:
    if not isinstance(node, Mapping):
        return Observation("", loc, None, problem="inventory level is not an object", raw={"node": node})
    item = _get(node, "item")
    item_ref = item.get("id")
    raw = dict(node)
    as_of = _parse_time(node.get("updatedAt"))
    sku = _text(item.get("sku"))
    if not isinstance(item_ref, str) or not item_ref:
        return Observation("", loc, None, as_of=as_of, sku=sku, problem="level without an item id", raw=raw)
    available: Any = ...
    for q in node.get("quantities") or []:
        # Names other than available (committed, on_hand, or one newer than this code) are ignored.
        if isinstance(q, Mapping) and q.get("name") == "available":
            available = q.get("quantity")
    if item.get("tracked") is False or available is None:
        return Observation(item_ref, loc, None, as_of=as_of, tracked=False, sku=sku, raw=raw)
    if available is ...:
        problem = "level carries no 'available' quantity"
        return Observation(item_ref, loc, None, as_of=as_of, sku=sku, problem=problem, raw=raw)
    if not _is_int(available):
        problem = f"available {available!r} is not an integer"
        return Observation(item_ref, loc, None, as_of=as_of, sku=sku, problem=problem, raw=raw)
    return Observation(item_ref, loc, Decimal(int(available)), as_of=as_of, sku=sku, raw=raw)


def _graphql_order(node: Any) -> IncomingOrder:
    if not isinstance(node, Mapping):
        return IncomingOrder("", [], problem="order is not an object", raw={"node": node})
    problems: list[str] = []
    items = _get(node, "lineItems")
    if _field(_get(items, "pageInfo"), "hasNextPage") is True:
        problems.append("order has more than 250 line items")
    delivery: Mapping[str, Any] = _ship(node.get("shippingAddress"))
    fulfillment = _get(node, "fulfillmentOrders").get("nodes")
    for fo in fulfillment if isinstance(fulfillment, list) else []:
        if _field(_get(fo, "deliveryMethod"), "methodType") == PICKUP:
            loc = _field(_get(_get(fo, "assignedLocation"), "location"), "id")
            delivery = {"type": "pickup", "location_ref": loc if isinstance(loc, str) else None}
            if delivery["location_ref"] is None:
                problems.append("pickup order without an assigned location")
            break

    def item_of(li: Mapping[str, Any]) -> str | None:
        inv = _field(_get(_get(li, "variant"), "inventoryItem"), "id")
        return inv if isinstance(inv, str) else None

    nodes = items.get("nodes")
    return _order(
        node, node.get("id"), nodes if isinstance(nodes, list) else None, item_of,
        delivery, node.get("customer"), node.get("createdAt"), problems,
    )  # fmt: skip


def _order(
    raw: Mapping[str, Any], order_id: Any, items: list[Any] | None,
    item_of: Callable[[Mapping[str, Any]], str | None], delivery: Mapping[str, Any],
    customer: Any, created: Any, problems: list[str],
) -> IncomingOrder:  # fmt: skip
    """Both order shapes end here: every unreadable line is named, the order is kept with its raw."""
    external_id = _numeric(order_id)
    if external_id is None:
        problems.append(f"order id {order_id!r} is not a Shopify id")
    if not items:
        problems.append("order has no readable line items")
    lines: list[IncomingLine] = []
    for i, li in enumerate(items or []):
        if not isinstance(li, Mapping) or not _positive(li.get("quantity")):
            problems.append(f"line {i}: quantity {_field(li, 'quantity')!r} is not a positive integer")
            continue
        lines.append(IncomingLine(int(li["quantity"]), item_ref=item_of(li), sku=_text(li.get("sku"))))
    return IncomingOrder(
        external_id=external_id or "",
        lines=lines,
        customer_ref=_numeric(_field(customer, "id")),
        delivery=delivery,
        created_at=_parse_time(created),
        problem="; ".join(problems) or None,
        raw=dict(raw),
    )


def _ship(address: Any) -> dict[str, Any]:
    """Ship to the address's postcode and, when the shop geocoded it, its coordinates."""
    delivery: dict[str, Any] = {"type": "ship"}
    if not isinstance(address, Mapping):
        return delivery
    if _text(address.get("zip")):
        delivery["postcode"] = str(address["zip"]).strip()
    lat, lon = address.get("latitude"), address.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float) and not isinstance(lat, bool):
        delivery["lat"], delivery["lon"] = float(lat), float(lon)
    return delivery


def _connection(conn: Any, what: str) -> tuple[list[Any], bool, str | None]:
    if not isinstance(conn, Mapping) or not isinstance(conn.get("nodes"), list):
        raise MalformedResponse(f"shopify: {what} is not a connection: {str(conn)[:200]}")
    page = _get(conn, "pageInfo")
    has_next = page.get("hasNextPage") is True
    cursor = page.get("endCursor")
    if has_next and not isinstance(cursor, str):
        raise MalformedResponse(f"shopify: {what} says there is a next page but gives no endCursor")
    return list(conn["nodes"]), has_next, cursor if isinstance(cursor, str) else None


def _describe_errors(errors: Any) -> tuple[str, str | None]:
    if isinstance(errors, list):
        messages = [str(e.get("message")) if isinstance(e, Mapping) else str(e) for e in errors]
        code = next((c for c in (_code(e) for e in errors) if c), None)
        return "; ".join(messages)[:500], code
    return str(errors)[:500], None


def _code(error: Any) -> str | None:
    code = _field(_get(error, "extensions"), "code")
    return str(code) if code else None


def _get(value: Any, key: str) -> Mapping[str, Any]:
    """value[key] when both are mappings, else an empty mapping (GraphQL nulls are common)."""
    inner = value.get(key) if isinstance(value, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _is_int(value) and int(value) > 0


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _numeric(value: Any) -> str | None:
    """The number of an id: 820982911946154508 or gid://shopify/Order/820982911946154508."""
    if _is_int(value) and int(value) > 0:
        return str(value)
    if isinstance(value, str):
        tail = value.rsplit("/", 1)[-1].split("?", 1)[0]
        if tail.isascii() and tail.isdigit():
            return tail
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _iso(when: datetime) -> str:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bounded(value: Any, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except (TypeError, ValueError):
        number = default
    return min(max(number, 1), 250)
