"""Placing an order: route, then write it and reserve its stock in one transaction, idempotently.

`place` is the one order use case that owns its transactions: a reservation race lost to a
concurrent order is retried in a fresh one, and the outcome is counted per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exc
from sqlalchemy.orm import Session, sessionmaker

from app.db import Raw, Retry, read_only, transaction, utcnow
from app.domain import events as ev
from app.domain import routing
from app.domain.errors import DomainError, IdempotencyConflict
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.metrics import ORDER_ATTEMPTS, ORDERS
from app.services import events
from app.services.ledger import MOVEMENT_COLUMNS, Leg, apply_deltas, ensure_levels, movement_rows
from app.services.orders import reservations
from app.services.orders.candidates import (
    _MORE_FULFILMENT_IDS,
    Context,
    _refuse,
    decide,
    refuse_after_lost_races,
)
from app.services.orders.commands import LostRace, PlaceOrder, Policy
from app.services.orders.queries import get_order
from app.services.orders.views import (
    FulfilmentLineView,
    FulfilmentView,
    OrderLineView,
    OrderView,
    delivery_view,
    routing_json,
)

Inserts = list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]]


@dataclass(frozen=True)
class Placed:
    order: OrderView
    replayed: bool


ORDER_COLUMNS = (
    "external_id", "idempotency_key", "request_hash", "channel_id", "customer_ref", "customer_name", "status",
    "delivery_type", "ship_lat", "ship_lon", "ship_postcode", "pickup_location_id", "allow_split",
    "allow_partial", "routing", "created_at", "updated_at",
)  # fmt: skip
ORDER_LINE_COLUMNS = ("order_id", "line_no", "sku_id", "qty", "backordered", "cancelled", "returned")
FULFILMENT_LINE_COLUMNS = ("fulfilment_id", "sku_id", "qty", "reserved", "awaiting", "done", "cancelled")
FULFILMENT_COLUMNS = (
    "order_id", "location_id", "type", "status", "to_location_id", "feeds_fulfilment_id", "at_risk",
    "promised_at", "created_at", "updated_at",
)  # fmt: skip
# Refusals that come after routing, so the channel is known to exist (a metric label may name it).
_ROUTED_REFUSALS = frozenset({"insufficient_stock", "pickup_location_unavailable", "idempotency_conflict"})
_IDEMPOTENCY_CONSTRAINTS = ("uq_orders_channel_id_idempotency_key", "uq_orders_channel_id_external_id")


def place(factory: sessionmaker[Session], cmd: PlaceOrder, policy: Policy, *, attempts: int) -> Placed:
    """Place an order in one transaction, re-routing with fresh stock when a race is lost; once
    `attempts` are spent, refuse as routing on the stock as it stands explains it."""
    tries = 0

    def work(session: Session) -> Placed:
        nonlocal tries
        tries += 1
        return place_order(session, cmd, policy)

    try:
        try:
            placed = transaction(factory, work, attempts=attempts)
        except LostRace:
            with read_only(factory) as session:
                refuse_after_lost_races(session, cmd, policy)
    except DomainError as refused:
        # Before routing the channel is the caller's text, never a label value (each distinct
        # value would be a new series).
        ORDERS.labels(cmd.channel if refused.code in _ROUTED_REFUSALS else "-", refused.code).inc()
        raise
    finally:
        ORDER_ATTEMPTS.observe(tries)
    ORDERS.labels(cmd.channel, "replayed" if placed.replayed else "placed").inc()
    return placed


def place_order(session: Session, cmd: PlaceOrder, policy: Policy, *, now: datetime | None = None) -> Placed:
    """Route and reserve an order in this transaction; the same key returns the same order."""
    try:
        return _place(session, cmd, policy, now or utcnow())
    except exc.IntegrityError as error:
        if _idempotency_clash(error):
            # Another request with this key committed while we routed: run again, and the
            # read at the start finds its order and answers with it.
            raise Retry("an order with this key was placed concurrently") from error
        raise


def _replay(session: Session, prior: tuple[int, str], fingerprint: str) -> Placed:
    prior_id, prior_hash = prior
    if prior_hash != fingerprint:
        raise IdempotencyConflict(
            f"order {prior_id} was placed with this key and a different body", order_id=prior_id
        )
    return Placed(get_order(session, prior_id), replayed=True)


def _idempotency_clash(error: exc.IntegrityError) -> bool:
    """The order insert met another order with the same key (placed concurrently)."""
    name = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    if name is not None:
        return name in _IDEMPOTENCY_CONSTRAINTS
    text = str(error.orig)  # SQLite names the columns instead
    return (
        "orders.channel_id, orders.idempotency_key" in text or "orders.channel_id, orders.external_id" in text
    )


@dataclass
class _Plan:
    """The order as routed: what it writes, row by row, before anything is written."""

    cmd: PlaceOrder
    ctx: Context
    decision: routing.RoutingDecision
    point: tuple[float | None, float | None]
    now: datetime
    fingerprint: str

    def __post_init__(self) -> None:
        self.loc_id = {code: loc.id for code, loc in self.ctx.locations.items()}
        self.backordered = {ln.sku: ln.qty for ln in self.decision.backordered}
        self.status = routing.initial_order_status(self.decision)
        # Pickup first, so its transfers can name it.
        self.allocations = sorted(self.decision.allocations, key=lambda a: (a.type != "pickup", a.location))
        self.wanted: dict[tuple[int, int], int] = {}
        for alloc in self.decision.allocations:
            for ln in alloc.lines:
                key = (self.ctx.sku_ids[ln.sku], self.loc_id[alloc.location])
                self.wanted[key] = self.wanted.get(key, 0) + ln.qty

    def order_row(self) -> tuple[Any, ...]:
        c = self.cmd
        return (
            c.external_id, c.idempotency_key, self.fingerprint, self.ctx.channel_id, c.customer_ref, c.customer_name, self.status,
            c.delivery.type, self.point[0], self.point[1], c.delivery.postcode,
            self.loc_id.get(c.delivery.location or ""), c.allow_split, c.allow_partial,
            routing_json(self.decision), self.now, self.now,
        )  # fmt: skip

    def fulfilment_row(self, a: routing.Allocation, order_id: int, pickup_fid: int | None) -> tuple[Any, ...]:
        feeds = pickup_fid if a.type == "transfer" else None
        return (order_id, self.loc_id[a.location], a.type, Status.ALLOCATED.value,
                self.loc_id.get(a.to_location or ""), feeds, False, self.promised_at(a), self.now, self.now)  # fmt: skip

    def promised_at(self, a: routing.Allocation) -> datetime | None:
        return self.decision.ready_by if a.type == "pickup" else None

    def shown_lines(self, alloc: routing.Allocation) -> list[FulfilmentLineView]:
        """A fulfilment's lines: a pickup shows everything collected there, part of it awaited."""
        here = {ln.sku: ln.qty for ln in alloc.lines}
        shown = alloc.collect_lines if alloc.type == "pickup" and alloc.collect_lines else alloc.lines
        return [FulfilmentLineView(ln.sku, ln.qty, here.get(ln.sku, 0), ln.qty - here.get(ln.sku, 0), 0, 0)
                for ln in shown]  # fmt: skip


def _place(session: Session, cmd: PlaceOrder, policy: Policy, now: datetime) -> Placed:
    fingerprint = cmd.fingerprint()
    ctx, decision, point = decide(session, cmd, policy, now, placing=True)
    if ctx.prior is not None:
        # Also when stock has run out since: a replay gets the order that took the last units.
        return _replay(session, ctx.prior, fingerprint)
    if decision.status == "refused":
        _refuse(decision)
    plan = _Plan(cmd, ctx, decision, point, now, fingerprint)
    raw = Raw.of(session)
    order_id, fids, head = _order_and_fulfilment_rows(raw, plan)
    line_rows, legs = _lines_and_legs(plan, order_id, fids)
    _expect_transfers(session, legs, now)
    evs = [ev.order_created(order_id, cmd.external_id, plan.status, cmd.customer_ref)]
    evs += [ev.fulfilment_allocated(order_id, fid, a.location, a.type, [(ln.sku, ln.qty) for ln in a.lines],
                                    promised_at=plan.promised_at(a))
            for a, fid in zip(plan.allocations, fids, strict=True)]  # fmt: skip
    # The rest of the order goes in one round trip: on PostgreSQL all its rows and the
    # reservation are one statement. Reserving comes last: the row locks it takes are held until
    # commit, so nothing should follow it. Any shortfall (stock or a day's capacity) raises, and
    # the unit of work rolls all of it back.
    inserts: Inserts = [
        *head,
        ("order_lines", ORDER_LINE_COLUMNS, [(order_id, i + 1, ctx.sku_ids[s], q, plan.backordered.get(s, 0), 0, 0)
                                             for i, (s, q) in enumerate(cmd.lines)]),
        ("fulfilment_lines", FULFILMENT_LINE_COLUMNS, line_rows),
        ("movements", MOVEMENT_COLUMNS, movement_rows(legs, now)),
        ("outbox_events", events.OUTBOX_COLUMNS, events.outbox_rows(evs, now)),
    ]  # fmt: skip
    reservations.take_capacity(session, ctx, [plan.loc_id[a.location] for a in plan.allocations if a.type == "ship"])
    if plan.wanted:
        after = reservations.reserve(session, ctx, plan.wanted, now, inserts)
    else:
        after = []
        for table, columns, rows in inserts:
            raw.insert(table, columns, rows)
    levels_after = [
        events.LevelRow(a.sku_id, a.location_id, a.on_hand, a.reserved, a.safety_stock,
                        ctx.location_by_id[a.location_id].default_safety)
        for a in after
    ]  # fmt: skip
    events.stock_transitions(session, {k: Deltas(reserved=q) for k, q in plan.wanted.items()}, now, after=levels_after)
    return Placed(_placed_view(plan, order_id, fids), replayed=False)


def _order_and_fulfilment_rows(raw: Raw, plan: _Plan) -> tuple[int, list[int], Inserts]:
    """The order's and its fulfilments' ids; on PostgreSQL their rows go with the reservation."""
    if plan.ctx.ids is not None:
        # PostgreSQL: ids were drawn with the candidates, so the order and its fulfilments are
        # written in the same single statement as everything else.
        order_id, first_fid = plan.ctx.ids
        fids = [first_fid][: len(plan.allocations)]
        if len(plan.allocations) > 1:
            fids += [int(r[0]) for r in raw.execute(_MORE_FULFILMENT_IDS, [len(plan.allocations) - 1])]
        pickup_fid = fids[0] if plan.allocations and plan.allocations[0].type == "pickup" else None
        rows = [(fid, *plan.fulfilment_row(a, order_id, pickup_fid)) for a, fid in zip(plan.allocations, fids, strict=True)]  # fmt: skip
        return order_id, fids, [
            ("orders", ("id", *ORDER_COLUMNS), [(order_id, *plan.order_row())]),
            ("fulfilments", ("id", *FULFILMENT_COLUMNS), rows),
        ]
    order_id = int(raw.insert("orders", ORDER_COLUMNS, [plan.order_row()], "RETURNING id")[0][0])
    written: list[int] = []
    pickup: int | None = None
    for a in plan.allocations:
        row = plan.fulfilment_row(a, order_id, pickup)
        written.append(int(raw.insert("fulfilments", FULFILMENT_COLUMNS, [row], "RETURNING id")[0][0]))
        if a.type == "pickup":
            pickup = written[-1]
    return order_id, written, []


def _lines_and_legs(plan: _Plan, order_id: int, fids: list[int]) -> tuple[list[tuple[int, ...]], list[Leg]]:
    """Fulfilment line rows and the ledger legs: a reservation per line, and for a transfer the
    units expected at the pickup store."""
    sku_ids, loc_id = plan.ctx.sku_ids, plan.loc_id
    line_rows: list[tuple[int, ...]] = []
    legs: list[Leg] = []
    for alloc, fid in zip(plan.allocations, fids, strict=True):
        for ln in plan.shown_lines(alloc):
            line_rows.append((fid, sku_ids[ln.sku], ln.qty, ln.reserved, ln.awaiting, 0, 0))
        for line in alloc.lines:
            legs.append(Leg(Kind.RESERVATION, sku_ids[line.sku], loc_id[alloc.location], line.qty,
                            Deltas(reserved=line.qty), order_id=order_id, fulfilment_id=fid))  # fmt: skip
            if alloc.type == "transfer" and alloc.to_location:
                legs.append(Leg(Kind.TRANSFER_EXPECTED, sku_ids[line.sku], loc_id[alloc.to_location], line.qty,
                                Deltas(incoming=line.qty), order_id=order_id, fulfilment_id=fid))  # fmt: skip
    return line_rows, legs


def _expect_transfers(session: Session, legs: list[Leg], now: datetime) -> None:
    incoming: dict[tuple[int, int], Deltas] = {}
    for leg in legs:
        if leg.kind is Kind.TRANSFER_EXPECTED:
            incoming[leg.key] = incoming.get(leg.key, Deltas()) + leg.deltas
    if incoming:
        ensure_levels(session, incoming)
        apply_deltas(session, incoming, now)


def _placed_view(plan: _Plan, order_id: int, fids: list[int]) -> OrderView:
    """The order just written, as get_order will read it back (without reading it back)."""
    cmd = plan.cmd
    fulfilments = [
        FulfilmentView(fid, order_id, a.location, a.type, Status.ALLOCATED.value, a.to_location, False,
                       None, None, plan.shown_lines(a), promised_at=plan.promised_at(a))
        for a, fid in zip(plan.allocations, fids, strict=True)
    ]  # fmt: skip
    return OrderView(
        id=order_id, external_id=cmd.external_id, status=plan.status, channel=cmd.channel,
        customer_ref=cmd.customer_ref, customer_name=cmd.customer_name,
        delivery=delivery_view(cmd.delivery.type, plan.point[0], plan.point[1], cmd.delivery.postcode,
                               cmd.delivery.location),
        lines=[OrderLineView(s, q, plan.backordered.get(s, 0), 0, 0) for s, q in cmd.lines],
        fulfilments=fulfilments, routing=plan.decision, created_at=plan.now, updated_at=plan.now,
    )  # fmt: skip
