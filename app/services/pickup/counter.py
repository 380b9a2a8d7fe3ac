"""What staff do at the counter: mark a pickup ready (issuing its code), hand it over against the
code (whole or in part), and report a line not found. Every step is ledger movements or none."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import events as ev
from app.domain import fulfilment as lifecycle
from app.domain import fulfilment_lines as units
from app.domain import pickup as rules
from app.domain.access import Scope
from app.domain.errors import DomainError, InvalidInput
from app.domain.fulfilment import Status
from app.domain.ledger import Deltas, Kind
from app.models import Fulfilment, FulfilmentLine, Location, Order, Sku
from app.services import events, shortages
from app.services.ledger import Leg
from app.services.orders.commands import Policy
from app.services.orders.lifecycle import (
    add_cancelled,
    move,
    refresh_order_status,
    refuse_while_awaiting,
    transition,
)
from app.services.orders.rows import (
    fulfilment_event,
    give_back,
    locked_fulfilment,
    locked_lines,
    order_of,
    order_row,
)
from app.services.pickup import promise, queue
from app.services.pickup.queue import PickupView

NOT_FOUND_REASONS = ("not_found", "damaged")


@dataclass(frozen=True)
class CounterRules:
    """The counter's configured limits and the key pickup codes are hashed with."""

    code_key: bytes
    max_tries: int
    lock_minutes: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CounterRules:
        # A key of its own, derived from the app's secret: a pickup code hash is useless without it.
        key = hashlib.sha256(b"omnistock pickup codes\0" + str(config["SECRET_KEY"]).encode()).digest()
        return cls(key, int(config["PICKUP_MAX_TRIES"]), int(config["PICKUP_LOCK_MINUTES"]))


@dataclass(frozen=True)
class Ready:
    """A pickup just marked ready: the code goes to the customer (it is stored only hashed)."""

    pickup: PickupView
    code: str
    barcode: str


def _lines_payload(lines: list[FulfilmentLine], codes: Mapping[int, str], qty_of: str) -> list[dict[str, Any]]:
    return [{"sku": codes[ln.sku_id], "qty": getattr(ln, qty_of)} for ln in lines if getattr(ln, qty_of)]


def _sku_codes(session: Session, ids: list[int]) -> dict[int, str]:
    return dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(ids))).tuples().all()) if ids else {}


def mark_ready(
    session: Session, fid: int, counter: CounterRules, now: datetime, *, scope: Scope | None = None
) -> Ready:
    """Picked and waiting at the counter: issue the pickup code and start the hold deadline."""
    code = rules.new_code()

    def issue(session: Session, f: Fulfilment, lines: list[FulfilmentLine], now: datetime) -> dict[str, Any]:
        loc = session.get_one(Location, f.location_id)
        order = session.get_one(Order, f.order_id)
        f.code_hash = rules.code_digest(counter.code_key, f.id, code)
        f.code_tries, f.locked_until, f.reminded_at = 0, None, None
        f.ready_at = now
        f.hold_until = rules.hold_deadline(now, loc.pickup_hold_hours)
        # What a notification needs without calling back.
        return {"customer_ref": order.customer_ref, "customer_name": order.customer_name, "location": loc.code,
                "location_name": loc.name, "code": code, "barcode": rules.barcode_payload(f.id, code),
                "hold_until": f.hold_until.isoformat(),
                "lines": _lines_payload(lines, _sku_codes(session, [ln.sku_id for ln in lines]), "reserved")}  # fmt: skip

    transition(session, fid, Status.READY_FOR_PICKUP, scope=scope, kind="pickup", work=issue, now=now)
    return Ready(queue.pickup(session, fid, now, max_tries=counter.max_tries), code, rules.barcode_payload(fid, code))


def start_picking(
    session: Session, fid: int, counter: CounterRules, now: datetime, *, scope: Scope | None = None
) -> PickupView:
    """Staff took the pick list: allocated -> picking."""
    transition(session, fid, Status.PICKING, scope=scope, kind="pickup", now=now)
    return queue.pickup(session, fid, now, max_tries=counter.max_tries)


@dataclass(frozen=True)
class Handover:
    """The outcome of a hand-over attempt: the collected pickup, or why it was refused. A refusal
    still commits (the wrong try counts), so the caller raises it after the transaction."""

    pickup: PickupView | None
    refused: DomainError | None = None


def collect(
    session: Session, fid: int, code: str, counter: CounterRules, now: datetime, *,
    take: Mapping[str, int] | None = None, scope: Scope | None = None,
) -> Handover:  # fmt: skip
    """Hand a ready pickup over against its code (typed, or the scanned pickup barcode); with
    `take`, only those units (per SKU) leave and the rest go back to available stock."""
    order_row(session, order_of(session, fid), lock=True)
    f = locked_fulfilment(session, fid)
    if scope is not None:
        scope.require(f.location_id)
    if f.type != "pickup":
        raise lifecycle.InvalidTransition(f"fulfilment {fid} is a {f.type}, not a pickup", type=f.type)
    lifecycle.check_transition(f.type, f.status, Status.COLLECTED)
    if rules.is_locked(f.locked_until, now):
        return Handover(None, _locked(f))
    if not rules.code_matches(counter.code_key, f.id, _code_of(code, fid), f.code_hash):
        return Handover(None, _wrong_try(session, f, counter, now))
    lines = locked_lines(session, fid)
    refuse_while_awaiting(session, lines)
    codes = _sku_codes(session, [ln.sku_id for ln in lines])
    wanted = _taken(take, lines, codes)
    legs: list[Leg] = []
    left: dict[int, int] = {}
    for ln in lines:
        qty = wanted.get(ln.sku_id, ln.reserved)
        rest = ln.reserved - qty
        if rest:
            units.cancel_reserved(ln, rest)
            left[ln.sku_id] = rest
            legs += give_back(f, ln.sku_id, rest, reason="not_collected")
        handed = units.hand_over(ln)
        if handed:
            legs.append(Leg(Kind.FULFILMENT, ln.sku_id, f.location_id, handed, Deltas(on_hand=-handed, reserved=-handed),
                            order_id=f.order_id, fulfilment_id=f.id))  # fmt: skip
    if not any(ln.done for ln in lines):
        raise InvalidInput("take at least one unit, or cancel the pickup",
                           [{"field": "lines", "message": "nothing would be handed over"}])  # fmt: skip
    add_cancelled(session, f.order_id, left)
    f.status, f.updated_at, f.collected_at = Status.COLLECTED.value, now, now
    f.code_hash = None  # a code is good for one hand-over
    move(session, legs, now)
    extra: dict[str, Any] = {"location": _code_of_location(session, f.location_id),
                             "lines": _lines_payload(lines, codes, "done")}  # fmt: skip
    if left:
        extra["not_collected"] = [{"sku": codes[s], "qty": q} for s, q in sorted(left.items())]
    events.emit(session, [fulfilment_event(f, "fulfilment.collected", **extra)], now)
    session.flush()
    refresh_order_status(session, f.order_id, now)
    return Handover(queue.pickup(session, fid, now, max_tries=counter.max_tries))


def _code_of(raw: str, fid: int) -> str:
    """A scanned pickup barcode carries its code; it counts only for its own pickup."""
    scanned = rules.parse_scan(raw)
    if scanned is not None and scanned.code is not None:
        return scanned.code if scanned.fulfilment_id == fid else ""
    return rules.normalise_code(raw)


def _code_of_location(session: Session, location_id: int) -> str:
    return session.scalar(select(Location.code).where(Location.id == location_id)) or ""


def _locked(f: Fulfilment) -> DomainError:
    until = f.locked_until.isoformat() if f.locked_until else None
    return rules.PickupLocked(
        "too many wrong codes: this pickup is locked for now; check the customer's confirmation and try later",
        locked_until=until,
    )


def _wrong_try(session: Session, f: Fulfilment, counter: CounterRules, now: datetime) -> DomainError:
    outcome = rules.wrong_try(f.code_tries, now, counter.max_tries, counter.lock_minutes)
    f.code_tries, f.updated_at = outcome.tries, now
    if outcome.locked_until is not None:
        f.locked_until = outcome.locked_until
        events.emit(session, [fulfilment_event(f, "fulfilment.pickup_locked", location=_code_of_location(session, f.location_id),
                                               locked_until=f.locked_until.isoformat())], now)  # fmt: skip
        return _locked(f)
    left = counter.max_tries - outcome.tries
    return rules.PickupCodeWrong(
        f"that is not this pickup's code; {left} {'try' if left == 1 else 'tries'} left before it locks",
        errors=[{"field": "code", "message": "wrong pickup code"}], tries_left=left,
    )


def _taken(take: Mapping[str, int] | None, lines: list[FulfilmentLine], codes: dict[int, str]) -> dict[int, int]:
    """Units the customer takes per line (all of it when not said); names the line at fault."""
    if take is None:
        return {}
    by_code = {codes[ln.sku_id]: ln for ln in lines}
    out: dict[int, int] = {}
    errors = []
    for i, (sku, qty) in enumerate(take.items()):
        ln = by_code.get(sku)
        if ln is None:
            errors.append({"field": f"lines[{i}].sku", "message": f"{sku} is not in this pickup"})
        elif not 0 <= qty <= ln.reserved:
            errors.append({"field": f"lines[{i}].qty", "message": f"0 to {ln.reserved} of {sku} can be taken"})
        else:
            out[ln.sku_id] = qty
    if errors:
        raise InvalidInput("those lines cannot be handed over", errors)
    # Lines the request does not name are not taken (a partial pickup names what leaves).
    return {ln.sku_id: out.get(ln.sku_id, 0) for ln in lines}


@dataclass(frozen=True)
class NotFoundOutcome:
    pickup: PickupView
    rerouted_to: str | None
    cancelled: int


def not_found(
    session: Session, fid: int, sku: str, qty: int, reason: str, policy: Policy, counter: CounterRules,
    now: datetime, *,
    note: str | None = None, scope: Scope | None = None,
) -> NotFoundOutcome:  # fmt: skip
    """Staff cannot find (or found damaged) units of a line: they are written off here, and the
    line is re-routed to another location or cancelled, as the store's policy says."""
    where = session.get(Fulfilment, fid)
    sku_id = session.scalar(select(Sku.id).where(Sku.code == sku))
    if where is not None and sku_id is not None:
        # Others' promises of this SKU here rest on the same shelf count: lock those orders (ours
        # among them) in id order first, as every outside fact does.
        shortages.lock_promises(session, [(sku_id, where.location_id)])
    order = order_row(session, order_of(session, fid), lock=True)
    f = locked_fulfilment(session, fid)
    if scope is not None:
        scope.require(f.location_id)
    if f.type != "pickup" or not lifecycle.is_open(f.status):
        raise lifecycle.InvalidTransition(f"fulfilment {fid} is not an open pickup", status=f.status, type=f.type)
    lines = locked_lines(session, fid)
    line = next((ln for ln in lines if ln.sku_id == sku_id), None)
    if line is None:
        raise InvalidInput("that SKU is not in this pickup", [{"field": "sku", "message": f"{sku} is not in this pickup"}])
    if qty > line.reserved:
        raise InvalidInput("that is more than this pickup holds here", [{"field": "qty", "message": f"at most {line.reserved} of {sku} are held here"}])  # fmt: skip
    loc = session.get_one(Location, f.location_id)
    key = (line.sku_id, f.location_id)
    move(session, [Leg(Kind.ADJUSTMENT, line.sku_id, f.location_id, -qty, Deltas(on_hand=-qty), reason=reason,
                       order_id=f.order_id, fulfilment_id=f.id, note=note)], now)  # fmt: skip
    rerouted = shortages.reroute(session, f, line, qty, policy, now) if loc.not_found_policy == "reroute" else None
    cancelled = 0
    if rerouted is None:
        cancelled = units.cancel_reserved(line, qty)
        move(session, give_back(f, line.sku_id, cancelled, reason=reason), now)
        add_cancelled(session, f.order_id, {line.sku_id: cancelled})
        events.emit(session, [ev.lines_cancelled(order.id, [(sku, cancelled)])], now)
    else:
        promise.refresh(session, f, now)
    events.emit(session, [fulfilment_event(f, "fulfilment.line_not_found", sku=sku, qty=qty, reason=reason,
                                           rerouted_to=rerouted, cancelled=cancelled,
                                           promised_at=f.promised_at.isoformat() if f.promised_at else None)], now)  # fmt: skip
    if all(units.settled(ln) for ln in lines) and not any(ln.done for ln in lines):
        # Nothing is left to hand over: the pickup ends here.
        f.status, f.updated_at = Status.CANCELLED.value, now
        events.emit(session, [fulfilment_event(f, "fulfilment.cancelled", reason=reason)], now)
    # The write-off may leave others' promises here short as well.
    shortages.handle_shortages(session, [key], policy, now)
    session.flush()
    refresh_order_status(session, f.order_id, now)
    return NotFoundOutcome(queue.pickup(session, fid, now, max_tries=counter.max_tries), rerouted, cancelled)
