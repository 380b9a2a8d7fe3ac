"""One scope check for every caller: staff act only at their own locations."""

from __future__ import annotations

import pytest

from app.domain.access import Principal
from app.domain.errors import Forbidden


def _who(role: str, ids: frozenset[int] = frozenset()) -> Principal:
    return Principal(key_id=1, name="t", role=role, location_ids=ids, location_codes=("A",) if ids else ())


def test_staff_are_held_to_their_locations() -> None:
    staff = _who("staff", frozenset({1}))
    staff.require_location(1, "A")
    with pytest.raises(Forbidden) as caught:
        staff.require_location(2, "B")
    assert caught.value.details == {"location": "B"}
    assert staff.scope() == frozenset({1})


@pytest.mark.parametrize("role", ["ops", "storefront"])
def test_other_roles_have_no_location_scope(role: str) -> None:
    who = _who(role, frozenset({1}))
    who.require_location(2, "B")
    assert who.scope() is None
