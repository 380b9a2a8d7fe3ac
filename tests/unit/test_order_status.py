"""The order status rule: an order is completed only when nothing is left to do."""

import pytest

from app.domain.fulfilment import order_status


@pytest.mark.parametrize(
    ("fulfilments", "backordered", "status"),
    [
        # Work still open: allocated, or partially so beside back-ordered units.
        ([("ship", "allocated")], 0, "allocated"),
        ([("ship", "picking")], 2, "partially_allocated"),
        ([("pickup", "ready_for_pickup"), ("transfer", "received")], 0, "allocated"),
        ([("pickup", "allocated"), ("transfer", "shipped")], 0, "allocated"),
        # The allocated part is delivered but back-ordered units remain: not completed.
        ([("ship", "shipped")], 2, "backordered"),
        ([("pickup", "collected"), ("transfer", "received")], 1, "backordered"),
        ([("ship", "shipped"), ("ship", "cancelled")], 3, "backordered"),
        ([], 4, "backordered"),  # nothing could be allocated at all
        ([("ship", "cancelled")], 4, "backordered"),
        # Nothing left to do: completed if something was delivered, cancelled if nothing was.
        ([("ship", "shipped")], 0, "completed"),
        ([("ship", "shipped"), ("ship", "cancelled")], 0, "completed"),
        ([("pickup", "collected"), ("transfer", "received")], 0, "completed"),
        ([("ship", "cancelled")], 0, "cancelled"),
        ([("pickup", "expired"), ("transfer", "received")], 0, "cancelled"),
        ([("pickup", "cancelled"), ("transfer", "cancelled")], 0, "cancelled"),
    ],
)
def test_an_order_status_follows_its_fulfilments_and_back_ordered_units(
    fulfilments: list[tuple[str, str]], backordered: int, status: str
) -> None:
    assert order_status(fulfilments, backordered) == status
