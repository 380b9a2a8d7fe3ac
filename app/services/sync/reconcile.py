"""A run's one ledger transaction: import the change feed, reconcile the staged snapshot, quarantine.

All or nothing: the imported changes, the adjustments, the discrepancies, the quarantine, the
acknowledged pushes and the feed's watermark commit together or not at all.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, column, select, text, update
from sqlalchemy.orm import Session

from app.db.dialect import keys_in
from app.domain import reconcile as rules
from app.domain.ledger import Deltas, Kind
from app.models import Movement
from app.models_sync import Discrepancy, Feed, KeyState, Outbound
from app.services import orders
from app.services import shortages as shortages_
from app.services.ledger import Leg, ensure_levels, lock_levels
from app.services.stock import book
from app.services.sync.feeds import FeedMap, settings_of
from app.services.sync.quarantine import Problem
from app.sync.base import Change

Key = tuple[int, int]
OUTBOUND_PREFIX = "omnistock-out-"
REPORT_SAMPLE = 50  # keys listed per category in a run's report


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    report: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def sample(self, name: str, entry: dict[str, Any]) -> None:
        bucket = self.report.setdefault(name, [])
        if len(bucket) < REPORT_SAMPLE:
            bucket.append(entry)


def _chunks(seq: Sequence[Any], n: int = 500) -> list[Sequence[Any]]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


# ---------------------------------------------------------------- change feed


def import_changes(
    session: Session,
    feed: Feed,
    fmap: FeedMap,
    changes: Sequence[Change],
    run_id: int,
    now: datetime,
    out: Outcome,
) -> None:
    """The feed's changes as movements (sales, adjustments, transfers; counts as observations);
    each recorded once per feed by its change id; our own pushes coming back are recognised."""
    if not changes:
        return
    seen_refs: set[str] = set()
    for part in _chunks(sorted({c.external_id for c in changes})):
        seen_refs.update(
            session.scalars(
                select(Movement.external_ref).where(
                    Movement.source == feed.code, Movement.external_ref.in_(part)
                )
            )
        )
    legs: list[Leg] = []
    echoes: dict[int, datetime] = {}
    taken: set[str] = set()
    for c in changes:
        out.counts["changes_seen"] += 1
        if c.external_id in taken:
            continue
        taken.add(c.external_id)
        if c.origin_reference and c.origin_reference.startswith(OUTBOUND_PREFIX):
            out.counts["echoes"] += 1
            with contextlib.suppress(ValueError):
                echoes[int(c.origin_reference[len(OUTBOUND_PREFIX) :])] = c.recorded_at
            continue
        if c.external_id in seen_refs:
            out.counts["changes_already_imported"] += 1
            continue
        if c.problem:
            out.problems.append(Problem("bad_row", c.item_ref, c.location_ref, c.problem, dict(c.raw)))
            continue
        sku_id = fmap.sku_id(c.item_ref, None)
        loc_id = fmap.locations.get(c.location_ref)
        if loc_id is None:
            out.problems.append(
                Problem("unknown_location", c.item_ref, c.location_ref, "location not mapped", dict(c.raw))
            )
            continue
        if sku_id is None:
            out.problems.append(
                Problem("unknown_item", c.item_ref, c.location_ref, "item not mapped", dict(c.raw))
            )
            continue
        amount = c.absolute if c.kind == "physical_count" else c.delta
        units = rules.whole_units(amount)
        if units is None:
            out.problems.append(
                Problem(
                    "bad_row",
                    c.item_ref,
                    c.location_ref,
                    f"quantity {amount} is not whole units",
                    dict(c.raw),
                )
            )
            continue
        common: dict[str, Any] = {
            "source": feed.code, "external_ref": c.external_id, "occurred_at": c.occurred_at,
            "vendor_at": c.recorded_at, "sync_run_id": run_id, "note": c.kind,
        }  # fmt: skip
        if c.kind == "physical_count":
            legs.append(Leg(Kind.OBSERVATION, sku_id, loc_id, units, Deltas(), reason="pos_count", **common))
        elif units < 0 and c.kind == "adjustment" and str(c.raw.get("to_state", "")).upper() == "SOLD":
            legs.append(
                Leg(Kind.SALE, sku_id, loc_id, -units, Deltas(on_hand=units), reason="pos_sale", **common)
            )
        elif units != 0:
            legs.append(
                Leg(
                    Kind.ADJUSTMENT,
                    sku_id,
                    loc_id,
                    units,
                    Deltas(on_hand=units),
                    reason=f"pos_{c.kind}",
                    **common,
                )
            )
        out.counts["changes_imported"] += 1
    if echoes:
        for oid, at in echoes.items():
            session.execute(
                update(Outbound)
                .where(Outbound.id == oid, Outbound.feed_id == feed.id, Outbound.status == "pending")
                .values(status="acked", acked_at=now, vendor_at=at)
            )
    if legs:
        keys = sorted({leg.key for leg in legs})
        ensure_levels(session, keys)
        shortages_.lock_promises(session, sorted({leg.key for leg in legs if leg.deltas.on_hand < 0}))
        lock_levels(session, keys)
        _, shortages = book(session, legs, now, orders.Policy())
        out.counts["shortages"] += len(shortages)


# ---------------------------------------------------------------- snapshot


_DIFFS = """
SELECT s.sku_id, s.location_id, s.qty, s.t, COALESCE(l.on_hand, 0) AS on_hand,
       COALESCE(p.pending, 0) AS pending
FROM staged_snapshot s
LEFT JOIN stock_levels l ON l.sku_id = s.sku_id AND l.location_id = s.location_id
LEFT JOIN (
    SELECT sku_id, location_id, SUM(delta) AS pending FROM sync_outbound
    WHERE feed_id = :feed AND status = 'pending' GROUP BY sku_id, location_id
) p ON p.sku_id = s.sku_id AND p.location_id = s.location_id
WHERE s.qty <> COALESCE(l.on_hand, 0) - COALESCE(p.pending, 0)
"""


def _staged_for(
    session: Session, times: Sequence[datetime], keys: Sequence[Key]
) -> dict[Key, tuple[int, datetime]]:
    found: dict[Key, tuple[int, datetime]] = {}
    for part in _chunks(list(keys)):
        pairs = " OR ".join(f"(sku_id = {int(s)} AND location_id = {int(loc)})" for s, loc in part)
        rows = session.execute(text(f"SELECT sku_id, location_id, qty, t FROM staged_snapshot WHERE {pairs}"))
        for s, loc, q, t in rows:
            found[(s, loc)] = (q, times[t])
    return found


def _recent(
    session: Session, feed: Feed, keys: Sequence[Key], since: datetime
) -> dict[Key, list[tuple[bool, datetime]]]:
    """What moved at these keys since `since`: the feed's own facts on its clock (True), and our
    own stock movements the feed cannot know yet, on ours (False)."""
    out: dict[Key, list[tuple[bool, datetime]]] = {}
    for part in [list(keys)]:  # one statement: the key filter takes any number of keys
        rows = session.execute(
            select(
                Movement.sku_id,
                Movement.location_id,
                Movement.source,
                Movement.vendor_at,
                Movement.recorded_at,
            ).where(
                keys_in(session, Movement.sku_id, Movement.location_id, part),
                Movement.on_hand_delta != 0,
                (Movement.source == feed.code) & (Movement.vendor_at > since)
                | (Movement.source != feed.code) & (Movement.recorded_at > since),
            )
        )
        for s, loc, source, vendor_at, recorded_at in rows:
            mine = source == feed.code
            out.setdefault((s, loc), []).append((mine, vendor_at if mine else recorded_at))
        acked = session.execute(
            select(Outbound.sku_id, Outbound.location_id, Outbound.vendor_at).where(
                Outbound.feed_id == feed.id,
                Outbound.status == "acked",
                Outbound.vendor_at > since,
                keys_in(session, Outbound.sku_id, Outbound.location_id, part),
            )
        )
        for s, loc, at in acked:
            out.setdefault((s, loc), []).append((True, at))
    return out


def reconcile_staged(
    session: Session,
    feed: Feed,
    run_id: int,
    *,
    times: Sequence[datetime],
    covered_until: datetime | None,
    two_strike: bool,
    now: datetime,
    out: Outcome,
    min_read_at: datetime | None,
) -> None:
    """Compare every quiet staged row with the ledger as the feed sees it; apply, hold or defer."""
    cfg = settings_of(feed)
    settle = timedelta(seconds=cfg.settle_s)
    stmt = (
        text(_DIFFS)
        .bindparams(feed=feed.id)
        .columns(
            column("sku_id", Integer),
            column("location_id", Integer),
            column("qty", Integer),
            column("t", Integer),
            column("on_hand", Integer),
            column("pending", Integer),
        )
    )
    diffs = [(sku, loc, q, times[t], oh, p) for sku, loc, q, t, oh, p in session.execute(stmt)]
    states = {
        (k.sku_id, k.location_id): k
        for k in session.scalars(select(KeyState).where(KeyState.feed_id == feed.id))
    }
    open_disc = {
        (d.sku_id, d.location_id): d
        for d in session.scalars(
            select(Discrepancy)
            .where(Discrepancy.feed_id == feed.id, Discrepancy.status == "open")
            .with_for_update()  # an accept or reject in flight finishes first
        )
    }
    diff_keys = {(r[0], r[1]) for r in diffs}
    # Keys with memory but no difference now: their deferral or discrepancy has settled itself.
    settled = [k for k in set(states) | set(open_disc) if k not in diff_keys]
    staged_settled = _staged_for(session, times, settled)
    for k, (_q, _t) in staged_settled.items():
        if k in open_disc:
            gone = open_disc.pop(k)
            gone.status, gone.updated_at, gone.note = "superseded", now, "the ledger and the feed agree again"
            out.counts["superseded"] += 1
        if k in states:
            session.delete(states.pop(k))
    if not diffs:
        return
    lo = (min_read_at or min(r[3] for r in diffs)) - settle
    recent = _recent(session, feed, sorted(diff_keys), lo)
    decisions: list[tuple[Key, int, datetime, rules.Decision]] = []
    for sku_id, loc_id, qty, read_at, on_hand, pending in diffs:
        k = (sku_id, loc_id)
        moves = recent.get(k, [])
        w = covered_until if covered_until is not None else read_at
        feed_times = [at for mine, at in moves if mine]
        own_times = [at for mine, at in moves if not mine]
        state = states.get(k)
        if any(at > read_at - settle for at in own_times):
            d = rules.Decision(rules.Verdict.DEFER, 0, "moved here around the time it was read")
        else:
            d = rules.decide(
                vendor_qty=qty, visible_qty=on_hand - pending, read_at=read_at, covered_until=w, settle=settle,
                recent=feed_times, auto_apply_limit=cfg.auto_apply_limit, two_strike=two_strike,
                previous_strike=state.strike_drift if state else None,
            )  # fmt: skip
        decisions.append((k, qty, read_at, d))
    _act(session, feed, run_id, decisions, states, open_disc, now, out, cfg.ineligible_alert_s)


def _act(
    session: Session,
    feed: Feed,
    run_id: int,
    decisions: list[tuple[Key, int, datetime, rules.Decision]],
    states: dict[Key, KeyState],
    open_disc: dict[Key, Discrepancy],
    now: datetime,
    out: Outcome,
    alert_s: int,
) -> None:
    apply = [(k, qty, t) for k, qty, t, d in decisions if d.verdict is rules.Verdict.APPLY]
    for k, qty, t, d in decisions:
        state = states.get(k)
        if d.verdict in (rules.Verdict.DEFER, rules.Verdict.FIRST_STRIKE):
            out.counts["deferred" if d.verdict is rules.Verdict.DEFER else "first_strikes"] += 1
            out.sample(str(d.verdict), {"sku_id": k[0], "location_id": k[1], "vendor_qty": qty, "why": d.why})
            if state is None:
                state = states[k] = KeyState(feed_id=feed.id, sku_id=k[0], location_id=k[1])
                session.add(state)
            if d.verdict is rules.Verdict.DEFER and state.ineligible_since is None:
                state.ineligible_since = now
            if d.verdict is rules.Verdict.FIRST_STRIKE:
                state.strike_drift, state.strike_at = d.drift, now
            if state.ineligible_since and (now - state.ineligible_since).total_seconds() > alert_s:
                out.counts["ineligible_too_long"] += 1
                out.sample(
                    "ineligible_too_long",
                    {"sku_id": k[0], "location_id": k[1], "since": state.ineligible_since.isoformat()},
                )
            continue
        if state is not None:
            session.delete(states.pop(k))
        if d.verdict is rules.Verdict.DISCREPANCY:
            disc = open_disc.get(k)
            if disc is None:
                disc = Discrepancy(
                    feed_id=feed.id, sku_id=k[0], location_id=k[1], status="open", created_at=now
                )
                session.add(disc)
                out.counts["discrepancies_new"] += 1
            disc.run_id, disc.vendor_qty, disc.ledger_qty, disc.drift = run_id, qty, qty - d.drift, d.drift
            disc.vendor_time, disc.updated_at = t, now
            out.counts["discrepancies"] += 1
            out.sample(
                "discrepancies", {"sku_id": k[0], "location_id": k[1], "vendor_qty": qty, "drift": d.drift}
            )
        elif d.verdict is rules.Verdict.MATCH:
            out.counts["matched_after_all"] += 1
    if apply:
        _apply(session, feed, run_id, apply, open_disc, now, out)


def _apply(
    session: Session,
    feed: Feed,
    run_id: int,
    rows: list[tuple[Key, int, datetime]],
    open_disc: dict[Key, Discrepancy],
    now: datetime,
    out: Outcome,
) -> None:
    """Each difference as one count_adjustment, measured again on the locked level."""
    keys = sorted(k for k, _q, _t in rows)
    ensure_levels(session, keys)  # a feed may hold stock of an item never stocked here before
    shortages_.lock_promises(session, keys)
    levels = lock_levels(session, keys)
    pending = dict(
        ((s, loc), int(p))
        for s, loc, p in session.execute(
            text(
                "SELECT sku_id, location_id, SUM(delta) FROM sync_outbound WHERE feed_id = :f AND status = 'pending' "
                "GROUP BY sku_id, location_id"
            ).bindparams(f=feed.id)
        )
        if (s, loc) in levels
    )
    legs: list[Leg] = []
    for k, qty, t in sorted(rows):
        level = levels[k]
        drift = qty - (level.on_hand - pending.get(k, 0))
        if drift == 0:
            continue
        legs.append(
            Leg(
                Kind.COUNT_ADJUSTMENT, k[0], k[1], qty, Deltas(on_hand=drift), source=feed.code,
                external_ref=f"reconcile:{k[0]}:{k[1]}:{t.isoformat()}", reason="reconcile", occurred_at=t,
                vendor_at=t, sync_run_id=run_id, note=f"feed {feed.code} said {qty}",
            )
        )  # fmt: skip
        if k in open_disc:
            d = open_disc.pop(k)
            d.status, d.updated_at, d.note = (
                "superseded",
                now,
                "a later difference was within the limit and applied",
            )
            out.counts["superseded"] += 1
        out.sample("adjusted", {"sku_id": k[0], "location_id": k[1], "vendor_qty": qty, "delta": drift})
    if legs:
        existing: set[str | None] = set()
        for part in _chunks([leg.external_ref for leg in legs]):
            existing.update(
                session.scalars(
                    select(Movement.external_ref).where(
                        Movement.source == feed.code, Movement.external_ref.in_(part)
                    )
                )
            )
        legs = [leg for leg in legs if leg.external_ref not in existing]
        _, shortages = book(session, legs, now, orders.Policy(), ids=False)
        out.counts["adjusted"] += len(legs)
        out.counts["units_adjusted"] += sum(abs(leg.deltas.on_hand) for leg in legs)
        out.counts["shortages"] += len(shortages)
