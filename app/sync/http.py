"""HTTP to outside systems: one session with timeouts, bounded retries and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

DEFAULT_TIMEOUT = (3.05, 10.0)  # connect, read


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def session() -> requests.Session:
    """A plain session; callers pass timeout= on every call and own their retry policy."""
    s = requests.Session()
    s.headers["User-Agent"] = "omnistock/0.1"
    return s
