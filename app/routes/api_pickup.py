"""Click-and-collect API, for stores that run the counter from their own app: the same queue,
rules and answers as the /pickup screen. Staff act only at their own stores."""

from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, transaction, utcnow
from app.domain import pickup as rules
from app.schemas import LocationPath
from app.schemas.pickup import (
    BinsIn,
    BinsOut,
    CollectIn,
    LookupQuery,
    NotFoundIn,
    NotFoundOut,
    PickupOut,
    PickupPath,
    QueueOut,
    QueueQuery,
    ReadyOut,
)
from app.services import orders
from app.services.pickup import bins, counter, queue
from app.web import session_factory
from app.web.auth import principal, roles
from app.web.openapi import API_PREFIX, SECURITY
from app.web.pagination import page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond

bp = APIBlueprint(
    "api_pickup", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="pickup")], abp_security=SECURITY
)


def _rules() -> counter.CounterRules:
    return counter.CounterRules.from_config(current_app.config)


@bp.get("/locations/<code>/pickups", responses={200: QueueOut, **READ_PROBLEMS})
@roles("ops", "staff")
def pickup_queue(path: LocationPath, query: QueueQuery) -> ApiResult:
    """A store's pickups in one counter tab (to_pick, ready, overdue, collected_today), with every tab's count."""
    with read_only(session_factory()) as session:
        view = queue.queue(session, path.code, rules.Tab(query.tab), utcnow(), scope=principal().scope(),
                           max_tries=_rules().max_tries, limit=page_limit(query.limit))  # fmt: skip
    return respond(QueueOut, view)


@bp.get("/pickups/<int:id>", responses={200: PickupOut, **READ_PROBLEMS})
@roles("ops", "staff")
def get_pickup(path: PickupPath) -> ApiResult:
    """One pickup with its lines, bins, customer, promise, deadline and lock."""
    with read_only(session_factory()) as session:
        return respond(PickupOut, queue.pickup(session, path.id, utcnow(), scope=principal().scope(),
                                               max_tries=_rules().max_tries))  # fmt: skip


@bp.get("/pickups/lookup", responses={200: PickupOut, **READ_PROBLEMS})
@roles("ops", "staff")
def lookup_pickup(query: LookupQuery) -> ApiResult:
    """The pickup a barcode scanner read: an order number or a pickup barcode (404 if none at your stores)."""
    scope = principal().scope()
    with read_only(session_factory()) as session:
        fid = queue.find(session, query.scan, scope=scope)
        return respond(PickupOut, queue.pickup(session, fid, utcnow(), scope=scope, max_tries=_rules().max_tries))


@bp.post("/pickups/<int:id>/pick", responses={200: PickupOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def start_picking(path: PickupPath) -> ApiResult:
    """Start picking (allocated -> picking)."""
    scope, counter_rules = principal().scope(), _rules()
    return respond(PickupOut, transaction(
        session_factory(), lambda s: counter.start_picking(s, path.id, counter_rules, utcnow(), scope=scope)
    ))  # fmt: skip


@bp.post("/pickups/<int:id>/ready", responses={200: ReadyOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def mark_ready(path: PickupPath) -> ApiResult:
    """Picked and at the counter (picking -> ready_for_pickup): issues the pickup code and starts the hold.

    The code is in this answer and in the fulfilment.ready_for_pickup event, and nowhere else.
    """
    scope, counter_rules = principal().scope(), _rules()
    return respond(ReadyOut, transaction(
        session_factory(), lambda s: counter.mark_ready(s, path.id, counter_rules, utcnow(), scope=scope)
    ))  # fmt: skip


@bp.post("/pickups/<int:id>/collect", responses={200: PickupOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def collect(path: PickupPath, body: CollectIn) -> ApiResult:
    """Hand over against the pickup code (ready_for_pickup -> collected); `lines` for a partial pickup.

    A wrong code is 422 wrong_pickup_code with tries_left; after too many the pickup is locked for a
    while (409 pickup_locked with locked_until) and the store gets a fulfilment.pickup_locked event.
    Units not taken go back to available stock.
    """
    scope, counter_rules = principal().scope(), _rules()
    take = {ln.sku: ln.qty for ln in body.lines} if body.lines else None
    outcome = transaction(
        session_factory(),
        lambda s: counter.collect(s, path.id, body.code, counter_rules, utcnow(), take=take, scope=scope),
    )
    if outcome.refused is not None:
        raise outcome.refused  # after the commit: the wrong try is counted
    return respond(PickupOut, outcome.pickup)


@bp.post("/pickups/<int:id>/not-found", responses={200: NotFoundOut, **WRITE_PROBLEMS})
@roles("ops", "staff")
def report_not_found(path: PickupPath, body: NotFoundIn) -> ApiResult:
    """Units of a line cannot be found (or are damaged): written off, then re-routed or cancelled per the store's policy."""
    scope, counter_rules = principal().scope(), _rules()
    policy = orders.policy_from_config(current_app.config)
    return respond(NotFoundOut, transaction(session_factory(), lambda s: counter.not_found(
        s, path.id, body.sku, body.qty, body.reason, policy, counter_rules, utcnow(), note=body.note, scope=scope,
    )))  # fmt: skip


@bp.put("/locations/<code>/bins", responses={200: BinsOut, **WRITE_PROBLEMS})
@roles("ops")
def set_bins(path: LocationPath, body: BinsIn) -> ApiResult:
    """Where SKUs are kept in a store (bin or shelf), shown on the pick list; all or nothing."""
    rows = [(b.sku, b.bin) for b in body.bins]
    updated = transaction(session_factory(), lambda s: bins.set_bins(s, path.code, rows))
    return respond(BinsOut, bins.BinsResult(path.code, updated))
