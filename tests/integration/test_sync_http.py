"""The shared vendor HTTP layer against a real local server: retries, waits and error classes."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from flask import Response

from app.sync.base import AuthError, MalformedResponse, RateLimited, TransientError, VendorRejected
from app.sync.fakes.harness import FakeVendor
from app.sync.http import VendorHTTP, retry_after_seconds


class EchoVendor(FakeVendor):
    """A vendor with one read and one write that counts how often it was applied."""

    name = "echo"

    def routes(self) -> None:
        self.applied = 0

        @self.app.get("/items")
        def items() -> Response:
            return Response('{"items": [1, 2, 3]}', mimetype="application/json")

        @self.app.post("/items")
        def write() -> Response:
            with self.lock:
                self.applied += 1
            return Response('{"ok": true}', mimetype="application/json")

        @self.app.get("/moved")
        def moved() -> Response:
            return Response("", status=302, headers={"Location": "https://shop.example/login"})

        @self.app.get("/refused")
        def refused() -> Response:
            return Response(
                '{"errors": [{"code": "INVALID_VALUE"}]}', status=400, mimetype="application/json"
            )


@pytest.fixture
def fake() -> Iterator[EchoVendor]:
    vendor = EchoVendor(now=datetime.now(UTC).replace(microsecond=0))
    vendor.start()
    yield vendor
    vendor.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


def client(fake: FakeVendor, waits: list[float], **kwargs: object) -> VendorHTTP:
    options: dict[str, object] = {"read_timeout_s": 5.0, "attempts": 4, "sleep": waits.append}
    options.update(kwargs)
    return VendorHTTP(fake.url, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["2", "2.0"])
def test_retry_after_in_seconds_is_waited_through_the_injected_sleep(
    fake: EchoVendor, waits: list[float], value: str
) -> None:
    fake.fault(path="/items", status=429, headers={"Retry-After": value}, body={"errors": []})
    data, _ = client(fake, waits).json("GET", "/items", idempotent=True)
    assert data == {"items": [1, 2, 3]}
    assert waits == [2.0]
    assert len(fake.calls("GET", "/items")) == 2


def test_retry_after_as_an_http_date_is_measured_on_the_vendors_clock(waits: list[float]) -> None:
    # The vendor's clock is an hour behind ours: its "30 s from now" is in our past.
    vendor = EchoVendor(now=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    vendor.frozen = True
    with vendor:
        when = format_datetime(vendor.now() + timedelta(seconds=30), usegmt=True)
        vendor.fault(path="/items", status=503, headers={"Retry-After": when}, body={})
        client(vendor, waits).json("GET", "/items", idempotent=True)
    assert waits == [30.0]


def test_retry_after_parsing() -> None:
    now = datetime(2025, 8, 20, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("Wed, 20 Aug 2025 12:00:05 GMT", now) == 5.0
    assert retry_after_seconds("Wed, 20 Aug 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("-3", now) == 0.0
    assert retry_after_seconds("nan", now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_without_retry_after_the_backoff_is_jittered_and_bounded(
    fake: EchoVendor, waits: list[float]
) -> None:
    fake.fault(path="/items", status=429, every=True, times=3, body={"errors": [{"code": "RATE_LIMITED"}]})
    http = client(fake, waits, backoff_s=0.5, max_backoff_s=1.0, rng=random.Random(7))
    http.json("GET", "/items", idempotent=True)
    assert len(waits) == 3
    caps = [0.5, 1.0, 1.0]  # 0.5 * 2**attempt, capped by max_backoff_s
    assert all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert waits != caps  # random, not the cap itself


def test_attempts_are_bounded_then_the_error_says_what_happened(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", status=429, every=True, times=99, body={})
    with pytest.raises(RateLimited):
        client(fake, waits, attempts=3).request("GET", "/items", idempotent=True)
    assert len(fake.calls("GET", "/items")) == 3
    assert len(waits) == 2  # no wait after the last attempt

    fake.clear_faults()
    fake.journal.clear()
    fake.fault(path="/items", status=500, every=True, times=99, body={})
    with pytest.raises(TransientError) as err:
        client(fake, waits, attempts=3).request("GET", "/items", idempotent=True)
    assert not isinstance(err.value, RateLimited)
    assert err.value.status == 500
    assert len(fake.calls("GET", "/items")) == 3


def test_a_read_timeout_is_retried_for_a_read(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", method="GET", delay_s=1.0)
    data, _ = client(fake, waits, read_timeout_s=0.3).json("GET", "/items", idempotent=True)
    assert data["items"] == [1, 2, 3]
    assert len(fake.calls("GET", "/items")) == 2


def test_a_read_timeout_is_not_retried_for_a_write_without_a_guard(
    fake: EchoVendor, waits: list[float]
) -> None:
    fake.fault(path="/items", method="POST", delay_s=1.0)
    with pytest.raises(TransientError, match="read timeout"):
        client(fake, waits, read_timeout_s=0.3).request("POST", "/items", idempotent=False, json={})
    assert len(fake.calls("POST", "/items")) == 1
    assert waits == []


def test_a_write_dropped_after_it_was_applied_is_not_sent_again(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", method="POST", action="drop_after")
    with pytest.raises(TransientError):
        client(fake, waits).request("POST", "/items", idempotent=False, json={"n": 1})
    assert len(fake.calls("POST", "/items")) == 1
    assert fake.applied == 1  # it did reach the vendor: sending it again would apply it twice


def test_a_guarded_write_dropped_after_it_was_applied_is_sent_again(
    fake: EchoVendor, waits: list[float]
) -> None:
    fake.fault(path="/items", method="POST", action="drop_after")
    client(fake, waits).request("POST", "/items", idempotent=True, json={"n": 1})
    assert len(fake.calls("POST", "/items")) == 2


def test_a_500_on_a_write_without_a_guard_is_not_retried(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", method="POST", status=500, body={})
    with pytest.raises(TransientError):
        client(fake, waits).request("POST", "/items", idempotent=False, json={})
    assert len(fake.calls("POST", "/items")) == 1


def test_an_html_503_from_a_proxy_then_success(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", action="html", status=503)
    data, _ = client(fake, waits).json("GET", "/items", idempotent=True)
    assert data["items"] == [1, 2, 3]
    assert len(waits) == 1


def test_401_is_an_auth_error_without_retry(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", status=401, every=True, times=9, body={"errors": [{"code": "UNAUTHORIZED"}]})
    with pytest.raises(AuthError) as err:
        client(fake, waits).request("GET", "/items", idempotent=True)
    assert err.value.status == 401
    assert len(fake.calls("GET", "/items")) == 1
    assert waits == []


def test_a_retry_after_beyond_the_longest_wait_fails_at_once(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", status=429, every=True, times=9, headers={"Retry-After": "120"}, body={})
    with pytest.raises(RateLimited) as err:
        client(fake, waits, max_wait_s=60.0).request("GET", "/items", idempotent=True)
    assert err.value.retry_after == 120.0
    assert len(fake.calls("GET", "/items")) == 1
    assert waits == []


def test_truncated_json_is_malformed_after_the_retries(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", action="truncate", every=True, times=99)
    with pytest.raises(MalformedResponse):
        client(fake, waits, attempts=3).json("GET", "/items", idempotent=True)
    assert len(fake.calls("GET", "/items")) == 3


def test_truncated_json_once_then_a_good_body(fake: EchoVendor, waits: list[float]) -> None:
    fake.fault(path="/items", action="truncate")
    data, _ = client(fake, waits).json("GET", "/items", idempotent=True)
    assert data["items"] == [1, 2, 3]
    assert len(waits) == 1


def test_a_redirect_and_a_vendor_code_are_rejections(fake: EchoVendor, waits: list[float]) -> None:
    def first_code(resp: object) -> str | None:
        return str(resp.json()["errors"][0]["code"])  # type: ignore[attr-defined]

    http = client(fake, waits, error_code=first_code)
    with pytest.raises(VendorRejected, match=r"redirect to https://shop\.example/login"):
        http.request("GET", "/moved", idempotent=True)
    with pytest.raises(VendorRejected) as err:
        http.request("GET", "/refused", idempotent=True)
    assert (err.value.status, err.value.code) == (400, "INVALID_VALUE")
    assert waits == []


@pytest.fixture
def cut_off_server() -> Iterator[tuple[str, list[int]]]:
    """A server that promises 100 bytes, sends 10 and hangs up (a body cut off mid-way)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    served: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(65536)
            served.append(1)
            conn.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"items":'
            )
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", served
    sock.close()


def test_a_body_cut_off_mid_way_is_transient(
    cut_off_server: tuple[str, list[int]], waits: list[float]
) -> None:
    url, served = cut_off_server
    http = VendorHTTP(url, attempts=2, sleep=waits.append, read_timeout_s=5.0)
    with pytest.raises(TransientError, match="cut off"):
        http.request("GET", "/items", idempotent=True)
    assert len(served) == 2
    with pytest.raises(TransientError):
        http.request("POST", "/items", idempotent=False, json={})
    assert len(served) == 3
