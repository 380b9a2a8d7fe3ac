"""Problem details (RFC 9457): the one error body every route answers, and how routes document it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

PROBLEM_MEDIA_TYPE = "application/problem+json"
_AS_PROBLEM_JSON = {"content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code`."""

    # Errors go out as application/problem+json: say so beside flask-openapi3's application/json
    # (flask-openapi3 reads openapi_extra from the model config, which pydantic's type does not know).
    model_config = ConfigDict(openapi_extra=_AS_PROBLEM_JSON)  # type: ignore[typeddict-unknown-key]

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, type[Problem]]:
    """The `responses=` entries documenting the problem answers a route gives, by status."""
    for status in statuses:
        if not 400 <= status <= 599:
            raise ValueError(f"{status} is not an error status")
    return {status: Problem for status in statuses}
