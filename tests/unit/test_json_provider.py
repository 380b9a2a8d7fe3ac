from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from flask import Flask

from app import IsoJSONProvider


@pytest.fixture
def flask_app() -> Flask:
    app = Flask(__name__)
    app.json = IsoJSONProvider(app)
    return app


def test_answers_keep_iso_timestamps_dates_and_decimal_text(flask_app: Flask) -> None:
    payload = {
        "at": datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC),
        "local": datetime(2026, 11, 24, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        "day": date(2026, 11, 24),
        "price": Decimal("12.50"),
        "by_location": {7: 3},
        "name": "Café",
    }
    with flask_app.app_context():
        response = flask_app.json.response(payload)
    assert response.mimetype == "application/json"
    assert response.get_data().endswith(b"\n")
    assert flask_app.json.loads(response.get_data()) == {
        "at": "2026-11-24T09:30:00.123456+00:00",
        "local": "2026-11-24T10:30:00+01:00",
        "day": "2026-11-24",
        "price": "12.50",
        "by_location": {"7": 3},
        "name": "Café",
    }


def test_keys_stay_in_the_order_written(flask_app: Flask) -> None:
    assert flask_app.json.dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'


def test_invalid_json_is_a_value_error(flask_app: Flask) -> None:
    # Werkzeug's get_json(silent=True) relies on this to answer 400, not 500.
    with pytest.raises(ValueError):
        flask_app.json.loads(b"{NaN")
