"""The demo's click-and-collect counter: a staff account per store, bin hints, and pickups in
every state at a few stores, so the pickup screen is alive at first sign-in."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.domain.fulfilment import Status
from app.models import Location, Sku, StockLevel
from app.services import orders, staff
from app.services.orders.lifecycle import transition
from app.services.pickup import bins, counter, expiry

CUSTOMERS = ["Amara Okafor", "Ben Hughes", "Chloé Martin", "Dev Patel", "Ellie Byrne", "Farah Khan",
             "George Li", "Hannah Novak", "Isaac Mensah", "Jess O'Neill", "Kai Tanaka", "Lena Fischer"]  # fmt: skip
DEMO_STORES = 3  # stores that get pickups in every state


@dataclass
class SeededCounter:
    accounts: list[tuple[str, str, str]] = field(default_factory=list)  # username, store, password
    codes: list[tuple[str, int, str]] = field(default_factory=list)  # store, order, code (ready pickups)
    pickups: int = 0


def seed(session: Session, config: Mapping[str, Any], now: datetime | None = None) -> SeededCounter:
    """Staff for every pickup store; pickups in every state at the first DEMO_STORES of them."""
    now = now or utcnow()
    out = SeededCounter()
    stores = list(session.scalars(select(Location).where(Location.pickup, Location.kind == "store").order_by(Location.id)))
    for loc in stores:
        username = loc.code.removeprefix("ST-").lower()
        password = secrets.token_urlsafe(12)
        staff.create_user(session, username=username, display_name=f"{loc.name} counter", password=password,
                          location_codes=[loc.code])  # fmt: skip
        out.accounts.append((username, loc.code, password))
        _bins(session, loc)
    rules = counter.CounterRules.from_config(config)
    policy = orders.policy_from_config(config)
    for n, loc in enumerate(stores[:DEMO_STORES]):
        _store_pickups(session, loc, rules, policy, now, n, out)
    return out


def _bins(session: Session, loc: Location) -> None:
    held = session.execute(
        select(Sku.code).join(StockLevel, StockLevel.sku_id == Sku.id)
        .where(StockLevel.location_id == loc.id, StockLevel.on_hand > 0).order_by(Sku.code)
    ).scalars().all()  # fmt: skip
    # Aisles by product family, shelves in order: what a store's planogram would say.
    families: dict[str, int] = {}
    rows: list[tuple[str, str | None]] = []
    for code in held:
        aisle = families.setdefault(code.split("-")[0], len(families))
        rows.append((code, f"{chr(ord('A') + aisle % 26)}-{len(rows) % 12 + 1:02d}"))
    if rows:
        bins.set_bins(session, loc.code, rows)


def _in_stock(session: Session, loc: Location, enough: int) -> list[str]:
    return list(session.scalars(
        select(Sku.code).join(StockLevel, StockLevel.sku_id == Sku.id)
        .where(StockLevel.location_id == loc.id, StockLevel.on_hand - StockLevel.reserved >= enough + 2)
        .order_by(StockLevel.on_hand.desc(), Sku.code).limit(24)
    ))  # fmt: skip


def _missing_here(session: Session, loc: Location) -> str | None:
    """A SKU the store lacks but the warehouse holds: its pickup needs a transfer."""
    here = select(StockLevel.sku_id).where(StockLevel.location_id == loc.id, StockLevel.on_hand > 0)
    return session.scalar(
        select(Sku.code).join(StockLevel, StockLevel.sku_id == Sku.id).join(Location, Location.id == StockLevel.location_id)
        .where(Location.kind == "warehouse", StockLevel.on_hand > 5, Sku.id.not_in(here)).order_by(Sku.code).limit(1)
    )  # fmt: skip


def _store_pickups(
    session: Session, loc: Location, rules: counter.CounterRules, policy: orders.Policy, now: datetime, n: int,
    out: SeededCounter,
) -> None:  # fmt: skip
    skus = _in_stock(session, loc, 2)
    if len(skus) < 12:
        return
    people = iter(CUSTOMERS[n * 4 :] + CUSTOMERS[: n * 4])
    picks = iter(range(len(skus)))

    def place(lines: list[tuple[str, int]], at: datetime) -> int:
        name = next(people, "Sam Taylor")
        cmd = orders.PlaceOrder(
            channel="web", lines=tuple(lines), delivery=orders.Delivery("pickup", location=loc.code),
            customer_ref=f"demo-{loc.code.lower()}-{out.pickups + 1}", customer_name=name,
        )  # fmt: skip
        placed = orders.place_order(session, cmd, policy, now=at)
        out.pickups += 1
        return next(f.id for f in placed.order.fulfilments if f.type == "pickup")

    def lines(count: int) -> list[tuple[str, int]]:
        return [(skus[next(picks) % len(skus)], 1 + i % 2) for i in range(count)]

    # To pick: two new ones, one awaiting a transfer from the warehouse.
    place(lines(2), now - timedelta(minutes=5))
    place(lines(1), now - timedelta(minutes=2))
    missing = _missing_here(session, loc)
    if missing:
        place([(missing, 1), *lines(1)], now - timedelta(minutes=1))
    # Being picked.
    picking = place(lines(2), now - timedelta(minutes=20))
    counter.start_picking(session, picking, rules, now - timedelta(minutes=10))
    # Overdue: placed this morning and never picked.
    place(lines(1), now - timedelta(hours=3))
    # Ready and waiting: the codes are printed for the demo.
    for hours_ago in (1, 50):  # the second is inside its reminder window
        fid = place(lines(2), now - timedelta(hours=hours_ago, minutes=30))
        counter.start_picking(session, fid, rules, now - timedelta(hours=hours_ago, minutes=10))
        ready = counter.mark_ready(session, fid, rules, now - timedelta(hours=hours_ago))
        out.codes.append((loc.code, ready.pickup.order_id, ready.code))
    # Collected today, whole and in part.
    for partial in (False, True):
        fid = place(lines(2), now - timedelta(hours=2))
        counter.start_picking(session, fid, rules, now - timedelta(hours=2))
        ready = counter.mark_ready(session, fid, rules, now - timedelta(hours=1, minutes=30))
        take = {ready.pickup.lines[0].sku: ready.pickup.lines[0].reserved} if partial else None
        counter.collect(session, fid, ready.code, rules, now - timedelta(minutes=40), take=take)
    # A no-show: ready four days ago, expired by the pickup clock.
    fid = place(lines(1), now - timedelta(days=4, hours=1))
    counter.start_picking(session, fid, rules, now - timedelta(days=4, hours=1))
    counter.mark_ready(session, fid, rules, now - timedelta(days=4))
    expiry.remind_and_expire(session, now)
    # Cancelled by the customer.
    fid = place(lines(1), now - timedelta(hours=4))
    transition(session, fid, Status.CANCELLED, now=now - timedelta(hours=3))
