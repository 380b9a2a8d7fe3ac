"""Who is acting, and where they may act. Invariant: staff see and change only their own
locations' data; every check of that goes through Scope (the API answers 403 for the rest).

A Principal comes from an API key today and from a signed-in staff session later; both give the
same Principal, so services and routes never care which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.errors import Forbidden


class Scope(frozenset[int]):
    """The location ids a staff member may see and act on (a frozenset of ids, with their codes)."""

    codes: frozenset[str]

    def __new__(cls, location_ids: Iterable[int], codes: Iterable[str] = ()) -> Scope:
        scope = super().__new__(cls, location_ids)
        scope.codes = frozenset(codes)
        return scope

    @property
    def location_ids(self) -> frozenset[int]:
        return frozenset(self)

    def require(self, location_id: int | None, code: str | None = None) -> None:
        """Refuse (403) anything at a location outside the scope."""
        if location_id not in self:
            where = f"location {code}" if code else "that location"
            raise Forbidden(f"you may not act at {where}", **({"location": code} if code else {}))

    def require_any(self, location_ids: Iterable[int], what: str) -> None:
        """Refuse (403) an object that has nothing at the scope's locations."""
        if not self & set(location_ids):
            raise Forbidden(what)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an id, a display name, one role and (for staff) the locations it may act on."""

    key_id: int | None  # the API key; None for a signed-in staff session
    name: str
    role: str
    location_ids: frozenset[int]
    location_codes: tuple[str, ...]
    user_id: int | None = None  # the staff account of a signed-in session

    def scope(self) -> Scope | None:
        """Locations this caller is limited to; None means all (ops, storefront)."""
        return Scope(self.location_ids, self.location_codes) if self.role == "staff" else None

    def require_location(self, location_id: int | None, code: str | None = None) -> None:
        """Refuse (403) acting at a location outside this caller's scope; ops and storefront have none."""
        scope = self.scope()
        if scope is not None:
            scope.require(location_id, code)
