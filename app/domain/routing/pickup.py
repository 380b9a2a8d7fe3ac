"""Routing a pickup: the store's own stock first, then transfers (or refusal with alternatives)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from app.domain.routing.model import (
    TRANSFER_CRITERIA,
    Allocation,
    Alternative,
    Candidate,
    CandidateNote,
    Line,
    PickupAt,
    RoutingDecision,
    RoutingPolicy,
    RoutingRequest,
    pickup_exclusion_reasons,
    transfer_exclusion_reasons,
)
from app.domain.routing.ranking import (
    _coverage,
    _covers_all,
    _greedy,
    _n_units,
    _Plan,
    _rank_key,
    _Site,
    _site,
    _sorted_allocations,
    _sorted_notes,
    _units,
)


def _route_pickup(
    request: RoutingRequest,
    pickup: PickupAt,
    candidates: Sequence[Candidate],
    policy: RoutingPolicy,
) -> RoutingDecision:
    lines = request.lines
    store = next((c for c in candidates if c.code == pickup.location), None)
    # Transfers and alternatives are ranked by distance to the store; unknown store = unknown.
    lat, lon = (store.lat, store.lon) if store is not None else (None, None)
    sites = [_site(c, lines, lat, lon) for c in candidates]
    rank = {s.code: _rank_key(s, TRANSFER_CRITERIA) for s in sites}
    notes: dict[str, CandidateNote] = {}

    def note(site: _Site, outcome: Literal["chosen", "rejected", "excluded"], why: str) -> None:
        notes[site.code] = CandidateNote(site.code, outcome, why, site.distance_km)

    alternatives = _alternatives(pickup.location, sites, lines, policy.max_alternatives)
    # Filled only on the paths that return the alternatives, so notes never mention unsent ones.
    offered: set[str] = set()

    def rejected(site: _Site, why: str) -> None:
        if site.code in offered:
            why += "; could serve the whole order (offered as alternative)"
        note(site, "rejected", why)

    sources: list[_Site] = []
    home: _Site | None = None
    for site in sites:
        if site.code == pickup.location:
            home = site
            continue
        excluded = transfer_exclusion_reasons(site.candidate)
        if excluded:
            note(site, "excluded", ", ".join(excluded))
        else:
            sources.append(site)
    sources.sort(key=lambda s: rank[s.code])

    if home is None or pickup_exclusion_reasons(home.candidate):
        if home is not None:
            note(home, "excluded", ", ".join(pickup_exclusion_reasons(home.candidate)))
        offered.update(a.location for a in alternatives)
        for site in sources:
            rejected(site, f"not the requested pickup store {pickup.location}")
        return RoutingDecision(
            "refused",
            (),
            (),
            _sorted_notes(notes, [], rank),
            alternatives,
            reason="pickup_location_unavailable",
        )

    own = tuple(Line(ln.sku, min(ln.qty, home.has(ln.sku))) for ln in lines if home.has(ln.sku) > 0)
    own_qty = {line.sku: line.qty for line in own}
    missing = {line.sku: line.qty - own_qty.get(line.sku, 0) for line in lines}

    if not any(missing.values()):
        note(home, "chosen", f"pickup store has all {len(lines)} lines")
        for site in sources:
            rejected(site, "not needed: the pickup store has every line")
        allocation = Allocation(home.code, "pickup", lines, collect_lines=lines)
        explanation = _sorted_notes(notes, [allocation], rank)
        return RoutingDecision("allocated", (allocation,), (), explanation)

    if policy.pickup_shortfall == "transfer":
        plan = _greedy(
            lines,
            missing,
            sources,
            limit=policy.max_shipments,
            criteria=TRANSFER_CRITERIA,
            most_units_first=False,
            what="transfer",
        )
    else:
        plan = _Plan((), tuple(Line(s, q) for s, q in missing.items() if q > 0), {})
    covered = not plan.backordered
    nothing = not own and not plan.picks
    picked = {p.site.code: p for p in plan.picks}

    def source_reason(site: _Site) -> str:
        if policy.pickup_shortfall == "refuse":
            return "transfers are disabled by policy"
        if site.code in picked:
            moved = _n_units(_units(picked[site.code].lines))
            still = _n_units(_units(plan.backordered))
            return f"would transfer {moved}, but {still} would still be missing"
        return plan.lost.get(site.code, "no stock for the missing units")

    if nothing or not (covered or request.allow_partial):
        shortfall = _coverage(home, lines)
        if policy.pickup_shortfall == "refuse":
            shortfall += "; transfers are disabled by policy"
        else:
            shortfall += f"; transfers from up to {policy.max_shipments} sources cannot cover it"
        note(home, "rejected", shortfall)
        offered.update(a.location for a in alternatives)
        for site in sources:
            rejected(site, source_reason(site))
        return RoutingDecision(
            "refused",
            (),
            (),
            _sorted_notes(notes, [], rank),
            alternatives,
            reason="insufficient_stock",
        )

    transferred = {line.sku: 0 for line in lines}
    for pick in plan.picks:
        for line in pick.lines:
            transferred[line.sku] += line.qty
    collect = tuple(
        Line(line.sku, own_qty.get(line.sku, 0) + transferred[line.sku])
        for line in lines
        if own_qty.get(line.sku, 0) + transferred[line.sku] > 0
    )
    moved_in = sum(transferred.values())
    home_reason = f"pickup store reserves {_units(own)} of {_units(lines)} units itself"
    if moved_in:
        home_reason += f", {moved_in} by transfer"
    if plan.backordered:
        home_reason += f", {_units(plan.backordered)} backordered"
    note(home, "chosen", home_reason)
    if not covered:
        offered.update(a.location for a in alternatives)
    for pick in plan.picks:
        note(pick.site, "chosen", f"transfers {_n_units(_units(pick.lines))} to {home.code}")
    for site in sources:
        if site.code in notes:
            continue
        rejected(site, source_reason(site))
    allocations = _sorted_allocations(
        [Allocation(home.code, "pickup", own, collect_lines=collect)]
        + [Allocation(p.site.code, "transfer", p.lines, to_location=home.code) for p in plan.picks]
    )
    return RoutingDecision(
        "allocated" if covered else "partial",
        allocations,
        plan.backordered,
        _sorted_notes(notes, allocations, rank),
        () if covered else alternatives,
    )


def _alternatives(
    store_code: str, sites: Sequence[_Site], lines: Sequence[Line], limit: int
) -> tuple[Alternative, ...]:
    """Other pickup stores able to serve the whole order themselves, nearest to the store first."""
    others = [s for s in sites if s.code != store_code and _covers_all(s, lines)]
    able = [s for s in others if not pickup_exclusion_reasons(s.candidate)]
    able.sort(key=lambda s: _rank_key(s, ("distance",)))
    return tuple(Alternative(s.code, s.distance_km) for s in able[:limit])
