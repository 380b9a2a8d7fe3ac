from flask import Flask
from pydantic import ValidationError

from app.schemas import MovementBatch
from app.web.errors import validation_problem


def _errors(payload: dict) -> list[dict]:
    try:
        MovementBatch.model_validate(payload)
    except ValidationError as exc:
        with Flask(__name__).test_request_context("/api/v1/stock/movements"):
            response = validation_problem(exc)
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        return response.get_json()["errors"]
    raise AssertionError("payload was accepted")


def test_validation_errors_name_the_field_inside_the_batch() -> None:
    errors = _errors(
        {
            "movements": [
                {"kind": "receipt", "sku": "A", "location": "L", "qty": 1},
                {"kind": "receipt", "sku": "A", "location": "L", "qty": 0},
            ]
        }
    )
    assert errors == [{"field": "movements[1].qty", "message": "a receipt moves at least one unit"}]


def test_unknown_fields_are_refused_by_name() -> None:
    errors = _errors({"movements": [{"kind": "receipt", "sku": "A", "location": "L", "qty": 1, "qty2": 3}]})
    assert errors[0]["field"] == "movements[0].qty2"


def test_a_transfer_needs_a_different_receiving_location() -> None:
    errors = _errors(
        {"movements": [{"kind": "transfer", "sku": "A", "location": "L", "qty": 1, "to_location": "L"}]}
    )
    assert errors[0]["field"] == "movements[0].to_location"
