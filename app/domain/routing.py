"""Order routing: decide which locations fulfil an order, and say why.

``route`` is a pure function of (request, candidates, policy). It reserves nothing; the service
layer applies the decision it returns. Every decision it returns keeps these invariants:

* Only ordered SKUs are allocated, and never more than a candidate's stock for that SKU
  (missing or non-positive stock counts as none).
* ``allocated`` and ``partial``: allocated units + backordered units == ordered units, per SKU.
  For pickup, "allocated" means the pickup store's own ``lines`` plus the ``transfer`` lines;
  ``collect_lines`` is their per-SKU sum, i.e. what the customer collects. ``refused``: nothing is
  allocated and nothing is backordered. ``allocated`` never has backordered lines.
* Every emitted ``Line`` has qty >= 1 and each location appears in at most one allocation.
* Shipping: one eligible location covering the whole order beats any split; a split never has
  more than ``policy.max_shipments`` ship allocations. Pickup: at most ``policy.max_shipments``
  transfer sources.
* Excluded candidates never receive an allocation: for shipping, inactive, not serving the
  channel, not shipping, or without capacity left today; for pickup, inactive or not serving the
  channel (capacity and the ship flag do not apply to pickups and internal transfers).
* Deterministic: every tie is broken by location code, so the same input gives the same decision
  and the order of the candidates does not matter (the explanation is sorted too).
* ``explanation`` holds exactly one note per candidate: chosen ones first (in allocation order),
  then rejected, then excluded, each group in ranking order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from app.domain.geo import haversine_km

Criterion = Literal["distance", "priority", "capacity", "depth"]
DEFAULT_CRITERIA: tuple[Criterion, ...] = ("distance", "priority", "capacity", "depth")

# Transfers are internal moves to a pickup store: capacity (customer shipments) and stock depth
# do not apply, so sources are ranked on distance to the store, then priority.
TRANSFER_CRITERIA: tuple[Criterion, ...] = ("distance", "priority")

_CRITERIA: frozenset[str] = frozenset(get_args(Criterion))


@dataclass(frozen=True)
class Line:
    """An order line, or a quantity of one SKU taken from one location."""

    sku: str
    qty: int

    def __post_init__(self) -> None:
        if self.qty < 1:
            raise ValueError(f"line {self.sku!r}: qty must be >= 1, got {self.qty}")


@dataclass(frozen=True)
class Candidate:
    """A location that might fulfil the order, with the stock it can give this order."""

    code: str
    lat: float | None
    lon: float | None
    priority: int  # lower number = preferred
    # Ship-from-location shipments still allowed today; None = unlimited; ship type only.
    remaining_capacity: int | None
    # sku -> units available to this order (net of reserved and safety stock); missing = 0.
    stock: Mapping[str, int]
    active: bool = True
    ships: bool = True  # can ship to customers
    pickup: bool = False  # offers click-and-collect
    serves_channel: bool = True  # serves the order's channel


@dataclass(frozen=True)
class ShipTo:
    """Home delivery to these coordinates (None when the address could not be placed)."""

    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class PickupAt:
    """Click-and-collect at the store with this location code."""

    location: str


@dataclass(frozen=True)
class RoutingRequest:
    """What to route: distinct SKUs with qty >= 1, and where the customer gets them."""

    lines: tuple[Line, ...]
    delivery: ShipTo | PickupAt
    allow_split: bool = True
    allow_partial: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("an order needs at least one line")
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError(f"order lines must have distinct skus, got {skus}")


@dataclass(frozen=True)
class RoutingPolicy:
    """Per-deployment routing settings."""

    criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA
    max_shipments: int = 3  # bound on a split, and on transfer sources for a pickup
    pickup_shortfall: Literal["transfer", "refuse"] = "transfer"
    max_alternatives: int = 3

    def __post_init__(self) -> None:
        unknown = [c for c in self.criteria if c not in _CRITERIA]
        if unknown:
            raise ValueError(f"unknown routing criteria: {unknown}")
        if self.max_shipments < 1:
            raise ValueError(f"max_shipments must be >= 1, got {self.max_shipments}")
        if self.pickup_shortfall not in ("transfer", "refuse"):
            raise ValueError(f"unknown pickup_shortfall: {self.pickup_shortfall!r}")
        if self.max_alternatives < 0:
            raise ValueError(f"max_alternatives must be >= 0, got {self.max_alternatives}")


@dataclass(frozen=True)
class Allocation:
    """Units one location reserves for the order, and what it does with them."""

    location: str
    type: Literal["ship", "pickup", "transfer"]
    lines: tuple[Line, ...]  # units taken from THIS location's stock (reserve here)
    to_location: str | None = None  # "transfer": the pickup store receiving the units
    # "pickup": everything the customer collects there (own lines + transfers in).
    collect_lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class CandidateNote:
    """Why one candidate was chosen, passed over, or not considered."""

    location: str
    outcome: Literal["chosen", "rejected", "excluded"]
    reason: str
    distance_km: float | None = None


@dataclass(frozen=True)
class Alternative:
    """A pickup store that could serve the whole order from its own stock."""

    location: str
    distance_km: float | None


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of routing one order; applied (or quoted) by the service layer."""

    status: Literal["allocated", "partial", "refused"]
    allocations: tuple[Allocation, ...]
    backordered: tuple[Line, ...]
    explanation: tuple[CandidateNote, ...]
    alternatives: tuple[Alternative, ...] = ()
    # for refused: "insufficient_stock" | "pickup_location_unavailable"
    reason: str | None = None


def initial_order_status(decision: RoutingDecision) -> str:
    """A placed order starts allocated, partially allocated (some lines back-ordered) or, with
    nothing allocated, back-ordered."""
    if not decision.allocations:
        return "backordered"
    return "partially_allocated" if decision.backordered else "allocated"


def ship_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A location may ship an order only if active, serving the channel, shipping, with capacity."""
    reasons = list(transfer_exclusion_reasons(candidate))
    if not candidate.ships:
        reasons.append("does not ship")
    if candidate.remaining_capacity is not None and candidate.remaining_capacity <= 0:
        reasons.append("no capacity left today")
    return tuple(reasons)


def transfer_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A location may source a pickup (own stock or transfer) only if active and in the channel."""
    reasons: list[str] = []
    if not candidate.active:
        reasons.append("inactive")
    if not candidate.serves_channel:
        reasons.append("does not serve this channel")
    return tuple(reasons)


def pickup_exclusion_reasons(candidate: Candidate) -> tuple[str, ...]:
    """A store may hand over an order only if active, offering pickup and serving the channel."""
    reasons = list(transfer_exclusion_reasons(candidate))
    if not candidate.pickup:
        reasons.append("does not offer pickup")
    return tuple(reasons)


_DEFAULT_POLICY = RoutingPolicy()


def route(
    request: RoutingRequest,
    candidates: Sequence[Candidate],
    policy: RoutingPolicy = _DEFAULT_POLICY,
) -> RoutingDecision:
    """Route an order: one full location beats a split; else split, partial or refuse."""
    codes = [c.code for c in candidates]
    if len(set(codes)) != len(codes):
        # Ties are broken by code, so duplicate codes would make the decision order-dependent.
        raise ValueError(f"candidate codes must be unique, got {sorted(codes)}")
    if isinstance(request.delivery, PickupAt):
        return _route_pickup(request, request.delivery, candidates, policy)
    return _route_ship(request, request.delivery, candidates, policy)


# --- internals -------------------------------------------------------------------------------

_CriterionKey = tuple[int, float]
_RankKey = tuple[tuple[_CriterionKey, ...], str]

_OUTCOME_ORDER: Mapping[str, int] = {"chosen": 0, "rejected": 1, "excluded": 2}
_TYPE_ORDER: Mapping[str, int] = {"pickup": 0, "ship": 1, "transfer": 2}


@dataclass(frozen=True)
class _Site:
    """A candidate plus the figures routing compares it on for this order."""

    candidate: Candidate
    distance_km: float | None
    depth: int

    @property
    def code(self) -> str:
        return self.candidate.code

    def has(self, sku: str) -> int:
        return max(self.candidate.stock.get(sku, 0), 0)


@dataclass(frozen=True)
class _Pick:
    site: _Site
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class _Plan:
    picks: tuple[_Pick, ...]
    backordered: tuple[Line, ...]
    lost: Mapping[str, str]  # code -> why a contender was passed over


def _distance(
    lat1: float | None,
    lon1: float | None,
    lat2: float | None,
    lon2: float | None,
) -> float | None:
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    d = haversine_km(lat1, lon1, lat2, lon2)
    # A NaN would compare unequal to itself and break deterministic ranking; treat as unknown.
    return d if math.isfinite(d) else None


def _site(
    candidate: Candidate,
    lines: Sequence[Line],
    lat: float | None,
    lon: float | None,
) -> _Site:
    depth = sum(max(candidate.stock.get(line.sku, 0), 0) for line in lines)
    return _Site(candidate, _distance(candidate.lat, candidate.lon, lat, lon), depth)


def _criterion_key(site: _Site, criterion: Criterion) -> _CriterionKey:
    if criterion == "distance":
        # Unknown coordinates cannot be shown to be close, so they rank after every known distance.
        return (1, 0.0) if site.distance_km is None else (0, site.distance_km)
    if criterion == "priority":
        return (0, float(site.candidate.priority))
    if criterion == "capacity":
        cap = site.candidate.remaining_capacity
        return (0, 0.0) if cap is None else (1, -float(cap))
    return (0, -float(site.depth))


def _rank_key(site: _Site, criteria: Sequence[Criterion]) -> _RankKey:
    return tuple(_criterion_key(site, c) for c in criteria), site.code


def _fmt_km(value: float | None, other: float | None) -> str:
    if value is None:
        return "unknown distance"
    text = f"{value:.1f} km"
    if other is not None and text == f"{other:.1f} km" and value != other:
        text = f"{value:.3f} km"
    return text


def _fmt_capacity(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _lost_on(loser: _Site, winner: _Site, criteria: Sequence[Criterion]) -> str:
    """Name the first criterion on which ``loser`` ranks after ``winner``, with both values."""
    for criterion in criteria:
        if _criterion_key(loser, criterion) == _criterion_key(winner, criterion):
            continue
        if criterion == "distance":
            lo, wi = loser.distance_km, winner.distance_km
            return f"farther: {_fmt_km(lo, wi)} vs {_fmt_km(wi, lo)}"
        if criterion == "priority":
            lp, wp = loser.candidate.priority, winner.candidate.priority
            return f"lower priority: {lp} vs {wp}"
        if criterion == "capacity":
            lc = _fmt_capacity(loser.candidate.remaining_capacity)
            wc = _fmt_capacity(winner.candidate.remaining_capacity)
            return f"less capacity left today: {lc} vs {wc}"
        return f"less stock depth: {loser.depth} vs {winner.depth} units"
    return f"tie on every criterion, broken by code: {loser.code} after {winner.code}"


def _useful(site: _Site, needs: Mapping[str, int]) -> int:
    return sum(min(qty, site.has(sku)) for sku, qty in needs.items() if qty > 0)


def _coverage(site: _Site, lines: Sequence[Line]) -> str:
    short = [line for line in lines if site.has(line.sku) < line.qty]
    if not short:
        return f"covers all {len(lines)} lines"
    if all(site.has(line.sku) == 0 for line in lines):
        return "no stock for the ordered lines"
    detail = "; ".join(f"{ln.sku} needs {ln.qty}, has {site.has(ln.sku)}" for ln in short)
    return f"covers {len(lines) - len(short)} of {len(lines)} lines (short: {detail})"


def _covers_all(site: _Site, lines: Sequence[Line]) -> bool:
    return all(site.has(line.sku) >= line.qty for line in lines)


def _greedy(
    lines: Sequence[Line],
    needs: Mapping[str, int],
    pool: Sequence[_Site],
    *,
    limit: int,
    criteria: Sequence[Criterion],
    most_units_first: bool,
    what: str,
) -> _Plan:
    """Bounded greedy cover of ``needs``; a line's qty may be split across locations."""
    remaining = dict(needs)
    unused = list(pool)
    picks: list[_Pick] = []
    lost: dict[str, str] = {}
    while len(picks) < limit and any(q > 0 for q in remaining.values()):
        contenders = [(s, _useful(s, remaining)) for s in unused]
        contenders = [(s, units) for s, units in contenders if units > 0]
        if not contenders:
            break
        best, best_units = min(
            contenders,
            key=lambda su: (-su[1] if most_units_first else 0, _rank_key(su[0], criteria)),
        )
        step = len(picks) + 1
        for site, units in contenders:
            if site is best:
                continue
            if most_units_first and units < best_units:
                why = f"covers fewer still-needed units: {units} vs {best_units}"
            else:
                why = _lost_on(site, best, criteria)
            lost[site.code] = f"{what} {step} went to {best.code}: {why}"
        taken: list[Line] = []
        for line in lines:
            qty = min(remaining[line.sku], best.has(line.sku))
            if qty > 0:
                taken.append(Line(line.sku, qty))
                remaining[line.sku] -= qty
        picks.append(_Pick(best, tuple(taken)))
        unused.remove(best)
    if any(q > 0 for q in remaining.values()):
        for site in unused:
            if _useful(site, remaining) > 0:
                plural = "" if limit == 1 else "s"
                lost[site.code] = f"limit of {limit} {what}{plural} reached"
    backordered = tuple(Line(ln.sku, remaining[ln.sku]) for ln in lines if remaining[ln.sku] > 0)
    return _Plan(tuple(picks), backordered, lost)


def _units(lines: Sequence[Line]) -> int:
    return sum(line.qty for line in lines)


def _n_units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _sorted_allocations(allocations: Sequence[Allocation]) -> tuple[Allocation, ...]:
    return tuple(sorted(allocations, key=lambda a: (_TYPE_ORDER[a.type], a.location)))


def _sorted_notes(
    notes: Mapping[str, CandidateNote],
    allocations: Sequence[Allocation],
    rank: Mapping[str, _RankKey],
) -> tuple[CandidateNote, ...]:
    chosen_order = {a.location: i for i, a in enumerate(allocations)}

    def key(note: CandidateNote) -> tuple[int, int, _RankKey]:
        return (
            _OUTCOME_ORDER[note.outcome],
            chosen_order.get(note.location, 0),
            rank[note.location],
        )

    return tuple(sorted(notes.values(), key=key))


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
