"""HTTP to outside systems: one session with timeouts, bounded retries and Retry-After."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from app.sync.base import (
    AuthError,
    MalformedResponse,
    NotFound,
    RateLimited,
    SyncError,
    TransientError,
    VendorRejected,
)

DEFAULT_TIMEOUT = (3.05, 10.0)  # connect, read


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; Shopify sends "2.0"
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(seconds, 0.0)
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


def vendor_time(resp: requests.Response) -> datetime | None:
    """The vendor's clock at answer time, from the Date header (None when absent or garbled)."""
    value = resp.headers.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# A vendor asking us to wait longer than this fails the run instead: the next scheduled run
# retries from the same cursor, and a sync job must not sit on its lease for minutes.
MAX_WAIT_S = 60.0


class VendorHTTP:
    """One vendor's HTTP: explicit timeouts, bounded jittered retries, Retry-After, rate signals.

    `throttle(resp)` lets a connector read its vendor's own rate signals: it returns seconds to
    wait before retrying this request (Shopify THROTTLED inside a 200), or None. `pace(resp)`
    returns seconds to wait before the *next* request (a leaky bucket near full). `clock` and
    `sleep` are injectable so tests never really wait.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 30.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        throttle: Callable[[requests.Response], float | None] | None = None,
        pace: Callable[[requests.Response], float | None] | None = None,
        rng: random.Random | None = None,
        error_code: Callable[[requests.Response], str | None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session()
        self.session.headers.update(headers or {})
        if auth:
            self.session.auth = auth
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_wait_s = max_wait_s
        self.clock = clock if clock is not None else time.time
        self.sleep = sleep if sleep is not None else time.sleep
        self.throttle = throttle
        self.pace = pace
        self.error_code = error_code  # the vendor's own code of an error answer (SyncError.code)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.requests_made = 0
        self.retries = 0
        self.waited_s = 0.0
        self._not_before = 0.0

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def _backoff(self, attempt: int) -> float:
        # Full jitter: a random wait up to the exponential cap, so many clients spread out.
        return self.rng.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))

    def _wait(self, seconds: float, why: str, status: int | None) -> None:
        if seconds > self.max_wait_s:
            raise RateLimited(
                f"{why}: the vendor asked to wait {seconds:.0f} s", retry_after=seconds, status=status
            )
        if seconds > 0:
            self.waited_s += seconds
            self.sleep(seconds)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send once, retrying what may be retried; a write without an idempotency guard
        (`idempotent=False`) is retried only when it certainly did not reach the vendor."""
        url = self.url(path)
        last: SyncError | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
            gap = self._not_before - self.clock()
            if gap > 0:
                self._wait(gap, "pacing", None)
            self.requests_made += 1
            try:
                resp = self.session.request(
                    method, url, json=json, params=params, data=data, headers=headers,
                    timeout=self.timeout, allow_redirects=False, stream=stream,
                )  # fmt: skip
            except requests.ConnectTimeout as exc:
                last = TransientError(f"{method} {url}: connect timeout ({exc.__class__.__name__})")
                self._wait(self._backoff(attempt), str(last), None)
                continue
            except requests.ConnectionError as exc:
                # The request may have been applied before the connection dropped.
                last = TransientError(f"{method} {url}: connection failed: {str(exc)[:200]}")
                if not idempotent:
                    raise last from exc
                self._wait(self._backoff(attempt), str(last), None)
                continue
            except requests.Timeout as exc:
                last = TransientError(f"{method} {url}: read timeout after {self.timeout[1]} s")
                if not idempotent:
                    raise last from exc
                self._wait(self._backoff(attempt), str(last), None)
                continue
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                # The answer broke off mid-body: the request reached the vendor.
                last = TransientError(f"{method} {url}: answer cut off: {str(exc)[:200]}")
                if not idempotent:
                    raise last from exc
                self._wait(self._backoff(attempt), str(last), None)
                continue
            if self.pace is not None:
                ahead = self.pace(resp)
                if ahead:
                    self._not_before = self.clock() + ahead
            status = resp.status_code
            if status == 429 or status == 503 or 500 <= status < 600:
                # An HTTP-date Retry-After is on the vendor's clock: measure it from its Date header.
                advised = retry_after_seconds(
                    resp.headers.get("Retry-After"), vendor_time(resp) or _now(self.clock)
                )
                kind = RateLimited if status == 429 else TransientError
                last = (
                    RateLimited(f"{method} {url}: HTTP 429 {_snippet(resp)}", retry_after=advised)
                    if kind is RateLimited
                    else TransientError(f"{method} {url}: HTTP {status} {_snippet(resp)}", status=status)
                )
                if status >= 500 and status != 503 and not idempotent:
                    raise last
                wait = advised if advised is not None else self._backoff(attempt)
                if attempt + 1 < self.attempts:
                    self._wait(wait, str(last), status)
                continue
            code = self.error_code(resp) if self.error_code is not None and status >= 400 else None
            if status in (401, 403):
                raise AuthError(f"{method} {url}: HTTP {status} {_snippet(resp)}", status=status, code=code)
            if status == 404:
                raise NotFound(f"{method} {url}: HTTP 404 {_snippet(resp)}", status=404, code=code)
            if 400 <= status < 500:
                raise VendorRejected(
                    f"{method} {url}: HTTP {status} {_snippet(resp)}", status=status, code=code
                )
            if 300 <= status < 400:
                # A redirected API call (a login page, a moved shop) is a setting to fix, not a blip.
                where = resp.headers.get("Location", "")
                raise VendorRejected(
                    f"{method} {url}: HTTP {status} redirect to {where[:200]}", status=status
                )
            if self.throttle is not None:
                wait_more = self.throttle(resp)
                if wait_more is not None:
                    last = RateLimited(f"{method} {url}: throttled", retry_after=wait_more, status=status)
                    if attempt + 1 < self.attempts:
                        self._wait(wait_more, str(last), status)
                    continue
            return resp
        raise last or TransientError(f"{method} {url}: no attempt made")

    def json(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> tuple[Any, requests.Response]:
        """The decoded JSON body and the response; a body that is not JSON is a MalformedResponse,
        retried like a 5xx for reads (a proxy's HTML page, a truncated body)."""
        for attempt in range(self.attempts):
            resp = self.request(method, path, idempotent=idempotent, **kwargs)
            try:
                return resp.json(), resp
            except ValueError:
                err = MalformedResponse(f"{method} {self.url(path)}: body is not JSON: {_snippet(resp)}")
                if not idempotent or attempt + 1 >= self.attempts:
                    raise err from None
                self.retries += 1
                self._wait(self._backoff(attempt), str(err), resp.status_code)
        raise MalformedResponse(f"{method} {self.url(path)}: no JSON body")

    def close(self) -> None:
        self.session.close()


def _now(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


def _snippet(resp: requests.Response) -> str:
    text = (resp.text or "")[:200].replace("\n", " ")
    return text
