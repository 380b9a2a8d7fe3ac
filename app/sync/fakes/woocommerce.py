"""A WooCommerce REST v3 fake (FEED-FORMATS §3.7): offset paging over live state, absolute writes.

Faithful parts: default order `date desc` unless orderby=id; X-WP-Total, X-WP-TotalPages and Link
headers; per_page > 100 is 400 rest_invalid_param; Basic or query-param auth, else 401
woocommerce_rest_cannot_view; naive dates (site time and GMT); variable products whose
variations may say manage_stock "parent"; batch with per-item errors inside a 200 and 413 over
`limit`; no CAS. A shop sale (`sell`) does not bump date_modified, as order stock reduction may not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Response, request

from app.sync.fakes.harness import FakeVendor

API = "/wp-json/wc/v3"
_FMT = "%Y-%m-%dT%H:%M:%S"


def _naive(when: datetime) -> datetime:
    """Woo stores GMT times without a zone: aware times are taken to UTC and the zone dropped."""
    return when.astimezone(UTC).replace(tzinfo=None, microsecond=0) if when.tzinfo else when


def _error(status: int, code: str, message: str, **data: Any) -> Response:
    body = {"code": code, "message": message, "data": {"status": status, **data}}
    return Response(json.dumps(body), status=status, mimetype="application/json")


class FakeWoo(FakeVendor):
    """One shop: products and variations share an id space, as WordPress posts do."""

    name = "woocommerce"

    def __init__(
        self,
        *,
        key: str = "ck_test",
        secret: str = "cs_test",  # noqa: S107 - the fake shop's own test key
        site_offset_h: int = 1,
        now: datetime | None = None,
    ) -> None:
        self.key, self.secret = key, secret
        self.site_offset = timedelta(hours=site_offset_h)
        self.products: dict[int, dict[str, Any]] = {}
        self.variations: dict[int, dict[str, Any]] = {}  # id -> variation (with parent_id)
        self.limit = 100  # woocommerce_rest_batch_items_limit
        self.past_end = "empty"  # or "400": what a page past the end answers
        self.send_totals = True  # some hosts strip X-WP-* headers
        self._next_id = 794
        self._page_hooks: list[tuple[str, int, Callable[[], None]]] = []
        super().__init__(now=now)

    # ------------------------------------------------------------ Python helpers

    def _new_id(self, wanted: int | None) -> int:
        if wanted is not None:
            self._next_id = max(self._next_id, wanted + 1)
            return wanted
        self._next_id += 1
        return self._next_id - 1

    def _record(self, id_: int, sku: str, stock: int | None, manage: Any, **extra: Any) -> dict[str, Any]:
        now = self.now()
        return {
            "id": id_, "name": extra.pop("name", None) or f"Product {sku or id_}", "sku": sku,
            "status": "publish", "manage_stock": manage, "stock_quantity": stock,
            "backorders": extra.pop("backorders", "no"), "created": _naive(extra.pop("created", now)),
            "modified": _naive(extra.pop("modified", now)), **extra,
        }  # fmt: skip

    def add_product(
        self,
        sku: str,
        stock: int | None,
        *,
        manage_stock: bool | None = None,
        id: int | None = None,
        **extra: Any,
    ) -> int:
        """A simple product; stock None means unmanaged unless manage_stock says otherwise."""
        with self.lock:
            pid = self._new_id(id)
            manage = (stock is not None) if manage_stock is None else manage_stock
            self.products[pid] = self._record(pid, sku, stock, manage, type="simple", variations=[], **extra)
            return pid

    def add_variable(
        self, sku: str, variations: list[tuple[str, int | str | None]], *, stock: int | None = None
    ) -> tuple[int, list[int]]:
        """A variable product; each variation is (sku, stock), stock "parent" inherits the parent's."""
        with self.lock:
            pid = self._new_id(None)
            self.products[pid] = self._record(
                pid, sku, stock, stock is not None, type="variable", variations=[]
            )
            for vsku, vstock in variations:
                vid = self._new_id(None)
                if vstock == "parent":
                    rec = self._record(vid, vsku, None, "parent")
                else:
                    qty = vstock if isinstance(vstock, int) else None
                    rec = self._record(vid, vsku, qty, qty is not None)
                rec["parent_id"] = pid
                self.variations[vid] = rec
                self.products[pid]["variations"].append(vid)
            return pid, list(self.products[pid]["variations"])

    def _find(self, id_: int) -> dict[str, Any] | None:
        return self.products.get(id_) or self.variations.get(id_)

    def _stock_owner(self, id_: int) -> dict[str, Any]:
        rec = self._find(id_)
        if rec is None:
            raise KeyError(id_)
        if rec["manage_stock"] == "parent":
            return self.products[rec["parent_id"]]
        return rec

    def set_stock(self, id_: int, qty: int) -> None:
        """An admin edit: absolute, and it bumps date_modified."""
        with self.lock:
            rec = self._stock_owner(id_)
            rec["stock_quantity"], rec["manage_stock"] = qty, True
            rec["modified"] = _naive(self.now())

    def stock(self, id_: int) -> int | None:
        with self.lock:
            value = self._stock_owner(id_)["stock_quantity"]
            return value if isinstance(value, int) else None

    def sell(self, id_: int, qty: int = 1) -> None:
        """A web order reducing stock: no date_modified bump (FEED-FORMATS §9.3, [obs])."""
        with self.lock:
            rec = self._stock_owner(id_)
            if rec["manage_stock"] is True:
                rec["stock_quantity"] -= qty

    def trash(self, id_: int) -> None:
        with self.lock:
            self.products.pop(id_, None)
            self.variations.pop(id_, None)

    def on_page(self, page: int, fn: Callable[[], None], *, path: str = "products") -> None:
        """Run fn (once) right after page `page` of `path` is served: live mutation mid-paging."""
        self._page_hooks.append((path, page, fn))

    # ------------------------------------------------------------ rendering

    def _render(self, rec: dict[str, Any]) -> dict[str, Any]:
        owner = self.products.get(rec.get("parent_id", -1)) if rec["manage_stock"] == "parent" else None
        out = {k: v for k, v in rec.items() if k not in ("created", "modified")}
        out["stock_quantity"] = owner["stock_quantity"] if owner else rec["stock_quantity"]
        if rec["manage_stock"] is False:
            out["stock_quantity"] = None
        qty = out["stock_quantity"]
        out["stock_status"] = "instock" if not isinstance(qty, int) or qty > 0 else "outofstock"
        if isinstance(qty, int) and qty < 0 and rec["backorders"] != "no":
            out["stock_status"] = "onbackorder"
        for name, when in (("date_created", rec["created"]), ("date_modified", rec["modified"])):
            out[name] = (when + self.site_offset).strftime(_FMT)  # naive site time
            out[f"{name}_gmt"] = when.strftime(_FMT)  # naive UTC
        return out

    # ------------------------------------------------------------ HTTP

    def _authorised(self) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, pw) == (self.key, self.secret)
        args = request.args
        return (args.get("consumer_key"), args.get("consumer_secret")) == (self.key, self.secret)

    def _list(self, rows: list[dict[str, Any]], hook_path: str) -> Response:
        args = request.args
        try:
            per_page = int(args.get("per_page", "10"))
            page = int(args.get("page", "1"))
        except ValueError:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): per_page, page")
        if not 1 <= per_page <= 100:
            return _error(
                400, "rest_invalid_param", "Invalid parameter(s): per_page",
                params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            )  # fmt: skip
        if page < 1:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): page")
        if args.get("orderby") == "id":
            rows.sort(key=lambda r: r["id"])
        else:
            rows.sort(key=lambda r: (r["created"], r["id"]))
        if args.get("order", "desc") == "desc":
            rows.reverse()
        total = len(rows)
        pages = max(1, -(-total // per_page))
        offset = int(args.get("offset", (page - 1) * per_page))
        if page > pages and self.past_end == "400":
            return _error(
                400, "rest_post_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
            )  # fmt: skip
        body = [self._render(r) for r in rows[offset : offset + per_page]]
        resp = Response(json.dumps(body), mimetype="application/json")
        if self.send_totals:
            resp.headers["X-WP-Total"] = str(total)
            resp.headers["X-WP-TotalPages"] = str(pages)
        links = []
        query = {k: v for k, v in args.items() if k not in ("consumer_key", "consumer_secret")}
        for rel, target in (("prev", page - 1), ("next", page + 1)):
            if 1 <= target <= pages:
                links.append(f'<{request.base_url}?{urlencode({**query, "page": target})}>; rel="{rel}"')
        if links:
            resp.headers["Link"] = ", ".join(links)
        for hook in [h for h in self._page_hooks if h[0] == hook_path and h[1] == page]:
            self._page_hooks.remove(hook)
            hook[2]()
        return resp

    def _batch(self, table: dict[int, dict[str, Any]], code: str, parent: int | None) -> Response:
        body = request.get_json(silent=True) or {}
        count = sum(len(body.get(k) or []) for k in ("create", "update", "delete"))
        if count > self.limit:
            return _error(
                413, "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {self.limit} items for this request.",
            )  # fmt: skip
        out = []
        stamp = _naive(self.now())
        for item in body.get("update") or []:
            wanted = item.get("id") if isinstance(item, dict) else None
            rec = table.get(wanted) if isinstance(wanted, int) else None
            if rec is None or (parent is not None and rec.get("parent_id") != parent):
                err = {"code": code, "message": "Invalid ID.", "data": {"status": 400}}
                out.append({"id": wanted, "error": err})
                continue
            qty = item.get("stock_quantity")
            if "stock_quantity" in item and (not isinstance(qty, int) or isinstance(qty, bool)):
                err = {"code": "rest_invalid_param", "message": "Invalid parameter(s): stock_quantity",
                       "data": {"status": 400}}  # fmt: skip
                out.append({"id": rec["id"], "error": err})
                continue
            if "stock_quantity" in item and rec["manage_stock"] is True:
                rec["stock_quantity"] = qty  # absolute: a sale since the caller's read is overwritten
            rec["modified"] = stamp
            out.append(self._render(rec))
        return Response(json.dumps({"create": [], "update": out, "delete": []}), mimetype="application/json")

    def routes(self) -> None:
        app = self.app

        @app.before_request
        def auth() -> Response | None:
            if not request.path.startswith(API) or self._authorised():
                return None
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")

        @app.get(f"{API}/products")
        def products() -> Response:
            with self.lock:
                return self._list(list(self.products.values()), "products")

        @app.get(f"{API}/products/<int:pid>/variations")
        def variations(pid: int) -> Response:
            with self.lock:
                if pid not in self.products:
                    return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                rows = [v for v in self.variations.values() if v["parent_id"] == pid]
                return self._list(rows, f"products/{pid}/variations")

        @app.get(f"{API}/products/<int:pid>")
        def product(pid: int) -> Response:
            with self.lock:
                rec = self.products.get(pid)
                if rec is None:
                    return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                return Response(json.dumps(self._render(rec)), mimetype="application/json")

        @app.post(f"{API}/products/batch")
        def batch() -> Response:
            with self.lock:
                return self._batch(self.products, "woocommerce_rest_product_invalid_id", None)

        @app.post(f"{API}/products/<int:pid>/variations/batch")
        def variation_batch(pid: int) -> Response:
            with self.lock:
                if pid not in self.products:
                    return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                return self._batch(self.variations, "woocommerce_rest_product_variation_invalid_id", pid)
