"""How routing ranks and covers: sites, criteria keys, greedy set cover, explanation notes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.geo import haversine_km
from app.domain.routing.model import Allocation, Candidate, CandidateNote, Criterion, Line

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
