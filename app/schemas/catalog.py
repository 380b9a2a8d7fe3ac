"""Reference data: locations, SKUs and channels."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from app.domain import pickup as pickup_rules
from app.schemas.types import (
    BodyLatitude,
    BodyLongitude,
    ChannelCode,
    Count,
    Cursor,
    LocationCode,
    PageSize,
    PathModel,
    SkuCode,
    Strict,
    Text,
    coordinates_together,
)

MAX_BULK_LOCATIONS = 1000
MAX_BULK_SKUS = 5000
MAX_CHANNELS_PER_LOCATION = 100
MAX_LOCATIONS_PER_CHANNEL = 10_000


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _iana_zone(name: str) -> str:
    # A zone the database of time zones does not know makes every quote and order a 500 later.
    if name not in _iana_zones():
        raise PydanticCustomError("timezone", "not an IANA time zone (e.g. Europe/London)")
    return name


Timezone = Annotated[str, Text(64), AfterValidator(_iana_zone)]


def refuse_repeated_codes(items: Sequence[LocationCreate | SkuIn], list_field: str, title: str) -> None:
    """One code twice in one bulk request is refused at the second one (items[i].code)."""
    first: dict[str, int] = {}
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(items):
        code = item.code
        if code in first:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError("duplicate", "{code} appears twice (first at [{first}])",
                                             {"code": code, "first": first[code]}),
                    loc=(list_field, i, "code"),
                    input=code,
                )
            )
        else:
            first[code] = i
    if errors:
        # Raised from a validator, a ValidationError keeps each error's own location.
        raise ValidationError.from_exception_data(title, errors)


# ---------------------------------------------------------------- locations
HHMM = Annotated[str, StringConstraints(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _hours_in_order(value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    try:
        pickup_rules.parse_hours(value)
    except ValueError as exc:
        raise PydanticCustomError("opening_hours", str(exc)) from exc
    return value


OpeningHoursIn = Annotated[
    dict[Weekday, Annotated[list[tuple[HHMM, HHMM]], Field(max_length=4)]], AfterValidator(_hours_in_order)
]
class LocationFields(Strict):
    name: Annotated[str, Text(200)] | None = None
    kind: Literal["store", "warehouse"] | None = None
    lat: BodyLatitude | None = None
    lon: BodyLongitude | None = None
    postcode: Annotated[str, Text(16, min_length=0)] | None = None
    timezone: Timezone | None = Field(None, description="An IANA time zone, e.g. Europe/London")
    active: StrictBool | None = None
    ships: StrictBool | None = None
    pickup: StrictBool | None = None
    priority: StrictInt | None = Field(None, ge=0, le=1_000_000)
    daily_capacity: Count | None = Field(None, description="Shipments per day; null = unlimited")
    pick_minutes: StrictInt | None = Field(None, ge=0, le=7 * 24 * 60)
    pickup_hold_hours: StrictInt | None = Field(None, ge=1, le=24 * 60)
    pickup_reminder_hours: StrictInt | None = Field(
        None, ge=0, le=24 * 60, description="Hours before a ready pickup's deadline the reminder goes (0: none)"
    )
    opening_hours: OpeningHoursIn | None = Field(
        None, description='Local opening hours per weekday, e.g. {"mon": [["09:00", "17:30"]]}; a day left out '
        "is closed; null: always open. Promised ready times fall inside them"
    )
    transfer_hours: StrictInt | None = Field(None, ge=0, le=24 * 60, description="Transit time of a transfer into this store")
    not_found_policy: Literal["reroute", "cancel"] | None = Field(
        None, description="A line staff cannot find: re-route it to another location, or cancel it"
    )
    default_safety_stock: Count | None = None
    channels: list[ChannelCode] | None = Field(
        None, max_length=MAX_CHANNELS_PER_LOCATION, description="Channels this location serves"
    )

    @model_validator(mode="after")
    def _coordinates_together(self) -> LocationFields:
        coordinates_together("lat" in self.model_fields_set, "lon" in self.model_fields_set)
        return self


class LocationCreate(LocationFields):
    code: LocationCode
    name: Annotated[str, Text(200)]  # type: ignore[assignment]
    kind: Literal["store", "warehouse"]  # type: ignore[assignment]


class LocationUpdate(LocationFields):
    pass


class LocationBulk(Strict):
    locations: list[LocationCreate] = Field(min_length=1, max_length=MAX_BULK_LOCATIONS)

    @model_validator(mode="after")
    def _distinct(self) -> LocationBulk:
        refuse_repeated_codes(self.locations, "locations", type(self).__name__)
        return self


class LocationOut(BaseModel):
    code: str
    name: str
    kind: str
    lat: float | None
    lon: float | None
    postcode: str | None
    timezone: str
    active: bool
    ships: bool
    pickup: bool
    priority: int
    daily_capacity: int | None
    pick_minutes: int
    pickup_hold_hours: int
    default_safety_stock: int
    channels: list[str]
    pickup_reminder_hours: int
    opening_hours: dict[str, list[list[str]]] | None
    transfer_hours: int
    not_found_policy: str


class LocationList(BaseModel):
    items: list[LocationOut]


class LocationPath(PathModel):
    code: LocationCode


# ---------------------------------------------------------------- skus
class SkuIn(Strict):
    code: SkuCode
    name: Annotated[str, Text(300)]
    barcode: Annotated[str, Text(64)] | None = None
    active: StrictBool = True


class SkuBulk(Strict):
    skus: list[SkuIn] = Field(min_length=1, max_length=MAX_BULK_SKUS)

    @model_validator(mode="after")
    def _distinct(self) -> SkuBulk:
        refuse_repeated_codes(self.skus, "skus", type(self).__name__)
        return self


class SkuUpdate(Strict):
    name: Annotated[str, Text(300)] | None = None
    barcode: Annotated[str, Text(64)] | None = None
    active: StrictBool | None = None


class SkuOut(BaseModel):
    code: str
    name: str
    barcode: str | None
    active: bool


class SkuUpsertResult(BaseModel):
    created: int
    updated: int
    items: list[SkuOut]


class SkuPath(PathModel):
    code: SkuCode


class SkuListQuery(Strict):
    cursor: Cursor | None = None
    limit: PageSize | None = None


class SkuList(BaseModel):
    items: list[SkuOut]
    next_cursor: str | None


# ---------------------------------------------------------------- channels
class ChannelIn(Strict):
    code: ChannelCode
    name: Annotated[str, Text(200)]
    kind: Literal["online", "store"] = "online"
    locations: list[LocationCode] = Field(default_factory=list, max_length=MAX_LOCATIONS_PER_CHANNEL)


class ChannelOut(BaseModel):
    code: str
    name: str
    kind: str
    locations: list[str]


class ChannelList(BaseModel):
    items: list[ChannelOut]

