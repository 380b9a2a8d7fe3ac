"""Property tests for app.domain.routing: the invariants in its module docstring."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.geo import haversine_km
from app.domain.ledger import free_units
from app.domain.routing import (
    DEFAULT_CRITERIA,
    Candidate,
    Line,
    PickupAt,
    RoutingDecision,
    RoutingPolicy,
    RoutingRequest,
    ShipTo,
    route,
)

SKUS = ("A", "B", "C")
CODES = ("L0", "L1", "L2", "L3", "L4", "L5")
# A coarse grid makes equal distances (ties) common, which is where ordering bugs hide.
COORD = st.sampled_from([0.0, 0.01, 0.02, 0.05, -0.03])
POINT = st.one_of(st.none(), st.tuples(COORD, COORD))
# Mostly small positive counts (so splits and transfers happen), sometimes none or negative.
STOCK = st.one_of(st.integers(1, 5), st.integers(-2, 6))
SCARCE_STOCK = st.integers(0, 3)
SOME_CAPACITY = st.integers(1, 3)
NO_CAPACITY = st.integers(-1, 0)
FLAW = st.sampled_from(
    [None, None, None, "inactive", "other_channel", "no_ship", "no_pickup", "capacity"],
)

PROPERTY = settings(max_examples=200, deadline=None, database=None)

Scenario = tuple[RoutingRequest, list[Candidate], RoutingPolicy]


@st.composite
def candidates(draw: st.DrawFn, scarce: bool) -> list[Candidate]:
    size = st.lists(st.sampled_from(CODES), unique=True, min_size=3 if scarce else 1, max_size=6)
    result = []
    for code in draw(size):
        point = draw(POINT)
        # Most locations are fully usable, so splits and transfers are common; the rest have
        # exactly one flaw, so each exclusion rule decides on its own and is exercised.
        flaw = draw(FLAW)
        capacity = NO_CAPACITY if flaw == "capacity" else st.one_of(st.none(), SOME_CAPACITY)
        # "Z" is never ordered: it must never be allocated.
        stock = st.dictionaries(
            st.sampled_from((*SKUS, "Z")), SCARCE_STOCK if scarce else STOCK, min_size=2, max_size=4
        )
        result.append(
            Candidate(
                code=code,
                lat=None if point is None else point[0],
                lon=None if point is None else point[1],
                priority=draw(st.integers(0, 3)),
                remaining_capacity=draw(capacity),
                stock=draw(stock),
                active=flaw != "inactive",
                ships=flaw != "no_ship",
                pickup=flaw != "no_pickup",
                serves_channel=flaw != "other_channel",
            )
        )
    return result


@st.composite
def requests(
    draw: st.DrawFn,
    codes: list[str],
    pickup: bool | None,
    scarce: bool,
) -> RoutingRequest:
    skus = draw(st.lists(st.sampled_from(SKUS), unique=True, min_size=1))
    qty = st.integers(3, 6) if scarce else st.integers(1, 5)
    lines = tuple(Line(sku, draw(qty)) for sku in skus)
    is_pickup = draw(st.booleans()) if pickup is None else pickup
    delivery: ShipTo | PickupAt
    if is_pickup:
        # Mostly a store that is among the candidates; sometimes one that is not.
        delivery = PickupAt(draw(st.sampled_from([*codes, *codes, "NOWHERE"])))
    else:
        point = draw(POINT)
        delivery = ShipTo(None, None) if point is None else ShipTo(*point)
    return RoutingRequest(
        lines,
        delivery,
        allow_split=scarce or draw(st.booleans()),
        allow_partial=draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> RoutingPolicy:
    order = draw(st.permutations(DEFAULT_CRITERIA))
    return RoutingPolicy(
        criteria=tuple(order[: draw(st.integers(0, len(order)))]),
        max_shipments=draw(st.integers(1, 3)),
        pickup_shortfall=draw(st.sampled_from(("transfer", "refuse"))),
        max_alternatives=draw(st.integers(0, 3)),
    )


@st.composite
def _scenarios(draw: st.DrawFn, pickup: bool | None, scarce: bool) -> Scenario:
    cands = draw(candidates(scarce))
    request = draw(requests([c.code for c in cands], pickup, scarce))
    return request, cands, draw(policies())


def scenarios(pickup: bool | None = None) -> st.SearchStrategy[Scenario]:
    """Arbitrary orders, mixed with scarce ones that force splits, transfers and backorders."""
    return st.one_of(_scenarios(pickup, scarce=False), _scenarios(pickup, scarce=True))


def has(candidate: Candidate, sku: str) -> int:
    return max(candidate.stock.get(sku, 0), 0)


def ship_eligible(c: Candidate) -> bool:
    capacity_ok = c.remaining_capacity is None or c.remaining_capacity > 0
    return c.active and c.serves_channel and c.ships and capacity_ok


def reserved_units(decision: RoutingDecision) -> Counter[str]:
    """Units reserved anywhere, per sku; collect_lines is a summary, not a reservation."""
    total: Counter[str] = Counter()
    for allocation in decision.allocations:
        for line in allocation.lines:
            total[line.sku] += line.qty
    return total


@PROPERTY
@given(scenarios())
def test_never_allocates_more_than_a_location_has_nor_an_unordered_sku(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    by_code = {c.code: c for c in cands}
    ordered = {line.sku for line in request.lines}
    locations = [a.location for a in decision.allocations]
    assert len(locations) == len(set(locations)), "one allocation per location"
    for allocation in decision.allocations:
        candidate = by_code[allocation.location]
        skus = [line.sku for line in allocation.lines]
        assert len(skus) == len(set(skus))
        for line in allocation.lines:
            assert line.sku in ordered
            assert 1 <= line.qty <= has(candidate, line.sku)
    for line in decision.backordered:
        assert line.qty >= 1
        assert line.sku in ordered


@PROPERTY
@given(scenarios())
def test_allocated_plus_backordered_equals_ordered_unless_refused(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    ordered = Counter({line.sku: line.qty for line in request.lines})
    if decision.status == "refused":
        assert decision.reason in ("insufficient_stock", "pickup_location_unavailable")
        assert decision.allocations == ()
        assert decision.backordered == ()
        return
    assert decision.reason is None
    assert decision.allocations, "an accepted order allocates something"
    backordered = Counter({line.sku: line.qty for line in decision.backordered})
    assert reserved_units(decision) + backordered == ordered
    assert (decision.status == "allocated") == (not decision.backordered)


@PROPERTY
@given(scenarios(pickup=False))
def test_a_single_eligible_location_covering_the_order_gets_all_of_it(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    full = [c for c in cands if all(has(c, ln.sku) >= ln.qty for ln in request.lines)]
    covering = {c.code for c in full if ship_eligible(c)}
    if not covering:
        # A complete single allocation would prove some eligible location covers the order.
        assert not (decision.status == "allocated" and len(decision.allocations) == 1)
        return
    assert decision.status == "allocated"
    (allocation,) = decision.allocations
    assert allocation.type == "ship"
    assert allocation.location in covering
    assert allocation.lines == request.lines


@pytest.mark.parametrize("pickup", [False, True], ids=["ship", "pickup"])
@PROPERTY
@given(data=st.data())
def test_excluded_candidates_never_receive_an_allocation(pickup: bool, data: st.DataObject) -> None:
    request, cands, policy = data.draw(scenarios(pickup))
    decision = route(request, cands, policy)
    by_code = {c.code: c for c in cands}
    notes = {n.location: n for n in decision.explanation}
    for allocation in decision.allocations:
        candidate = by_code[allocation.location]
        assert notes[allocation.location].outcome == "chosen"
        assert candidate.active
        assert candidate.serves_channel
        if allocation.type == "ship":
            assert isinstance(request.delivery, ShipTo)
            assert ship_eligible(candidate)
        elif allocation.type == "pickup":
            assert isinstance(request.delivery, PickupAt)
            assert allocation.location == request.delivery.location
            assert candidate.pickup
        else:
            assert isinstance(request.delivery, PickupAt)
            assert allocation.to_location == request.delivery.location
            assert allocation.location != request.delivery.location
    for note in decision.explanation:
        if note.outcome == "excluded":
            assert note.location not in {a.location for a in decision.allocations}


@PROPERTY
@given(scenarios(), st.data())
def test_decision_is_deterministic_and_ignores_candidate_order(
    scenario: Scenario, data: st.DataObject
) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    assert route(request, cands, policy) == decision
    shuffled = data.draw(st.permutations(cands))
    assert route(request, shuffled, policy) == decision


@PROPERTY
@given(scenarios())
def test_shipments_and_transfer_sources_are_bounded(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    types = Counter(a.type for a in decision.allocations)
    assert types["ship"] <= policy.max_shipments
    assert types["transfer"] <= policy.max_shipments
    assert types["pickup"] <= 1
    if isinstance(request.delivery, ShipTo):
        assert set(types) <= {"ship"}
        if not request.allow_split:
            assert types["ship"] <= 1
    else:
        assert set(types) <= {"pickup", "transfer"}
        if types["transfer"]:
            assert types["pickup"] == 1
        if policy.pickup_shortfall == "refuse":
            assert types["transfer"] == 0


@PROPERTY
@given(scenarios(pickup=True))
def test_pickup_collects_exactly_what_the_store_and_transfers_reserve(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    pickups = [a for a in decision.allocations if a.type == "pickup"]
    if decision.status == "refused":
        assert pickups == []
        return
    (pickup,) = pickups
    collected = Counter({line.sku: line.qty for line in pickup.collect_lines})
    assert collected == reserved_units(decision)
    assert all(line.qty >= 1 for line in pickup.collect_lines)


@st.composite
def short_pickup_scenarios(draw: st.DrawFn) -> Scenario:
    """Pickup at a placed store with an empty shelf, among well-stocked stores at many distances."""
    _, cands, policy = draw(_scenarios(pickup=True, scarce=False))
    home = draw(st.sampled_from(cands)).code
    cands = [
        replace(c, lat=0.0, lon=0.0, stock={}, active=True, pickup=True, serves_channel=True)
        if c.code == home
        else replace(
            c,
            lat=draw(COORD),
            lon=draw(COORD),
            stock={sku: draw(st.integers(0, 4)) for sku in SKUS},
        )
        for c in cands
    ]
    skus = draw(st.lists(st.sampled_from(SKUS), unique=True, min_size=1))
    lines = tuple(Line(sku, draw(st.integers(1, 3))) for sku in skus)
    request = RoutingRequest(lines, PickupAt(home), allow_partial=draw(st.booleans()))
    # Refusing transfers is where alternatives matter most: the empty store never suffices.
    policy = replace(policy, pickup_shortfall="refuse", max_alternatives=draw(st.integers(1, 3)))
    return request, cands, policy


def distance_key(distance: float | None) -> tuple[bool, float]:
    return (distance is None, distance or 0.0)


@PROPERTY
@given(st.one_of(scenarios(pickup=True), short_pickup_scenarios()))
def test_alternatives_are_the_nearest_stores_that_could_serve_everything(
    scenario: Scenario,
) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    assert isinstance(request.delivery, PickupAt)
    home = request.delivery.location
    able = {
        c.code: c
        for c in cands
        if c.code != home
        and c.active
        and c.pickup
        and c.serves_channel
        and all(has(c, line.sku) >= line.qty for line in request.lines)
    }
    offered = [a.location for a in decision.alternatives]
    assert set(offered) <= set(able)
    if decision.status == "allocated":
        assert offered == []
        return
    assert len(offered) == min(policy.max_alternatives, len(able))
    keys = [distance_key(a.distance_km) for a in decision.alternatives]
    assert keys == sorted(keys), "nearest to the pickup store first, unknown distances last"
    if offered:
        worst = keys[-1]
        for code in set(able) - set(offered):
            note = next(n for n in decision.explanation if n.location == code)
            assert distance_key(note.distance_km) >= worst, "a nearer able store was left out"


@PROPERTY
@given(scenarios())
def test_every_candidate_gets_exactly_one_note(scenario: Scenario) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    assert sorted(n.location for n in decision.explanation) == sorted(c.code for c in cands)
    assert all(n.reason for n in decision.explanation)
    chosen = {n.location for n in decision.explanation if n.outcome == "chosen"}
    assert chosen == {a.location for a in decision.allocations}


@PROPERTY
@given(scenarios(pickup=False))
def test_partial_ship_order_is_refused_only_when_no_eligible_stock_exists(
    scenario: Scenario,
) -> None:
    request, cands, policy = scenario
    decision = route(request, cands, policy)
    useful = [c for c in cands if any(has(c, line.sku) > 0 for line in request.lines)]
    any_useful = any(ship_eligible(c) for c in useful)
    if request.allow_partial:
        assert (decision.status == "refused") == (not any_useful)


@settings(max_examples=100, deadline=None, database=None)
@given(st.floats(-90, 90), st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180))
def test_haversine_is_a_symmetric_bounded_distance(
    lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert 0.0 <= d <= 20_016.0  # half the Earth's circumference
    assert abs(d - haversine_km(lat2, lon2, lat1, lon1)) < 1e-6


@PROPERTY
@given(
    levels=st.dictionaries(
        st.sampled_from(CODES),
        st.fixed_dictionaries(
            {s: st.tuples(st.integers(-3, 8), st.integers(0, 6), st.integers(0, 4)) for s in SKUS}
        ),
        min_size=1,
    ),
    lines=st.lists(
        st.tuples(st.sampled_from(SKUS), st.integers(1, 6)), min_size=1, max_size=3, unique_by=lambda x: x[0]
    ),
    online=st.booleans(),
    split=st.booleans(),
    partial=st.booleans(),
)
def test_online_orders_never_take_safety_stock_nor_reserved_units(
    levels: dict[str, dict[str, tuple[int, int, int]]],
    lines: list[tuple[str, int]],
    online: bool,
    split: bool,
    partial: bool,
) -> None:
    # Candidates are built as the service builds them: free_units over (on_hand, reserved, safety).
    cands = [
        Candidate(code=code, lat=0.0, lon=0.01 * i, priority=1, remaining_capacity=None,
                  stock={s: free_units(*lvl, online=online) for s, lvl in by_sku.items()},
                  active=True, ships=True, pickup=True, serves_channel=True)
        for i, (code, by_sku) in enumerate(sorted(levels.items()))
    ]  # fmt: skip
    request = RoutingRequest(tuple(Line(s, q) for s, q in lines), ShipTo(0.0, 0.0), split, partial)
    decision = route(request, cands, RoutingPolicy(DEFAULT_CRITERIA, 3))
    for allocation in decision.allocations:
        for line in allocation.lines:
            on_hand, reserved, safety = levels[allocation.location][line.sku]
            assert line.qty <= on_hand - reserved - (safety if online else 0)
