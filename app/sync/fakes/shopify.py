"""A faithful fake Shopify shop: the Admin GraphQL operations our connector sends, and webhooks.

What it reproduces (FEED-FORMATS §2.7): version-dependent CAS (≤2025-10 compareQuantity, 2026-01
changeFromQuantity optional, 2026-04 changeFromQuantity mandatory at runtime), an @idempotent key
store (replay, IDEMPOTENCY_KEY_PARAMETER_MISMATCH, IDEMPOTENCY_CONCURRENT_REQUEST,
IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED), userErrors in a 200, a cost bucket with THROTTLED in a 200
or a 429, orders that move available→committed, a token check (401) and signed webhooks.
It parses GraphQL minimally: the operation is recognised by its root field, arguments are read
from variables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Response, request

from app.sync.fakes.harness import FakeVendor, rfc3339

SHOP = "omnistock-demo.myshopify.com"
PHYSICAL = ("available", "committed", "reserved", "damaged", "safety_stock", "quality_control")
REASONS = {"correction", "cycle_count_available", "damaged", "received", "restock", "shrinkage",
           "promotion", "other", "movement_created", "movement_updated", "safety_stock"}  # fmt: skip
# Requested cost (what the bucket must hold) and actual cost (what is taken) of each operation.
COSTS = {"levels": (252, 12), "level": (3, 2), "set": (10, 10), "orders": (352, 24)}
SHOP_TZ = timezone(timedelta(hours=-5))  # webhooks carry the shop's offset, GraphQL says Z
UNAUTHORIZED_BODY = "[API] Invalid API key or access token (unrecognized login or wrong password)"


class GraphQLError(Exception):
    """A top-level GraphQL error (validation, unknown field): HTTP 200 with `errors`."""


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def number_of(value: Any, kind: str) -> int | None:
    m = re.fullmatch(rf"gid://shopify/{kind}/(\d+)", value) if isinstance(value, str) else None
    return int(m.group(1)) if m else None


def _cursor(payload: Mapping[str, Any]) -> str:
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _uncursor(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        out = json.loads(base64.b64decode(str(value)))
    except ValueError as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {value}") from exc
    if not isinstance(out, dict):
        raise GraphQLError(f"Invalid cursor: {value}")
    return out


class FakeShopify(FakeVendor):
    """One shop: items, locations, levels, orders; Python helpers for tests drive it."""

    name = "shopify"

    def __init__(self, *, token: str = "shpat_fake_0123456789", now: datetime | None = None) -> None:  # noqa: S107
        self.token = token
        self.items: dict[int, dict[str, Any]] = {}
        self.locations: dict[int, str] = {655441491: "Warehouse", 24826418: "ST-A store"}
        self.levels: dict[tuple[int, int], dict[str, Any]] = {}
        self.orders: list[dict[str, Any]] = []
        self.idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self.inflight: set[str] = set()
        self.applied = 0  # mutations that changed state (replays do not count)
        self.mutations = 0  # mutations that reached the apply step
        self._before: dict[int, Callable[[], object]] = {}
        self._throttles: list[tuple[int, float, str | None]] = []
        self.bucket_max, self.restore_rate = 2000.0, 100.0
        self.bucket = self.bucket_max
        self._ids = itertools.count(271878346596884015)  # 64-bit, as Shopify's are
        super().__init__(now=now)
        self._bucket_at = self.now()

    # ------------------------------------------------------------ test helpers

    @property
    def location_gids(self) -> list[str]:
        return [gid("Location", n) for n in self.locations]

    def add_location(self, name: str) -> str:
        with self.lock:
            n = next(self._ids)
            self.locations[n] = name
            return gid("Location", n)

    def add_item(
        self, sku: str | None, *, tracked: bool = True, levels: Mapping[str, int] | None = None
    ) -> str:
        """A product variant's inventory item; `levels` maps Location gid → available."""
        with self.lock:
            n = next(self._ids)
            self.items[n] = {"sku": sku, "tracked": tracked, "variant_id": next(self._ids)}
        for loc, qty in (levels or {}).items():
            self.set_available(gid("InventoryItem", n), loc, qty)
        return gid("InventoryItem", n)

    def set_available(self, item_gid: str, location_gid: str, qty: int) -> None:
        with self.lock:
            level = self.levels.setdefault(self._key(item_gid, location_gid), self._new_level())
            level["q"]["available"] = qty
            level["updated_at"] = self.now()

    def available(self, item_gid: str, location_gid: str) -> int | None:
        level = self.levels.get(self._key(item_gid, location_gid))
        return None if level is None else int(level["q"]["available"])

    def quantities(self, item_gid: str, location_gid: str) -> dict[str, int]:
        q = dict(self.levels[self._key(item_gid, location_gid)]["q"])
        q["on_hand"] = sum(q[name] for name in PHYSICAL)
        return q

    def shape_level(self, item_gid: str, location_gid: str, *, omit: Sequence[str] = (),
                    extra: Mapping[str, int] | None = None) -> None:  # fmt: skip
        """Drop quantity names from, or add unknown ones (a newer API's) to, one level's answers."""
        level = self.levels[self._key(item_gid, location_gid)]
        level["omit"], level["extra"] = set(omit), dict(extra or {})

    def throttle_next(self, n: int = 1, *, status: int = 200, available: float = 52.0,
                      retry_after: str | None = None) -> None:  # fmt: skip
        """The next n GraphQL calls answer THROTTLED with currentlyAvailable=`available`."""
        with self.lock:
            self._throttles.extend([(status, available, retry_after)] * n)

    def set_bucket(self, available: float) -> None:
        with self.lock:
            self.bucket, self._bucket_at = available, self.now()

    def before_mutation(self, fn: Callable[[], object], nth: int = 1) -> None:
        """Run `fn` just before the nth mutation from now is applied (a sale between read and write)."""
        with self.lock:
            self._before[self.mutations + nth] = fn

    def place_order(self, lines: Sequence[tuple[str, int]], *, location_gid: str, pickup: bool = False,
                    customer_id: int | None = 115310627314723954, zip_code: str | None = "40003",
                    lat: float | None = 45.41634, lon: float | None = -75.6868) -> str:  # fmt: skip
        """An online order: available→committed at `location_gid`; returns the Order gid."""
        with self.lock:
            now = self.now()
            number = 820982911946154508 + len(self.orders)
            for item_gid, qty in lines:
                level = self.levels[self._key(item_gid, location_gid)]
                level["q"]["available"] -= qty
                level["q"]["committed"] += qty
                level["updated_at"] = now
            address = None if pickup else {"zip": zip_code, "latitude": lat, "longitude": lon}
            node = {
                "id": gid("Order", number),
                "name": f"#{1001 + len(self.orders)}",
                "createdAt": rfc3339(now, 0),
                "updatedAt": rfc3339(now, 0),
                "customer": {"id": gid("Customer", customer_id)} if customer_id else None,
                "shippingAddress": address,
                "lineItems": {"pageInfo": {"hasNextPage": False}, "nodes": [self._line_node(i, q) for i, q in lines]},
                "fulfillmentOrders": {"nodes": [{
                    "assignedLocation": {"location": {"id": location_gid}},
                    "deliveryMethod": {"methodType": "PICK_UP" if pickup else "SHIPPING"},
                }]},
            }  # fmt: skip
            self.orders.append({"id": number, "updated_at": now, "node": node, "lines": list(lines)})
            return str(node["id"])

    def order_payload(self, order_gid: str) -> dict[str, Any]:
        """The orders/create webhook body (REST shape, shop offset) of a placed order."""
        order = next(o for o in self.orders if o["node"]["id"] == order_gid)
        node, created = order["node"], order["updated_at"].astimezone(SHOP_TZ).isoformat()
        customer = node["customer"]
        return {
            "id": order["id"], "admin_graphql_api_id": node["id"], "name": node["name"],
            "created_at": created, "updated_at": created, "source_name": "web",
            "financial_status": "paid", "fulfillment_status": None, "location_id": None,
            "customer": {"id": number_of(customer["id"], "Customer")} if customer else None,
            "shipping_address": node["shippingAddress"],
            "line_items": [
                {"id": 866550311766439020 + i, "variant_id": self.items[number_of(item, "InventoryItem") or 0]["variant_id"],
                 "product_id": 632910392, "sku": self.items[number_of(item, "InventoryItem") or 0]["sku"],
                 "title": "IPod Nano - 8GB", "quantity": qty, "fulfillable_quantity": qty,
                 "fulfillment_service": "manual", "requires_shipping": node["shippingAddress"] is not None}
                for i, (item, qty) in enumerate(order["lines"])
            ],
            "shipping_lines": [{"code": None, "title": "Generic Shipping", "source": "shopify"}],
        }  # fmt: skip

    def webhook_request(self, topic: str, payload: Mapping[str, Any], secret: str, *,
                        webhook_id: str | None = None, triggered_at: datetime | None = None,
                        api_version: str = "2026-04", event_id: str | None = None
                        ) -> tuple[dict[str, str], bytes]:  # fmt: skip
        """Headers and raw body of one delivery; reuse `webhook_id` for a duplicate, pass an old
        `triggered_at` for a retry carrying the original (stale) payload."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-API-Version": api_version,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": rfc3339(triggered_at or self.now(), 6),
        }
        return headers, body

    # ------------------------------------------------------------ plumbing

    def _key(self, item_gid: str, location_gid: str) -> tuple[int, int]:
        item, loc = number_of(item_gid, "InventoryItem"), number_of(location_gid, "Location")
        if item not in self.items or loc not in self.locations:
            raise KeyError(f"unknown item {item_gid} or location {location_gid}")
        return item, loc

    def _new_level(self) -> dict[str, Any]:
        return {"q": dict.fromkeys(PHYSICAL, 0), "updated_at": self.now(), "omit": set(), "extra": {}}

    def _line_node(self, item_gid: str, qty: int) -> dict[str, Any]:
        item = self.items[number_of(item_gid, "InventoryItem") or 0]
        variant = {"id": gid("ProductVariant", item["variant_id"]), "inventoryItem": {"id": item_gid}}
        return {"sku": item["sku"], "quantity": qty, "variant": variant}

    def _cost(self, op: str, throttle: tuple[int, float, str | None] | None = None) -> dict[str, Any]:
        requested, actual = COSTS[op]
        available = throttle[1] if throttle else self.bucket
        return {"requestedQueryCost": requested, "actualQueryCost": None if throttle else actual,
                "throttleStatus": {"maximumAvailable": self.bucket_max, "currentlyAvailable": available,
                                   "restoreRate": self.restore_rate}}  # fmt: skip

    def _charge(self, op: str) -> Response | None:
        """Take the operation's cost from the bucket, or answer THROTTLED (forced or earned)."""
        now = self.now()
        elapsed = max((now - self._bucket_at).total_seconds(), 0.0)
        self.bucket, self._bucket_at = min(self.bucket_max, self.bucket + elapsed * self.restore_rate), now
        forced = self._throttles.pop(0) if self._throttles else None
        if forced is None and self.bucket >= COSTS[op][0]:
            self.bucket -= COSTS[op][1]
            return None
        status, _, retry_after = forced or (200, self.bucket, None)
        body = {"errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": self._cost(op, forced or (200, self.bucket, None))}}  # fmt: skip
        headers = {"Retry-After": retry_after} if retry_after else {}
        return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")

    def routes(self) -> None:
        @self.app.post("/admin/api/<version>/graphql.json")
        def graphql(version: str) -> Response:
            if request.headers.get("X-Shopify-Access-Token") != self.token:
                return _json({"errors": UNAUTHORIZED_BODY}, 401)
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                return _json({"errors": {"query": "Required parameter missing or invalid"}}, 400)
            query, variables = body["query"], body.get("variables") or {}
            op = next((op for word, op in (("inventorySetQuantities", "set"), ("inventoryLevels", "levels"),
                       ("inventoryItem(", "level"), ("orders(", "orders")) if word in query), None)  # fmt: skip
            if op is None:
                return _json({"errors": [{"message": "Field doesn't exist on type 'QueryRoot'",
                                          "extensions": {"code": "undefinedField"}}]}, 200)  # fmt: skip
            with self.lock:
                throttled = self._charge(op)
                if throttled is not None:
                    return throttled
                try:
                    data = getattr(self, f"_op_{op}")(version, query, variables)
                except GraphQLError as exc:
                    return _json(
                        {"errors": [{"message": str(exc), "locations": [{"line": 1, "column": 1}]}]}, 200
                    )
                return _json({"data": data, "extensions": {"cost": self._cost(op)}}, 200)

    # ------------------------------------------------------------ operations

    def _level_node(self, item_id: int, loc_id: int, level: dict[str, Any]) -> dict[str, Any]:
        item, stamp = self.items[item_id], rfc3339(level["updated_at"], 0)
        q = dict(level["q"])
        q["on_hand"] = sum(q[name] for name in PHYSICAL)
        shown = {name: q[name] for name in ("available", "committed", "on_hand") if name not in level["omit"]}
        if not item["tracked"] and "available" in shown:
            shown["available"] = None  # untracked: Shopify keeps no number
        shown.update(level["extra"])
        return {
            "id": f"gid://shopify/InventoryLevel/{loc_id}?inventory_item_id={item_id}",
            "updatedAt": stamp,
            "item": {"id": gid("InventoryItem", item_id), "sku": item["sku"], "tracked": item["tracked"]},
            "quantities": [{"name": n, "quantity": v, "updatedAt": stamp} for n, v in shown.items()],
        }

    def _op_levels(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        loc = number_of(variables.get("loc"), "Location")
        first = variables.get("first")
        if not isinstance(first, int) or not 1 <= first <= 250:
            raise GraphQLError("The 'first' argument must be between 1 and 250")
        if loc not in self.locations:
            return {"location": None}
        after = int(_uncursor(variables.get("after")).get("last_id", 0))
        rows = sorted((i, lvl) for (i, lc), lvl in self.levels.items() if lc == loc and i > after)
        page = rows[:first]
        info = {
            "hasNextPage": len(rows) > first,
            "endCursor": _cursor({"last_id": page[-1][0]}) if page else None,
        }
        nodes = [self._level_node(i, loc, lvl) for i, lvl in page]
        return {"location": {"inventoryLevels": {"pageInfo": info, "nodes": nodes}}}

    def _op_level(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        item, loc = (
            number_of(variables.get("item"), "InventoryItem"),
            number_of(variables.get("loc"), "Location"),
        )
        if item not in self.items:
            return {"inventoryItem": None}
        level = self.levels.get((item, loc or 0))
        node = self._level_node(item, loc or 0, level) if level else None
        return {"inventoryItem": {"id": gid("InventoryItem", item), "inventoryLevel": node}}

    def _op_orders(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        first = variables.get("first")
        if not isinstance(first, int) or not 1 <= first <= 250:
            raise GraphQLError("The 'first' argument must be between 1 and 250")
        m = re.search(r"updated_at:>'([^']+)'", variables.get("query") or "")
        since = datetime.fromisoformat(m.group(1)) if m else None
        cur = _uncursor(variables.get("after"))
        last = (datetime.fromisoformat(cur["last_value"]), int(cur["last_id"])) if cur else None
        rows = sorted(((o["updated_at"], o["id"]), o) for o in self.orders)
        rows = [(k, o) for k, o in rows if (since is None or k[0] > since) and (last is None or k > last)]
        page = rows[:first]
        end = _cursor({"last_id": page[-1][0][1], "last_value": page[-1][0][0].isoformat()}) if page else None
        return {"orders": {"pageInfo": {"hasNextPage": len(rows) > first, "endCursor": end},
                           "nodes": [json.loads(json.dumps(o["node"])) for _, o in page]}}  # fmt: skip

    def _op_set(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        m = re.search(r'@idempotent\(\s*key:\s*(?:"([^"]*)"|\$(\w+))\s*\)', query)
        key = (m.group(1) if m.group(1) is not None else variables.get(m.group(2))) if m else None
        payload = variables.get("input")
        if not isinstance(payload, dict) or not isinstance(payload.get("quantities"), list):
            raise GraphQLError(
                "Variable $input of type InventorySetQuantitiesInput! was provided invalid value"
            )
        self._check_schema(version, payload)
        fingerprint = json.dumps(payload, sort_keys=True)
        if key is not None and key in self.idempotency:
            seen, answer = self.idempotency[key]
            if seen != fingerprint:
                return _user_error("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", [],
                                   "The same idempotency key cannot be used with different operation parameters.")  # fmt: skip
            if answer["userErrors"]:
                return _user_error("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", [],
                                   "A previous request with this idempotency key failed. Retry with a new idempotency key.")  # fmt: skip
            return {"inventorySetQuantities": answer}  # the first answer, nothing applied again
        if key is not None and key in self.inflight:
            return _user_error(
                "IDEMPOTENCY_CONCURRENT_REQUEST",
                [],
                "This request is currently in progress, please try again.",
            )
        self.mutations += 1
        hook = self._before.pop(self.mutations, None)
        if key is not None:
            self.inflight.add(key)
        try:
            if hook is not None:
                hook()
            answer = self._set_quantities(version, payload)
        finally:
            self.inflight.discard(key or "")
        if key is not None:
            self.idempotency[key] = (fingerprint, answer)
        return {"inventorySetQuantities": answer}

    def _check_schema(self, version: str, payload: dict[str, Any]) -> None:
        """Fields that do not exist in this version are GraphQL validation errors, not userErrors."""
        for i, q in enumerate(payload["quantities"]):
            if version <= "2025-10" and isinstance(q, dict) and "changeFromQuantity" in q:
                raise GraphQLError(
                    f"Variable $input ... quantities.{i}.changeFromQuantity (Field is not defined on InventoryQuantityInput)"
                )
            if version >= "2026-04" and isinstance(q, dict) and "compareQuantity" in q:
                raise GraphQLError(
                    f"Variable $input ... quantities.{i}.compareQuantity (Field is not defined on InventoryQuantityInput)"
                )
        if version >= "2026-04" and "ignoreCompareQuantity" in payload:
            raise GraphQLError(
                "Variable $input ... ignoreCompareQuantity (Field is not defined on InventorySetQuantitiesInput)"
            )

    def _set_quantities(self, version: str, payload: dict[str, Any]) -> dict[str, Any]:
        name, reason, ref = payload.get("name"), payload.get("reason"), payload.get("referenceDocumentUri")
        errors: list[dict[str, Any]] = []
        if name not in ("available", "on_hand"):
            errors.append(
                _err(
                    "INVALID_NAME",
                    ["input", "name"],
                    "The quantity name must be either 'available' or 'on_hand'.",
                )
            )
        if reason not in REASONS:
            errors.append(_err("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        if ref is not None and (not isinstance(ref, str) or "://" not in ref):
            errors.append(
                _err(
                    "INVALID_REFERENCE_DOCUMENT",
                    ["input", "referenceDocumentUri"],
                    "The specified reference document is invalid.",
                )
            )
        plan: list[tuple[dict[str, Any], int, int]] = []
        for i, q in enumerate(payload["quantities"]):
            field = ["input", "quantities", str(i)]
            item, loc = (
                number_of(q.get("inventoryItemId"), "InventoryItem"),
                number_of(q.get("locationId"), "Location"),
            )
            qty = q.get("quantity")
            if item not in self.items:
                errors.append(
                    _err(
                        "INVALID_INVENTORY_ITEM",
                        [*field, "inventoryItemId"],
                        "The specified inventory item could not be found.",
                    )
                )
                continue
            if loc not in self.locations:
                errors.append(
                    _err(
                        "INVALID_LOCATION",
                        [*field, "locationId"],
                        "The specified location could not be found.",
                    )
                )
                continue
            level = self.levels.get((item, loc))
            if level is None:
                errors.append(
                    _err(
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        field,
                        "The inventory item is not stocked at the location.",
                    )
                )
                continue
            if not isinstance(qty, int) or qty < 0 or qty > 1_000_000_000:
                code = (
                    "INVALID_QUANTITY_NEGATIVE"
                    if isinstance(qty, int) and qty < 0
                    else "INVALID_QUANTITY_TOO_HIGH"
                )
                errors.append(_err(code, [*field, "quantity"], "The quantity is out of range."))
                continue
            persisted = (
                level["q"]["available"] if name == "available" else sum(level["q"][n] for n in PHYSICAL)
            )
            if version >= "2026-04" and "changeFromQuantity" not in q:
                errors.append(_err("COMPARE_QUANTITY_REQUIRED", [*field, "changeFromQuantity"],
                                   "changeFromQuantity must be given for each quantity as of 2026-04 (null to opt out)."))  # fmt: skip
                continue
            if version >= "2026-01" and "changeFromQuantity" in q:
                expected, stale = q["changeFromQuantity"], "CHANGE_FROM_QUANTITY_STALE"
            elif payload.get("ignoreCompareQuantity") is True:
                expected, stale = None, ""
            elif "compareQuantity" not in q:
                errors.append(_err("COMPARE_QUANTITY_REQUIRED", [*field, "compareQuantity"],
                                   "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity."))  # fmt: skip
                continue
            else:
                expected, stale = q["compareQuantity"], "COMPARE_QUANTITY_STALE"
            if expected is not None and expected != persisted:
                what = "changeFromQuantity" if stale.startswith("CHANGE") else "compareQuantity"
                errors.append(
                    _err(stale, [*field, what], f"The {what} value does not match persisted value.")
                )
                continue
            plan.append((level, qty - persisted, qty))
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        changes = []
        for level, delta, _ in plan:
            level["q"]["available"] += delta  # setting on_hand moves available too
            level["updated_at"] = self.now()
            on_hand = sum(level["q"][n] for n in PHYSICAL)
            changes += [{"name": "available", "delta": delta, "quantityAfterChange": level["q"]["available"]},
                        {"name": "on_hand", "delta": delta, "quantityAfterChange": on_hand}]  # fmt: skip
        if not any(d for _, d, _ in plan):
            return {"inventoryAdjustmentGroup": None, "userErrors": []}
        self.applied += 1
        group = {
            "createdAt": rfc3339(self.now(), 0),
            "reason": reason,
            "referenceDocumentUri": ref,
            "changes": changes,
        }
        return {"inventoryAdjustmentGroup": group, "userErrors": []}


def _err(code: str, field: list[str], message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "message": message}


def _user_error(code: str, field: list[str], message: str) -> dict[str, Any]:
    return {
        "inventorySetQuantities": {
            "inventoryAdjustmentGroup": None,
            "userErrors": [_err(code, field, message)],
        }
    }


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
