"""Staff accounts (ops): who signs in to the pickup screen, and at which stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, GetCoreSchemaHandler, StrictBool
from pydantic_core import CoreSchema, core_schema

from app.schemas.types import LocationCode, PathModel, Strict, Text, _refuse_unstorable

MAX_STAFF_LOCATIONS = 100
USERNAME_PATTERN = r"^[a-z0-9._-]{3,64}$"


@dataclass(frozen=True)
class PasswordText(Text):
    """A password as typed: never trimmed (a space is part of it), no NUL or lone surrogate."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        checked = core_schema.str_schema(
            min_length=self.min_length, max_length=self.max_length, strip_whitespace=False
        )
        return core_schema.no_info_before_validator_function(_refuse_unstorable, checked)


Username = Annotated[
    str, Text(64, min_length=3, pattern=USERNAME_PATTERN, message="use 3 to 64 of a-z, 0-9 and . _ -")
]
Password = Annotated[
    str, PasswordText(1024, min_length=10), Field(description="At least 10 characters; never returned")
]
StaffLocations = list[LocationCode]


class StaffUserCreate(Strict):
    username: Username
    display_name: Annotated[str, Text(200)]
    password: Password
    locations: StaffLocations = Field(min_length=1, max_length=MAX_STAFF_LOCATIONS, description="Store codes")


class StaffUserUpdate(Strict):
    display_name: Annotated[str, Text(200)] | None = None
    password: Password | None = Field(None, description="A new password; ends the account's sessions")
    locations: StaffLocations | None = Field(None, min_length=1, max_length=MAX_STAFF_LOCATIONS)
    active: StrictBool | None = Field(None, description="false ends the account's sessions")


class StaffUserOut(BaseModel):
    username: str
    display_name: str
    active: bool
    locations: list[str]
    created_at: datetime
    updated_at: datetime


class StaffUserList(BaseModel):
    items: list[StaffUserOut]


class StaffUserPath(PathModel):
    username: Username
