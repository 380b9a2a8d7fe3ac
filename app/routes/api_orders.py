"""Orders API: place (idempotent), quote, read, cancel, return; fulfilment life cycle."""

from __future__ import annotations

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction
from app.domain.errors import InvalidInput
from app.domain.fulfilment import Status
from app.schemas import (
    CancelIn,
    CustomerOrderQuery,
    CustomerPath,
    FulfilmentOut,
    FulfilmentPath,
    OrderIn,
    OrderOut,
    OrderPage,
    OrderPath,
    OrderQuery,
    ReturnIn,
    RoutingOut,
)
from app.services import orders
from app.web import session_factory
from app.web.auth import principal, roles
from app.web.openapi import API_PREFIX, SECURITY, documented_headers
from app.web.pagination import cursor_id, encode_cursor, page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond, respond_page

bp = APIBlueprint(
    "api_orders", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="orders")], abp_security=SECURITY
)


def _command(body: OrderIn) -> orders.PlaceOrder:
    d = body.delivery
    delivery = (
        orders.Delivery("pickup", location=d.location)
        if d.type == "pickup"
        else orders.Delivery("ship", lat=d.lat, lon=d.lon, postcode=d.postcode)
    )
    return orders.PlaceOrder(
        channel=body.channel,
        lines=tuple((ln.sku, ln.qty) for ln in body.lines),
        delivery=delivery,
        external_id=body.external_id,
        customer_ref=body.customer_ref,
        customer_name=body.customer_name,
        allow_split=body.allow_split,
        allow_partial=body.allow_partial,
        idempotency_key=_idempotency_key(),
        till=principal().role == "ops",
    )


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    # A key that cannot identify a retry is a client bug to name, not "no key".
    if not key.strip() or len(key) > 200 or not key.isprintable():
        raise InvalidInput(
            "bad Idempotency-Key",
            [{"field": "Idempotency-Key", "message": "1 to 200 printable characters, not blank"}],
        )
    return key


def _policy() -> orders.Policy:
    return orders.policy_from_config(current_app.config)


@bp.post("/orders", responses={201: OrderOut, 200: OrderOut, **WRITE_PROBLEMS})
@roles("storefront", "ops")
@documented_headers(
    **{"Idempotency-Key": "Retries with the same key return the same order (1-200 printable chars)"}
)
def place_order(body: OrderIn) -> ApiResult:
    """Route and reserve an order; the same Idempotency-Key or external_id returns the same order.

    201 for a new order, 200 for a replay. 409 insufficient_stock lists alternatives and the
    routing explanation; 409 idempotency_conflict when the key came with a different body.
    Storefront keys order on online channels only (a store's till channel is 403).
    """
    attempts = int(current_app.config["ROUTING_MAX_ATTEMPTS"]) + 1
    placed = orders.place(session_factory(), _command(body), _policy(), attempts=attempts)
    return respond(OrderOut, placed.order, 200 if placed.replayed else 201)


@bp.post("/routing/quote", responses={200: RoutingOut, **WRITE_PROBLEMS})
@roles("storefront", "ops")
def quote(body: OrderIn) -> ApiResult:
    """The routing decision placing this order would take now; reserves nothing."""
    with read_only(session_factory()) as session:
        return respond(RoutingOut, orders.quote(session, _command(body), _policy()))


@bp.get("/orders/<int:id>", responses={200: OrderOut, **READ_PROBLEMS})
@roles("storefront", "ops", "staff")
def get_order(path: OrderPath) -> ApiResult:
    """One order with its fulfilments and routing explanation; staff see their locations' part."""
    with read_only(session_factory()) as session:
        return respond(OrderOut, orders.get_order(session, path.id, scope=principal().scope()))


@bp.get("/orders", responses={200: OrderPage, **READ_PROBLEMS})
@roles("storefront", "ops", "staff")
def list_orders(query: OrderQuery) -> ApiResult:
    """Orders newest first, filtered by status, location, channel, customer and dates; keyset-paged.

    Staff see only orders with a fulfilment at their locations, and only those fulfilments.
    """
    return _order_page(query, query.customer_ref)


@bp.get("/customers/<customer_ref>/orders", responses={200: OrderPage, **READ_PROBLEMS})
@roles("storefront", "ops")
def customer_orders(path: CustomerPath, query: CustomerOrderQuery) -> ApiResult:
    """One customer's orders from every channel, newest first, with the same filters as /orders."""
    return _order_page(query, path.customer_ref)


def _order_page(query: CustomerOrderQuery, customer_ref: str | None) -> ApiResult:
    flt = orders.OrderFilter(
        status=query.status, location=query.location, channel=query.channel, customer_ref=customer_ref,
        created_from=query.created_from, created_to=query.created_to,
    )  # fmt: skip
    before = cursor_id(query.cursor)
    with read_only(session_factory()) as session:
        items, nxt = orders.list_orders(
            session, flt, before_id=before, limit=page_limit(query.limit), scope=principal().scope()
        )
    return respond_page(OrderPage, items, encode_cursor(nxt) if nxt else None)


@bp.post("/orders/<int:id>/cancel", responses={200: OrderOut, **WRITE_PROBLEMS})
@roles("storefront", "ops")
def cancel_order(path: OrderPath, body: CancelIn) -> ApiResult:
    """Cancel the whole order, or some units of some lines; released stock is available again."""
    lines = [(ln.sku, ln.qty) for ln in body.lines] if body.lines else None
    return respond(OrderOut, transaction(session_factory(), lambda s: orders.cancel_order(s, path.id, lines)))


@bp.post("/orders/<int:id>/returns", responses={200: OrderOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def record_return(path: OrderPath, body: ReturnIn) -> ApiResult:
    """Take delivered units back at a location; resellable units rejoin stock. Staff: their own locations."""
    lines = [(ln.sku, ln.qty, ln.resellable) for ln in body.lines]
    scope = principal().scope()
    returned = transaction(
        session_factory(),
        lambda s: orders.record_return(
            s, path.id, location=body.location, lines=lines, external_ref=body.external_ref, scope=scope
        ),
    )
    return respond(OrderOut, returned)


def _transition(fid: int, target: Status) -> ApiResult:
    scope = principal().scope()
    return respond(
        FulfilmentOut,
        transaction(session_factory(), lambda s: orders.transition(s, fid, target, scope=scope)),
    )


@bp.get("/fulfilments/<int:id>", responses={200: FulfilmentOut, **READ_PROBLEMS})
@roles("ops", "staff")
def get_fulfilment(path: FulfilmentPath) -> ApiResult:
    """One fulfilment with its lines."""
    with read_only(session_factory()) as session:
        return respond(FulfilmentOut, orders.get_fulfilment(session, path.id, scope=principal().scope()))


@bp.post("/fulfilments/<int:id>/pick", responses={200: FulfilmentOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def pick(path: FulfilmentPath) -> ApiResult:
    """Start picking (allocated -> picking)."""
    return _transition(path.id, Status.PICKING)


@bp.post("/fulfilments/<int:id>/ship", responses={200: FulfilmentOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def ship(path: FulfilmentPath) -> ApiResult:
    """Hand to the carrier (picking -> shipped): reserved units leave on_hand."""
    return _transition(path.id, Status.SHIPPED)


@bp.post("/fulfilments/<int:id>/receive", responses={200: FulfilmentOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def receive(path: FulfilmentPath) -> ApiResult:
    """A transfer arrived at its pickup store (shipped -> received): reserved there for the customer."""
    return _transition(path.id, Status.RECEIVED)


@bp.post("/fulfilments/<int:id>/cancel", responses={200: FulfilmentOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def cancel_fulfilment(path: FulfilmentPath) -> ApiResult:
    """Cancel one open fulfilment; its reservation is released."""
    return _transition(path.id, Status.CANCELLED)
