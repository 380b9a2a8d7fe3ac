"""Routing a ship-to order: one location covering it all beats a split; else split or partial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from app.domain.routing.model import (
    Allocation,
    Candidate,
    CandidateNote,
    RoutingDecision,
    RoutingPolicy,
    RoutingRequest,
    ShipTo,
    ship_exclusion_reasons,
)
from app.domain.routing.ranking import (
    _coverage,
    _covers_all,
    _greedy,
    _lost_on,
    _rank_key,
    _Site,
    _site,
    _sorted_allocations,
    _sorted_notes,
    _units,
)


def _route_ship(
    request: RoutingRequest,
    dest: ShipTo,
    candidates: Sequence[Candidate],
    policy: RoutingPolicy,
) -> RoutingDecision:
    lines = request.lines
    criteria = policy.criteria
    sites = [_site(c, lines, dest.lat, dest.lon) for c in candidates]
    rank = {s.code: _rank_key(s, criteria) for s in sites}
    notes: dict[str, CandidateNote] = {}
    eligible: list[_Site] = []
    for site in sites:
        excluded = ship_exclusion_reasons(site.candidate)
        if excluded:
            why = ", ".join(excluded)
            notes[site.code] = CandidateNote(site.code, "excluded", why, site.distance_km)
        else:
            eligible.append(site)
    eligible.sort(key=lambda s: rank[s.code])

    def note(site: _Site, outcome: Literal["chosen", "rejected"], reason: str) -> None:
        notes[site.code] = CandidateNote(site.code, outcome, reason, site.distance_km)

    full = [s for s in eligible if _covers_all(s, lines)]
    if full:
        winner = full[0]
        if len(full) > 1:
            note(winner, "chosen", f"covers all {len(lines)} lines; ranked first of {len(full)}")
        else:
            note(winner, "chosen", f"only location covering all {len(lines)} lines")
        for site in eligible:
            if site is winner:
                continue
            if _covers_all(site, lines):
                note(site, "rejected", _lost_on(site, winner, criteria))
            else:
                note(site, "rejected", _coverage(site, lines))
        allocation = Allocation(winner.code, "ship", lines)
        explanation = _sorted_notes(notes, [allocation], rank)
        return RoutingDecision("allocated", (allocation,), (), explanation)

    needs = {line.sku: line.qty for line in lines}
    # Without a split the best partial plan is the one location covering the most units: that is
    # exactly the first greedy step.
    limit = policy.max_shipments if request.allow_split else 1
    plan = _greedy(
        lines,
        needs,
        eligible,
        limit=limit,
        criteria=criteria,
        most_units_first=True,
        what="shipment",
    )
    covered = not plan.backordered
    if not plan.picks or not (covered or request.allow_partial):
        for site in eligible:
            note(site, "rejected", _coverage(site, lines))
        explanation = _sorted_notes(notes, [], rank)
        return RoutingDecision("refused", (), (), explanation, reason="insufficient_stock")

    total = _units(lines)
    for i, pick in enumerate(plan.picks, start=1):
        note(
            pick.site,
            "chosen",
            f"shipment {i} of {len(plan.picks)}: {_units(pick.lines)} of {total} units"
            f" ({_coverage(pick.site, lines)})",
        )
    for site in eligible:
        if site.code not in notes:
            note(site, "rejected", plan.lost.get(site.code, "no stock for the ordered lines"))
    ships = [Allocation(p.site.code, "ship", p.lines) for p in plan.picks]
    allocations = _sorted_allocations(ships)
    return RoutingDecision(
        "allocated" if covered else "partial",
        allocations,
        plan.backordered,
        _sorted_notes(notes, allocations, rank),
    )
