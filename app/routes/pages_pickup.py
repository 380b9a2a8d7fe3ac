"""The store pickup screen (/pickup): a store's queue in tabs, one pickup with its actions, a
printable pick list and the scan box. Thin: every action is the pickup API's own service call,
answered with a message on the page (post, redirect, get)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import segno
from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy import select

from app.db import read_only, transaction, utcnow
from app.domain import pickup as rules
from app.domain.errors import DomainError
from app.models import Location
from app.services import orders
from app.services.pickup import counter, queue
from app.web import session_factory
from app.web.auth import principal, roles
from app.web.pages import PageBlueprint, require_signed_in

bp = PageBlueprint("pages_pickup", __name__, url_prefix="/pickup")
bp.before_request(require_signed_in)

TABS = (
    (rules.Tab.TO_PICK, "To pick"),
    (rules.Tab.READY, "Ready and waiting"),
    (rules.Tab.OVERDUE, "Overdue"),
    (rules.Tab.COLLECTED_TODAY, "Collected today"),
)
STATUS_LABELS = {
    "allocated": "To pick", "picking": "Being picked", "ready_for_pickup": "Ready", "collected": "Collected",
    "expired": "Expired (no-show)", "cancelled": "Cancelled",
}  # fmt: skip
_SCANNED = "pickup_scanned"  # session: the code a scanned pickup barcode carried, for its pickup only


def _rules() -> counter.CounterRules:
    return counter.CounterRules.from_config(current_app.config)


def _stores() -> list[str]:
    who = principal()
    if who.role == "staff":
        return sorted(who.location_codes)
    with read_only(session_factory()) as s:
        return list(s.scalars(select(Location.code).where(Location.pickup).order_by(Location.code)))


@bp.app_template_filter("store_time")
def store_time(value: datetime | None, tz: str = "UTC") -> str:
    """A time as the counter reads it: today's times as 14:05, others with the day."""
    if value is None:
        return "—"
    local, now = value.astimezone(ZoneInfo(tz)), utcnow().astimezone(ZoneInfo(tz))
    return local.strftime("%H:%M") if local.date() == now.date() else local.strftime("%a %d %b %H:%M")


@bp.app_template_filter("time_left")
def time_left(value: datetime | None) -> str:
    """How long until (or since) a deadline, in words a busy counter reads at a glance."""
    if value is None:
        return ""
    seconds = int((value - utcnow()).total_seconds())
    minutes = abs(seconds) // 60
    text = f"{minutes // 1440} d {minutes % 1440 // 60} h" if minutes >= 1440 else (
        f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min")  # fmt: skip
    return f"{text} left" if seconds >= 0 else f"{text} overdue"


def _qr(payload: str) -> Markup:
    svg = segno.make(payload, error="m").svg_inline(scale=5, title="Pickup code " + payload, border=2, omitsize=True)
    return Markup(svg)  # noqa: S704 (segno's own SVG of our own payload)


@bp.get("/")
@roles("staff", "ops")
def index() -> ResponseReturnValue:
    """Staff go to their store's queue; someone with several stores (or ops) picks one."""
    stores = _stores()
    if len(stores) == 1:
        return redirect(url_for(".store_queue", store=stores[0]))
    return render_template("pickup/stores.html", stores=stores)


@bp.get("/<store>")
@roles("staff", "ops")
def store_queue(store: str) -> ResponseReturnValue:
    """One tab of a store's queue, each tab with its count."""
    try:
        tab = rules.Tab(request.args.get("tab", rules.Tab.TO_PICK.value))
    except ValueError:
        abort(404)
    with read_only(session_factory()) as s:
        loc = queue.store_of(s, store, principal().scope())
        view = queue.queue(s, loc, tab, utcnow(), scope=principal().scope(), max_tries=_rules().max_tries)
    template = "pickup/_queue.html" if request.headers.get("X-Refresh") == "queue" else "pickup/queue.html"
    return render_template(template, view=view, store=loc, tabs=TABS, tab=tab, stores=_stores(),
                           labels=STATUS_LABELS, refresh_s=int(current_app.config["PICKUP_REFRESH_S"]),
                           updated=utcnow())  # fmt: skip


@bp.get("/<store>/scan")
@roles("staff", "ops")
def scan(store: str) -> ResponseReturnValue:
    """What the scanner read: open that order's pickup here (a pickup barcode also fills in its code)."""
    raw = request.args.get("q", "")
    try:
        with read_only(session_factory()) as s:
            queue.store_of(s, store, principal().scope())
            fid = queue.find(s, raw, scope=principal().scope())
            found = queue.pickup(s, fid, utcnow(), scope=principal().scope())
    except DomainError as refused:
        flash(f"Nothing found for “{raw.strip()[:64]}”: {refused.message}.", "error")
        return redirect(url_for(".store_queue", store=store))
    scanned = rules.parse_scan(raw)
    if scanned is not None and scanned.code is not None:
        session[_SCANNED] = {"id": fid, "code": scanned.code}
    return redirect(url_for(".detail", store=found.location, fid=fid))


@bp.get("/<store>/pick-list")
@roles("staff", "ops")
def pick_list(store: str) -> ResponseReturnValue:
    """A printable pick list: one pickup (?id=) or everything still to pick, by bin."""
    now = utcnow()
    with read_only(session_factory()) as s:
        loc = queue.store_of(s, store, principal().scope())
        if request.args.get("id", "").isdigit():
            items = [queue.pickup(s, int(request.args["id"]), now, scope=principal().scope())]
            if items[0].location != loc.code:
                abort(404)
        else:
            items = list(queue.queue(s, store, rules.Tab.TO_PICK, now, scope=principal().scope(), limit=500).items)
            items += queue.queue(s, store, rules.Tab.OVERDUE, now, scope=principal().scope(), limit=500).items
            items = [p for p in items if p.status in ("allocated", "picking")]
    return render_template("pickup/pick_list.html", store=loc, items=items, printed=now)


@bp.get("/<store>/<int:fid>")
@roles("staff", "ops")
def detail(store: str, fid: int) -> ResponseReturnValue:
    """One pickup: its lines and bins, the customer, its times, and what can be done next."""
    with read_only(session_factory()) as s:
        loc = queue.store_of(s, store, principal().scope())
        found = queue.pickup(s, fid, utcnow(), scope=principal().scope(), max_tries=_rules().max_tries)
    if found.location != loc.code:
        abort(404)
    scanned = session.get(_SCANNED) or {}
    issued = session.pop("pickup_issued", None)
    return render_template(
        "pickup/detail.html", p=found, store=loc, labels=STATUS_LABELS,
        scanned_code=scanned.get("code") if scanned.get("id") == fid else "",
        issued=issued if issued and issued.get("id") == fid else None,
        qr=_qr(issued["barcode"]) if issued and issued.get("id") == fid else None,
    )  # fmt: skip


def _act(store: str, fid: int, work: Any, done: str | Callable[[Any], str]) -> ResponseReturnValue:
    """Run one counter action in one transaction; its outcome is a message on the pickup's page."""
    try:
        result = transaction(session_factory(), work)
    except DomainError as refused:
        flash(_said(refused), "error")
        return redirect(url_for(".detail", store=store, fid=fid), 303)
    refusal = getattr(result, "refused", None)
    if refusal is not None:
        flash(_said(refusal), "error")
    else:
        flash(done if isinstance(done, str) else done(result), "success")
    return redirect(url_for(".detail", store=store, fid=fid), 303)


def _said(refused: DomainError) -> str:
    """A refusal in a sentence for the counter, with the field at fault when there is one."""
    text = refused.message[:1].upper() + refused.message[1:]
    faults = [e["message"] for e in refused.details.get("errors", []) if e.get("message") not in text]
    return " ".join([text.rstrip(".") + ".", *[f[:1].upper() + f[1:] + "." for f in faults]])


@bp.post("/<store>/<int:fid>/pick")
@roles("staff", "ops")
def start_picking(store: str, fid: int) -> ResponseReturnValue:
    scope, rules_ = principal().scope(), _rules()
    return _act(store, fid, lambda s: counter.start_picking(s, fid, rules_, utcnow(), scope=scope),
                "Picking started. Print the pick list or pick from this page.")  # fmt: skip


@bp.post("/<store>/<int:fid>/ready")
@roles("staff", "ops")
def mark_ready(store: str, fid: int) -> ResponseReturnValue:
    scope, rules_ = principal().scope(), _rules()
    try:
        ready = transaction(session_factory(), lambda s: counter.mark_ready(s, fid, rules_, utcnow(), scope=scope))
    except DomainError as refused:
        flash(_said(refused), "error")
        return redirect(url_for(".detail", store=store, fid=fid), 303)
    # Shown once, on the next page only: the code is kept nowhere but in its hash.
    session["pickup_issued"] = {"id": fid, "code": ready.code, "barcode": ready.barcode}
    flash(f"Ready for pickup. The customer has been sent pickup code {ready.code}; "
          f"it is held until {store_time(ready.pickup.hold_until)}.", "success")  # fmt: skip
    return redirect(url_for(".detail", store=store, fid=fid), 303)


@bp.post("/<store>/<int:fid>/collect")
@roles("staff", "ops")
def collect(store: str, fid: int) -> ResponseReturnValue:
    scope, rules_ = principal().scope(), _rules()
    code = request.form.get("code", "").strip()
    if not code:
        flash("Type the customer's pickup code, or scan their pickup barcode.", "error")
        return redirect(url_for(".detail", store=store, fid=fid), 303)
    take = _taken(request.form) if request.form.get("partial") == "1" else None
    if take is None and request.form.get("partial") == "1":
        flash("Each quantity taken must be a whole number.", "error")
        return redirect(url_for(".detail", store=store, fid=fid), 303)
    session.pop(_SCANNED, None)
    return _act(store, fid, lambda s: counter.collect(s, fid, code[:64], rules_, utcnow(), take=take, scope=scope),
                "Handed over. The order is collected.")  # fmt: skip


def _taken(form: Any) -> dict[str, int] | None:
    take: dict[str, int] = {}
    for key, value in form.items():
        if key.startswith("take:"):
            if not value.strip().isdigit():
                return None
            take[key[5:]] = int(value)
    return take


@bp.post("/<store>/<int:fid>/not-found")
@roles("staff", "ops")
def not_found(store: str, fid: int) -> ResponseReturnValue:
    scope, rules_ = principal().scope(), _rules()
    policy = orders.policy_from_config(current_app.config)
    sku, qty, reason = request.form.get("sku", ""), request.form.get("qty", "1"), request.form.get("reason", "not_found")
    if not qty.isdigit() or not 1 <= int(qty) <= 10_000 or reason not in counter.NOT_FOUND_REASONS:
        flash("Choose the item, a quantity of at least 1, and a reason.", "error")
        return redirect(url_for(".detail", store=store, fid=fid), 303)
    note = request.form.get("note", "").strip()[:500] or None

    def work(s: Any) -> counter.NotFoundOutcome:
        return counter.not_found(s, fid, sku[:64], int(qty), reason, policy, rules_, utcnow(), note=note, scope=scope)

    def said(out: counter.NotFoundOutcome) -> str:
        if out.rerouted_to:
            return (f"Written off {qty} of {sku}. It now comes from {out.rerouted_to}; "
                    f"the pickup is promised for {store_time(out.pickup.promised_at)}.")  # fmt: skip
        ended = " Nothing is left, so the pickup is cancelled." if out.pickup.status == "cancelled" else ""
        return f"Written off {qty} of {sku}; no other location has it, so it is cancelled from the order.{ended}"

    return _act(store, fid, work, said)
