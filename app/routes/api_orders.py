"""Orders API: place (idempotent), quote, read, cancel, return; fulfilment life cycle."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction
from app.domain.errors import DomainError, Forbidden, InvalidInput
from app.domain.fulfilment import Status
from app.observability import ORDER_ATTEMPTS, ORDERS
from app.routes.common import (
    API_PREFIX,
    SECURITY,
    ApiResult,
    cursor_id,
    documented_headers,
    encode_cursor,
    page_limit,
    principal,
    roles,
    session_factory,
)
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
    Problem,
    ReturnIn,
    RoutingOut,
)
from app.services import orders

bp = APIBlueprint(
    "api_orders", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="orders")], abp_security=SECURITY
)
ERRORS: dict[int | str, Any] = {401: Problem, 403: Problem, 404: Problem, 409: Problem, 422: Problem}


def _command(body: OrderIn, key: str | None) -> orders.PlaceOrder:
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
        allow_split=body.allow_split,
        allow_partial=body.allow_partial,
        idempotency_key=key,
    )


def _policy() -> orders.Policy:
    return orders.policy_from_config(current_app.config)  # type: ignore[arg-type]


_ROUTED_REFUSALS = frozenset({"insufficient_stock", "pickup_location_unavailable", "idempotency_conflict"})


@bp.post("/orders", responses={201: OrderOut, 200: OrderOut, **ERRORS})
@roles("storefront", "ops")
@documented_headers(**{"Idempotency-Key": "Retries with the same key return the same order (max 200 chars)"})
def place_order(body: OrderIn) -> ApiResult:
    """Route and reserve an order; the same Idempotency-Key or external_id returns the same order.

    201 for a new order, 200 for a replay. 409 insufficient_stock lists alternatives and the
    routing explanation; 409 idempotency_conflict when the key came with a different body.
    """
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise InvalidInput(
            "Idempotency-Key too long", [{"field": "Idempotency-Key", "message": "at most 200 characters"}]
        )
    cmd = _command(body, key)
    policy = _policy()
    attempts = int(current_app.config["ROUTING_MAX_ATTEMPTS"]) + 1
    tries = 0

    def work(s: Any) -> orders.Placed:
        nonlocal tries
        tries += 1
        return orders.place_order(s, cmd, policy)

    try:
        try:
            placed = transaction(session_factory(), work, attempts=attempts)
        except orders.LostRace:
            with read_only(session_factory()) as session:
                orders.refuse_after_lost_races(session, cmd, policy)
    except DomainError as refused:
        # Only refusals after routing know the channel exists; before that it is the caller's
        # text, never a label value (each distinct value would be a new series).
        known = refused.code in _ROUTED_REFUSALS
        ORDERS.labels(body.channel if known else "-", refused.code).inc()
        raise
    finally:
        ORDER_ATTEMPTS.observe(tries)
    ORDERS.labels(body.channel, "replayed" if placed.replayed else "placed").inc()
    return placed.order, 200 if placed.replayed else 201


@bp.post("/routing/quote", responses={200: RoutingOut, **ERRORS})
@roles("storefront", "ops")
def quote(body: OrderIn) -> ApiResult:
    """The routing decision placing this order would take now; reserves nothing."""
    with read_only(session_factory()) as session:
        return orders.quote(session, _command(body, None), _policy())


@bp.get("/orders/<int:id>", responses={200: OrderOut, **ERRORS})
@roles("storefront", "ops", "staff")
def get_order(path: OrderPath) -> ApiResult:
    """One order with its fulfilments and routing explanation."""
    with read_only(session_factory()) as session:
        order = orders.get_order(session, path.id)
    _check_staff_scope(order)
    return order


def _check_staff_scope(order: dict[str, Any]) -> None:
    who = principal()
    if who.role == "staff" and not set(who.location_codes) & {f["location"] for f in order["fulfilments"]}:
        raise Forbidden("this order has nothing at your locations")


@bp.get("/orders", responses={200: OrderPage, **ERRORS})
@roles("storefront", "ops", "staff")
def list_orders(query: OrderQuery) -> ApiResult:
    """Orders newest first, filtered by status, location, channel, customer and dates; keyset-paged."""
    return _order_page(query, query.customer_ref, principal().scope())


@bp.get("/customers/<customer_ref>/orders", responses={200: OrderPage, **ERRORS})
@roles("storefront", "ops")
def customer_orders(path: CustomerPath, query: CustomerOrderQuery) -> ApiResult:
    """One customer's orders from every channel, newest first, with the same filters as /orders."""
    return _order_page(query, path.customer_ref, None)


def _order_page(
    query: CustomerOrderQuery, customer_ref: str | None, scope: frozenset[int] | None
) -> ApiResult:
    flt = orders.OrderFilter(
        status=query.status, location=query.location, channel=query.channel, customer_ref=customer_ref,
        created_from=query.created_from, created_to=query.created_to, allowed_locations=scope,
    )  # fmt: skip
    before = cursor_id(query.cursor)
    with read_only(session_factory()) as session:
        items, nxt = orders.list_orders(session, flt, before_id=before, limit=page_limit(query.limit))
    return {"items": items, "next_cursor": encode_cursor(nxt) if nxt else None}


@bp.post("/orders/<int:id>/cancel", responses={200: OrderOut, **ERRORS})
@roles("storefront", "ops")
def cancel_order(path: OrderPath, body: CancelIn) -> ApiResult:
    """Cancel the whole order, or some units of some lines; released stock is available again."""
    lines = [(ln.sku, ln.qty) for ln in body.lines] if body.lines else None
    return transaction(session_factory(), lambda s: orders.cancel_order(s, path.id, lines))


@bp.post("/orders/<int:id>/returns", responses={200: OrderOut, **ERRORS})
@roles("ops", "staff")
def record_return(path: OrderPath, body: ReturnIn) -> ApiResult:
    """Take delivered units back at a location; resellable units rejoin stock. Staff: their own locations."""
    lines = [(ln.sku, ln.qty, ln.resellable) for ln in body.lines]
    scope = principal().scope()
    return transaction(
        session_factory(),
        lambda s: orders.record_return(
            s, path.id, location=body.location, lines=lines, external_ref=body.external_ref, scope=scope
        ),
    )


def _transition(fid: int, target: Status) -> ApiResult:
    scope = principal().scope()
    return transaction(session_factory(), lambda s: orders.transition(s, fid, target, scope=scope))


@bp.get("/fulfilments/<int:id>", responses={200: FulfilmentOut, **ERRORS})
@roles("ops", "staff")
def get_fulfilment(path: FulfilmentPath) -> ApiResult:
    """One fulfilment with its lines."""
    with read_only(session_factory()) as session:
        return orders.get_fulfilment(session, path.id, scope=principal().scope())


@bp.post("/fulfilments/<int:id>/pick", responses={200: FulfilmentOut, **ERRORS})
@roles("ops", "staff")
def pick(path: FulfilmentPath) -> ApiResult:
    """Start picking (allocated -> picking)."""
    return _transition(path.id, Status.PICKING)


@bp.post("/fulfilments/<int:id>/ship", responses={200: FulfilmentOut, **ERRORS})
@roles("ops", "staff")
def ship(path: FulfilmentPath) -> ApiResult:
    """Hand to the carrier (picking -> shipped): reserved units leave on_hand."""
    return _transition(path.id, Status.SHIPPED)


@bp.post("/fulfilments/<int:id>/receive", responses={200: FulfilmentOut, **ERRORS})
@roles("ops", "staff")
def receive(path: FulfilmentPath) -> ApiResult:
    """A transfer arrived at its pickup store (shipped -> received): reserved there for the customer."""
    return _transition(path.id, Status.RECEIVED)


@bp.post("/fulfilments/<int:id>/cancel", responses={200: FulfilmentOut, **ERRORS})
@roles("ops", "staff")
def cancel_fulfilment(path: FulfilmentPath) -> ApiResult:
    """Cancel one open fulfilment; its reservation is released."""
    return _transition(path.id, Status.CANCELLED)
