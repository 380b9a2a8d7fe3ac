"""Example-based tests for app.domain.routing: one test per routing rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from app.domain.geo import haversine_km
from app.domain.routing import (
    Allocation,
    Alternative,
    Candidate,
    CandidateNote,
    Line,
    PickupAt,
    RoutingDecision,
    RoutingPolicy,
    RoutingRequest,
    ShipTo,
    route,
)

CUSTOMER = ShipTo(0.0, 0.0)


def a_location(code: str, km_north: float | None = 1.0, **overrides: Any) -> Candidate:
    """A shipping location `km_north` km north of the customer (None = no coordinates)."""
    fields: dict[str, Any] = {
        "code": code,
        "lat": None if km_north is None else km_north / 111.195,
        "lon": None if km_north is None else 0.0,
        "priority": 1,
        "remaining_capacity": None,
        "stock": {},
    }
    fields.update(overrides)
    return Candidate(**fields)


def a_store(code: str, km_north: float | None = 1.0, **overrides: Any) -> Candidate:
    """A click-and-collect store that does not ship."""
    overrides.setdefault("pickup", True)
    overrides.setdefault("ships", False)
    return a_location(code, km_north, **overrides)


def ship(*lines: tuple[str, int], **flags: bool) -> RoutingRequest:
    return RoutingRequest(tuple(Line(s, q) for s, q in lines), CUSTOMER, **flags)


def collect_at(store: str, *lines: tuple[str, int], **flags: bool) -> RoutingRequest:
    return RoutingRequest(tuple(Line(s, q) for s, q in lines), PickupAt(store), **flags)


def note(decision: RoutingDecision, code: str) -> CandidateNote:
    (found,) = [n for n in decision.explanation if n.location == code]
    return found


def plan(decision: RoutingDecision) -> dict[str, dict[str, int]]:
    """location -> sku -> qty taken there, for compact assertions."""
    return {a.location: {ln.sku: ln.qty for ln in a.lines} for a in decision.allocations}


def stock(**units: int) -> Mapping[str, int]:
    return dict(units)


# --- distance --------------------------------------------------------------------------------


def test_haversine_matches_a_known_city_distance() -> None:
    paris_london = haversine_km(48.8566, 2.3522, 51.5074, -0.1278)
    assert paris_london == pytest.approx(343.5, abs=1.0)
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(20015.1, abs=1.0)


# --- rule 2: single location beats a split ---------------------------------------------------


def test_one_location_covering_the_whole_order_beats_a_nearer_split() -> None:
    candidates = [
        a_location("NEAR-A", 1, stock=stock(X=5)),
        a_location("NEAR-B", 2, stock=stock(Y=5)),
        a_location("FAR", 500, stock=stock(X=1, Y=1)),
    ]
    decision = route(ship(("X", 1), ("Y", 1)), candidates)
    assert decision.status == "allocated"
    assert decision.allocations == (Allocation("FAR", "ship", (Line("X", 1), Line("Y", 1))),)
    assert decision.backordered == ()
    assert note(decision, "FAR").outcome == "chosen"
    assert note(decision, "NEAR-A").reason == "covers 1 of 2 lines (short: Y needs 1, has 0)"


def test_nearest_full_location_wins_by_default_and_the_loser_is_told_why() -> None:
    candidates = [
        a_location("FAR", 12.3, priority=1, stock=stock(X=9)),
        a_location("NEAR", 2.1, priority=5, stock=stock(X=9)),
    ]
    decision = route(ship(("X", 2)), candidates)
    assert plan(decision) == {"NEAR": {"X": 2}}
    far = note(decision, "FAR")
    assert (far.outcome, far.reason) == ("rejected", "farther: 12.3 km vs 2.1 km")
    assert far.distance_km == pytest.approx(12.3, abs=0.01)
    # Chosen candidate is listed first.
    assert decision.explanation[0].location == "NEAR"


def test_criteria_order_changes_the_winner() -> None:
    candidates = [
        a_location("FAR", 12.3, priority=1, stock=stock(X=9)),
        a_location("NEAR", 2.1, priority=5, stock=stock(X=9)),
    ]
    policy = RoutingPolicy(criteria=("priority", "distance"))
    decision = route(ship(("X", 2)), candidates, policy)
    assert plan(decision) == {"FAR": {"X": 2}}
    assert note(decision, "NEAR").reason == "lower priority: 5 vs 1"


def test_unlimited_capacity_ranks_before_any_finite_capacity() -> None:
    candidates = [
        a_location("BIG", 1, remaining_capacity=100, stock=stock(X=9)),
        a_location("FREE", 1, remaining_capacity=None, stock=stock(X=9)),
        a_location("SMALL", 1, remaining_capacity=2, stock=stock(X=9)),
    ]
    decision = route(ship(("X", 1)), candidates)
    assert plan(decision) == {"FREE": {"X": 1}}
    assert note(decision, "BIG").reason == "less capacity left today: 100 vs unlimited"
    assert [n.location for n in decision.explanation] == ["FREE", "BIG", "SMALL"]


def test_stock_depth_breaks_a_tie_when_everything_else_is_equal() -> None:
    candidates = [
        a_location("SHALLOW", 1, stock=stock(X=2, Y=1)),
        a_location("DEEP", 1, stock=stock(X=8, Y=1, Z=100)),
    ]
    decision = route(ship(("X", 2), ("Y", 1)), candidates)
    assert plan(decision) == {"DEEP": {"X": 2, "Y": 1}}
    # Depth counts only the ordered skus: Z does not count.
    assert note(decision, "SHALLOW").reason == "less stock depth: 3 vs 9 units"


def test_complete_tie_is_broken_by_location_code() -> None:
    candidates = [a_location(code, 1, stock=stock(X=1)) for code in ("C", "A", "B")]
    decision = route(ship(("X", 1)), candidates)
    assert plan(decision) == {"A": {"X": 1}}
    assert note(decision, "B").reason == "tie on every criterion, broken by code: B after A"


def test_unknown_coordinates_rank_after_every_known_distance() -> None:
    candidates = [
        a_location("NOWHERE", None, stock=stock(X=1)),
        a_location("FAR", 900, stock=stock(X=1)),
    ]
    decision = route(ship(("X", 1)), candidates)
    assert plan(decision) == {"FAR": {"X": 1}}
    assert note(decision, "NOWHERE").reason.startswith("farther: unknown distance vs 900")
    assert note(decision, "NOWHERE").distance_km is None


# --- rule 1: exclusions ----------------------------------------------------------------------


def test_location_without_capacity_left_today_is_excluded_even_if_nearest() -> None:
    candidates = [
        a_location("FULL", 1, remaining_capacity=0, stock=stock(X=5)),
        a_location("OK", 50, remaining_capacity=1, stock=stock(X=5)),
    ]
    decision = route(ship(("X", 1)), candidates)
    assert plan(decision) == {"OK": {"X": 1}}
    assert note(decision, "FULL").outcome == "excluded"
    assert note(decision, "FULL").reason == "no capacity left today"


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"active": False}, "inactive"),
        ({"serves_channel": False}, "does not serve this channel"),
        ({"ships": False}, "does not ship"),
        ({"active": False, "ships": False}, "inactive, does not ship"),
    ],
)
def test_ineligible_locations_are_excluded_with_the_reason(
    flags: dict[str, bool],
    reason: str,
) -> None:
    candidates = [
        a_location("BAD", 1, stock=stock(X=5), **flags),
        a_location("GOOD", 80, stock=stock(X=5)),
    ]
    decision = route(ship(("X", 1)), candidates)
    assert plan(decision) == {"GOOD": {"X": 1}}
    bad = note(decision, "BAD")
    assert (bad.outcome, bad.reason) == ("excluded", reason)
    assert bad.distance_km == pytest.approx(1.0, abs=0.01)
    assert [n.outcome for n in decision.explanation] == ["chosen", "excluded"]


def test_only_excluded_locations_have_stock_so_the_order_is_refused() -> None:
    candidates = [a_location("OFF", 1, active=False, stock=stock(X=5))]
    decision = route(ship(("X", 1), allow_partial=True), candidates)
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.allocations == ()


# --- rule 3: bounded greedy split ------------------------------------------------------------


def test_split_takes_the_location_covering_most_units_first_and_splits_a_line() -> None:
    candidates = [
        a_location("A", 1, stock=stock(X=3)),
        a_location("B", 2, stock=stock(X=4, Y=2)),
        a_location("C", 3, stock=stock(Y=5)),
    ]
    decision = route(ship(("X", 5), ("Y", 2)), candidates)
    assert decision.status == "allocated"
    # B covers 6 of 7 units, then A's 1 unit of X finishes it; C is not needed.
    assert plan(decision) == {"A": {"X": 1}, "B": {"X": 4, "Y": 2}}
    assert [a.type for a in decision.allocations] == ["ship", "ship"]
    assert note(decision, "B").reason.startswith("shipment 1 of 2: 6 of 7 units")
    expected = "shipment 1 went to B: covers fewer still-needed units: 2 vs 6"
    assert note(decision, "C").reason == expected


def test_split_is_bounded_by_max_shipments() -> None:
    candidates = [a_location(c, 1, stock=stock(X=1)) for c in ("A", "B", "C")]
    order = ship(("X", 3))
    assert plan(route(order, candidates, RoutingPolicy(max_shipments=3))) == {
        "A": {"X": 1},
        "B": {"X": 1},
        "C": {"X": 1},
    }
    refused = route(order, candidates, RoutingPolicy(max_shipments=2))
    assert refused.status == "refused"
    assert refused.reason == "insufficient_stock"
    assert refused.allocations == ()
    assert refused.backordered == ()
    assert {n.outcome for n in refused.explanation} == {"rejected"}


def test_split_not_allowed_refuses_an_order_no_single_location_covers() -> None:
    candidates = [a_location("A", 1, stock=stock(X=1)), a_location("B", 1, stock=stock(Y=1))]
    decision = route(ship(("X", 1), ("Y", 1), allow_split=False), candidates)
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.allocations == ()


def test_a_location_with_finite_capacity_can_still_be_one_shipment_of_a_split() -> None:
    candidates = [
        a_location("A", 1, remaining_capacity=1, stock=stock(X=5)),
        a_location("B", 1, remaining_capacity=1, stock=stock(Y=5)),
    ]
    decision = route(ship(("X", 5), ("Y", 5)), candidates)
    assert decision.status == "allocated"
    assert plan(decision) == {"A": {"X": 5}, "B": {"Y": 5}}


# --- rule 4: partial allocation and backorders -----------------------------------------------


def test_partial_split_backorders_what_the_bounded_split_cannot_cover() -> None:
    candidates = [
        a_location("A", 1, stock=stock(X=2)),
        a_location("B", 2, stock=stock(X=1, Y=1)),
        a_location("C", 3, stock=stock(X=1)),
    ]
    order = ship(("X", 5), ("Y", 2), allow_partial=True)
    decision = route(order, candidates, RoutingPolicy(max_shipments=2))
    assert decision.status == "partial"
    assert plan(decision) == {"A": {"X": 2}, "B": {"X": 1, "Y": 1}}
    assert decision.backordered == (Line("X", 2), Line("Y", 1))
    assert note(decision, "C").reason == "limit of 2 shipments reached"


def test_partial_without_split_uses_the_one_location_covering_most_units() -> None:
    candidates = [
        a_location("NEAR", 1, stock=stock(X=1, Y=1)),
        a_location("FAR", 90, stock=stock(X=3)),
    ]
    order = ship(("X", 4), ("Y", 1), allow_split=False, allow_partial=True)
    decision = route(order, candidates)
    assert decision.status == "partial"
    assert plan(decision) == {"FAR": {"X": 3}}
    assert decision.backordered == (Line("X", 1), Line("Y", 1))


def test_partial_allowed_but_nothing_in_stock_is_refused() -> None:
    candidates = [a_location("A", 1, stock=stock(X=0, Y=-3)), a_location("B", 1)]
    decision = route(ship(("X", 1), ("Y", 1), allow_partial=True), candidates)
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.backordered == ()
    assert note(decision, "A").reason == "no stock for the ordered lines"


def test_negative_stock_counts_as_none_and_unordered_skus_are_never_allocated() -> None:
    candidates = [a_location("A", 1, stock=stock(X=-5, Y=3, Z=10))]
    decision = route(ship(("X", 1), ("Y", 5), allow_partial=True), candidates)
    assert decision.status == "partial"
    assert plan(decision) == {"A": {"Y": 3}}
    assert decision.backordered == (Line("X", 1), Line("Y", 2))


# --- rule 5: click-and-collect ---------------------------------------------------------------


def test_pickup_store_with_every_line_reserves_everything_itself() -> None:
    candidates = [
        a_store("SHOP", 0, remaining_capacity=0, stock=stock(X=2, Y=9)),
        a_location("WAREHOUSE", 1, stock=stock(X=99, Y=99)),
    ]
    decision = route(collect_at("SHOP", ("X", 2), ("Y", 1)), candidates)
    lines = (Line("X", 2), Line("Y", 1))
    # Capacity counts shipments, so a pickup store with capacity 0 still serves pickups.
    assert decision.status == "allocated"
    assert decision.allocations == (Allocation("SHOP", "pickup", lines, collect_lines=lines),)
    assert note(decision, "WAREHOUSE").reason == "not needed: the pickup store has every line"


def test_pickup_shortfall_is_transferred_from_the_nearest_sources() -> None:
    candidates = [
        a_store("SHOP", 0, stock=stock(X=1)),
        a_location("FAR", 40, stock=stock(X=9, Y=9)),
        a_location("NEAR", 5, ships=False, remaining_capacity=0, stock=stock(X=1, Y=1)),
        a_location("MID", 10, active=False, stock=stock(X=9, Y=9)),
    ]
    decision = route(collect_at("SHOP", ("X", 3), ("Y", 2)), candidates)
    assert decision.status == "allocated"
    assert decision.allocations == (
        Allocation(
            "SHOP",
            "pickup",
            (Line("X", 1),),
            collect_lines=(Line("X", 3), Line("Y", 2)),
        ),
        Allocation("FAR", "transfer", (Line("X", 1), Line("Y", 1)), to_location="SHOP"),
        # Transfers are internal: neither "ships" nor capacity matters for a source.
        Allocation("NEAR", "transfer", (Line("X", 1), Line("Y", 1)), to_location="SHOP"),
    )
    assert note(decision, "MID").outcome == "excluded"
    assert note(decision, "NEAR").reason == "transfers 2 units to SHOP"
    assert decision.alternatives == ()


def test_pickup_transfer_sources_are_bounded_by_max_shipments() -> None:
    candidates = [
        a_store("SHOP", 0, stock=stock()),
        a_location("S1", 1, stock=stock(X=1)),
        a_location("S2", 2, stock=stock(X=1)),
        a_location("S3", 3, stock=stock(X=1)),
    ]
    order = collect_at("SHOP", ("X", 3))
    decision = route(order, candidates, RoutingPolicy(max_shipments=2))
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.allocations == ()

    partial = route(
        collect_at("SHOP", ("X", 3), allow_partial=True), candidates, RoutingPolicy(max_shipments=2)
    )
    assert partial.status == "partial"
    assert plan(partial) == {"SHOP": {}, "S1": {"X": 1}, "S2": {"X": 1}}
    assert partial.allocations[0].collect_lines == (Line("X", 2),)
    assert partial.backordered == (Line("X", 1),)
    assert note(partial, "S3").reason == "limit of 2 transfers reached"


def test_pickup_refuse_policy_offers_the_nearest_stores_that_could_serve_it_all() -> None:
    candidates = [
        a_store("SHOP", 0, stock=stock(X=1)),
        a_store("ALT-FAR", 30, stock=stock(X=5)),
        a_store("ALT-NEAR", 3, stock=stock(X=5)),
        a_store("ALT-MID", 9, stock=stock(X=2)),
        a_store("TOO-SMALL", 1, stock=stock(X=1)),
        a_store("CLOSED", 2, active=False, stock=stock(X=5)),
        a_location("WAREHOUSE", 1, stock=stock(X=50)),  # not a pickup store
    ]
    policy = RoutingPolicy(pickup_shortfall="refuse", max_alternatives=2)
    decision = route(collect_at("SHOP", ("X", 2)), candidates, policy)
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.allocations == ()
    assert [a.location for a in decision.alternatives] == ["ALT-NEAR", "ALT-MID"]
    assert decision.alternatives[0].distance_km == pytest.approx(3.0, abs=0.01)
    assert note(decision, "WAREHOUSE").reason == "transfers are disabled by policy"
    assert "offered as alternative" in note(decision, "ALT-MID").reason
    assert "offered as alternative" not in note(decision, "ALT-FAR").reason


def test_pickup_refused_when_no_location_has_enough_to_transfer() -> None:
    candidates = [
        a_store("SHOP", 0, stock=stock(X=1)),
        a_location("A", 1, stock=stock(X=1)),
        a_store("OTHER", 8, stock=stock(X=3)),
    ]
    decision = route(collect_at("SHOP", ("X", 6)), candidates)
    assert decision.status == "refused"
    assert decision.reason == "insufficient_stock"
    assert decision.alternatives == ()  # nobody can serve all 6
    assert note(decision, "A").reason == "would transfer 1 unit, but 1 unit would still be missing"


def test_pickup_partial_with_refuse_policy_keeps_the_stores_own_units() -> None:
    candidates = [a_store("SHOP", 0, stock=stock(X=1)), a_store("ALT", 4, stock=stock(X=9))]
    policy = RoutingPolicy(pickup_shortfall="refuse")
    decision = route(collect_at("SHOP", ("X", 3), allow_partial=True), candidates, policy)
    assert decision.status == "partial"
    assert decision.allocations == (
        Allocation("SHOP", "pickup", (Line("X", 1),), collect_lines=(Line("X", 1),)),
    )
    assert decision.backordered == (Line("X", 2),)
    assert [a.location for a in decision.alternatives] == ["ALT"]


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"pickup": False}, "does not offer pickup"),
        ({"active": False}, "inactive"),
        ({"serves_channel": False}, "does not serve this channel"),
    ],
)
def test_pickup_at_a_store_that_cannot_hand_over_is_refused(
    flags: dict[str, bool],
    reason: str,
) -> None:
    candidates = [
        a_store("SHOP", 0, stock=stock(X=9), **flags),
        a_store("ALT", 2, stock=stock(X=9)),
    ]
    decision = route(collect_at("SHOP", ("X", 1)), candidates)
    assert decision.status == "refused"
    assert decision.reason == "pickup_location_unavailable"
    assert decision.allocations == ()
    assert note(decision, "SHOP").outcome == "excluded"
    assert note(decision, "SHOP").reason == reason
    assert [a.location for a in decision.alternatives] == ["ALT"]


def test_pickup_at_an_unknown_store_is_refused() -> None:
    decision = route(collect_at("GHOST", ("X", 1)), [a_store("SHOP", 0, stock=stock(X=9))])
    assert decision.status == "refused"
    assert decision.reason == "pickup_location_unavailable"
    assert note(decision, "SHOP").reason == (
        "not the requested pickup store GHOST; could serve the whole order (offered as alternative)"
    )
    assert decision.alternatives == (Alternative("SHOP", None),)


# --- determinism and input validation --------------------------------------------------------


def test_candidate_order_does_not_change_the_decision() -> None:
    candidates = [
        a_location("A", 1, stock=stock(X=1)),
        a_location("B", 1, stock=stock(X=1, Y=1)),
        a_location("C", 1, stock=stock(Y=1)),
        a_location("D", 1, active=False, stock=stock(X=9, Y=9)),
    ]
    order = ship(("X", 2), ("Y", 2), allow_partial=True)
    assert route(order, candidates) == route(order, list(reversed(candidates)))


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        route(ship(("X", 1)), [a_location("A"), a_location("A")])
    with pytest.raises(ValueError, match="distinct"):
        ship(("X", 1), ("X", 2))
    with pytest.raises(ValueError, match="qty"):
        Line("X", 0)
    with pytest.raises(ValueError, match="at least one line"):
        RoutingRequest((), CUSTOMER)
    with pytest.raises(ValueError, match="max_shipments"):
        RoutingPolicy(max_shipments=0)
    with pytest.raises(ValueError, match="criteria"):
        RoutingPolicy(criteria=("distance", "colour"))  # type: ignore[arg-type]


def test_postcode_rows_are_normalised_and_every_fault_is_named_by_line() -> None:
    from app.domain.geo import normal_postcode, parse_postcode_rows

    assert normal_postcode("  sw9   8ab ") == "SW9 8AB"
    places, errors = parse_postcode_rows([
        {"postcode": "sw9 8ab", "lat": "51.47", "lon": "-0.11"},
        {"postcode": "", "lat": "51", "lon": "0"},
        {"postcode": "E1 6AN", "lat": "91", "lon": "0"},
        {"postcode": "N1 9GU", "lat": "north", "lon": "0"},
        {"postcode": "SW9  8AB", "lat": "51.48", "lon": "-0.12"},
    ])  # fmt: skip
    assert places == [("SW9 8AB", 51.48, -0.12)]  # the later line for the same postcode wins
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 5"]
