"""The input rule every request field follows, as reusable types: text is storable and fits its
column, integers fit theirs, lists and JSON depth are capped, instants are representable.

Every bound is also stated in the JSON schema (maxLength, pattern, minimum, maximum, maxItems),
so /api/openapi.json says what is refused, and a refusal is a 422 naming the field.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictFloat,
    StrictInt,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from config import default as _config


class _SchemaOnce(BaseModel):
    """A model whose JSON schema is built once: flask-openapi3 asks a query model for it on every
    request (to find list parameters), and building it was a tenth of an availability call."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(_json_schema(cls, args, tuple(sorted(kwargs.items()))))


@cache
def _json_schema(cls: type[BaseModel], args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return BaseModel.model_json_schema.__func__(cls, *args, **dict(kwargs))  # type: ignore[attr-defined,no-any-return]


class Strict(_SchemaOnce):
    """A request model: unknown fields are refused so a misspelt field never silently does nothing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PathModel(_SchemaOnce):
    """Path parameters, trimmed as body fields are, so a value sent in a body finds itself in a path."""

    model_config = ConfigDict(str_strip_whitespace=True)


# ---------------------------------------------------------------- text
# PostgreSQL refuses NUL in text and SQLite stores it; a lone surrogate cannot be encoded as
# UTF-8 at all. Both are refused here, so the two databases give the same answer.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# What OpenAPI states of every free text (ECMA-262 and Python read \u0000 alike).
TEXT_PATTERN = r"^[^\u0000]*$"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"


def _refuse_unstorable(value: Any) -> Any:
    if isinstance(value, str) and (bad := _UNSTORABLE.search(value)) is not None:
        if bad.group() == "\x00":
            raise PydanticCustomError("text_nul", "must not contain NUL (U+0000) characters")
        raise PydanticCustomError("text_surrogate", "must not contain lone surrogates (not Unicode text)")
    return value


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class Text:
    """Text for a column of max_length characters (after trimming), with no NUL or lone surrogate.

    Use as `Annotated[str, Text(200)]`. `pattern` (anchored, ^...$) narrows the shape further; it
    is stated in the schema and checked here, refusing with `message` rather than the regex.
    """

    max_length: int
    min_length: int = 1
    pattern: str | None = None
    message: str = "is not in the expected form"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        checked: CoreSchema = core_schema.str_schema(min_length=self.min_length, max_length=self.max_length)
        if self.pattern is not None:
            checked = core_schema.no_info_after_validator_function(self._shaped, checked)
        return core_schema.no_info_before_validator_function(_refuse_unstorable, checked)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["pattern"] = self.pattern or TEXT_PATTERN
        return out

    def _shaped(self, value: str) -> str:
        # fullmatch: "$" alone would let a trailing newline through.
        if self.pattern is not None and _compiled(self.pattern).fullmatch(value) is None:
            raise PydanticCustomError("string_pattern_mismatch", self.message)
        return value


@dataclass(frozen=True)
class Code(Text):
    """A code (SKU, location, channel): letters, digits and . _ - , starting with a letter or digit."""

    pattern: str | None = CODE_PATTERN
    message: str = "use letters, digits and . _ - (starting with a letter or digit)"


# Codes, each bounded to its column (models.py): Sku.code and Location.code are String(64),
# Channel.code String(32).
SkuCode = Annotated[str, Code(64)]
LocationCode = Annotated[str, Code(64)]
ChannelCode = Annotated[str, Code(32)]
# Keyset cursors are base64url of small JSON values this API wrote itself.
Cursor = Annotated[
    str, Text(500, min_length=0, pattern=r"^[A-Za-z0-9_\-]*$", message="not a cursor this API gave")
]

# ---------------------------------------------------------------- integers
# Integer columns are 32-bit on PostgreSQL, BigInteger ones 64-bit; a number outside its column
# is a 422 here, never an overflow there.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_ID = INT64_MAX  # the old name of a 64-bit id's bound

# JSON bodies take numbers as JSON numbers: "2" or true for a quantity is a client bug to name,
# not to guess at. Query strings and paths stay lax (they are text by nature).
Int32 = Annotated[StrictInt, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
# Ids of Integer primary keys (locations, skus, channels, api keys, webhook subscriptions)...
Id32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
# ...and of BigInteger ones (orders, fulfilments, movements, events, deliveries).
Id64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
DbId = Id64
# An event id to read after (0: from the start).
EventId = Annotated[int, Field(ge=0, le=INT64_MAX)]

# ---------------------------------------------------------------- lists
PAGE_SIZE_MAX = int(_config.PAGE_SIZE_MAX)
PageSize = Annotated[int, Field(ge=1, le=PAGE_SIZE_MAX, description=f"Page size, 1..{PAGE_SIZE_MAX}")]
# The schema states the default caps; a deployment's config may only lower them (checked in routes).
MAX_BATCH_MOVEMENTS = int(_config.MAX_BATCH_MOVEMENTS)
MAX_AVAILABILITY_SKUS = int(_config.MAX_AVAILABILITY_SKUS)
MAX_ORDER_LINES = 200

# ---------------------------------------------------------------- coordinates
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
BodyLatitude = Annotated[StrictFloat, Field(ge=-90, le=90)]
BodyLongitude = Annotated[StrictFloat, Field(ge=-180, le=180)]


def coordinates_together(lat_given: bool, lon_given: bool) -> None:
    """lat and lon come as a pair; the error names the one missing."""
    if lat_given and not lon_given:
        raise ValueError("lon: give lon with lat (or neither)")
    if lon_given and not lat_given:
        raise ValueError("lat: give lat with lon (or neither)")


# ---------------------------------------------------------------- instants
UTC_MIN = datetime.min.replace(tzinfo=UTC)
UTC_MAX = datetime.max.replace(tzinfo=UTC)


def _clamped_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+14:00 is before the first UTC instant Python (and SQLite, PostgreSQL's
    # driver) can hold; as a filter bound it still has an exact meaning: everything after it.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return UTC_MIN if value.year == 1 else UTC_MAX


QueryInstant = Annotated[
    AwareDatetime,
    AfterValidator(_clamped_utc),
    Field(description="An RFC 3339 time with a time zone; bounds past year 1 or 9999 UTC mean 'no bound'"),
]

# When something happened in a shop: not before this, and not more than a day ahead (clock skew
# and time zones), so a mistyped year cannot become a movement from the far future or past.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
EVENT_AHEAD = timedelta(days=1)


def _event_time(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "give a time zone (e.g. 2026-01-31T10:00:00Z)")
    if value < EARLIEST_EVENT:
        raise PydanticCustomError("event_too_early", "must be 2000-01-01T00:00:00Z or later")
    if value > datetime.now(UTC) + EVENT_AHEAD:
        raise PydanticCustomError("event_in_future", "must be at most a day ahead of now")
    return value.astimezone(UTC)


EventTime = Annotated[
    datetime,
    AfterValidator(_event_time),
    Field(description="With a time zone; from 2000-01-01T00:00:00Z to at most a day ahead of now"),
]

# ---------------------------------------------------------------- JSON depth
# No request body this API takes nests deeper than a few levels; a deeper one is refused before
# it is parsed into models (the request guard applies it).
MAX_JSON_DEPTH = 32


def json_depth_exceeds(obj: Any, max_depth: int) -> bool:
    """Whether a parsed JSON value nests objects and arrays more than max_depth deep (a scalar is 0).

    Iterative, so a hostile nesting cannot exhaust the interpreter's recursion limit.
    """
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        if depth > max_depth:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return False
