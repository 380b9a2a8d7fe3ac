"""HTTP clients: KeepAlive for timed loads, `requests` helpers for setup and check calls."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests

from .server import BenchError

REQUEST_TIMEOUT_S = 120.0


def session_for(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def fetch_catalog(base_url: str, ops_key: str) -> tuple[list[str], list[str]]:
    """All SKU codes and all location codes."""
    with session_for(ops_key) as http:
        skus: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            resp = http.get(f"{base_url}/api/v1/skus", params=params, timeout=REQUEST_TIMEOUT_S)
            if resp.status_code != 200:
                raise BenchError(f"GET /api/v1/skus -> {resp.status_code}: {resp.text}")
            page = resp.json()
            skus.extend(item["code"] for item in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        resp = http.get(f"{base_url}/api/v1/locations", timeout=REQUEST_TIMEOUT_S)
        if resp.status_code != 200:
            raise BenchError(f"GET /api/v1/locations -> {resp.status_code}: {resp.text}")
        locations = [item["code"] for item in resp.json()["items"]]
    if not skus or not locations:
        raise BenchError(f"empty catalog: {len(skus)} SKUs, {len(locations)} locations")
    return skus, locations


def timed_request(http: requests.Session, method: str, url: str, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, response or exception) for one request; the body is read inside the timing."""
    began = time.perf_counter()
    try:
        resp = http.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        _ = resp.content
    except requests.RequestException as exc:
        return time.perf_counter() - began, exc
    return time.perf_counter() - began, resp


def describe_failure(method: str, path: str, result: Any) -> str:
    """One line for a failed request: `result` is an exception, a requests.Response or a Response."""
    if isinstance(result, Exception):
        return f"{method} {path}: {type(result).__name__}: {result}"
    return f"{method} {path} -> {result.status_code}: {result.text[:2000]}"


def api(http: requests.Session, method: str, url: str, expect: int, **kwargs: Any) -> Any:
    """One setup or check call that must answer `expect`; its JSON body (BenchError otherwise)."""
    resp = http.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
    if resp.status_code != expect:
        path = url.split("127.0.0.1", 1)[-1]
        raise BenchError(f"{method} {path} -> {resp.status_code} (expected {expect}): {resp.text[:2000]}")
    return resp.json()


# ----------------------------------------------------------------------------- light HTTP client
# The load generator runs on the same (2-core) machine as gunicorn and PostgreSQL, so every CPU
# cycle it burns is taken from the server it measures. `requests` costs about 1 ms of client
# CPU per request (about 30% of a core at 300 req/s); KeepAlive below is a plain HTTP/1.1
# exchange over one socket and costs a small fraction of that.
_RECV_BYTES = 65536
_MAX_HEAD_BYTES = 65536
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class KeepAliveError(OSError):
    """The server broke the HTTP exchange: it closed the connection early or sent a malformed response."""


class _NoResponse(KeepAliveError):
    """The connection died before a single byte of the response arrived."""


class Response:
    """A response read by KeepAlive: the parts of requests.Response the benchmarks use."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers  # names lower-cased; repeated headers joined with ", "
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError if it is not JSON)."""
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


class KeepAlive:
    """A minimal HTTP/1.1 client over one persistent TCP connection (TCP_NODELAY), for one thread.

    The constant part of the request head (Host and the `headers` given here) is encoded once.
    Bodies are read by Content-Length, chunked transfer encoding or, failing both, to the end
    of the connection. The connection is closed after a response saying `Connection: close`
    (gunicorn's sync workers send that every time) and after any error; the next request then
    opens a new one. If a reused idle connection turns out to be closed by the server before
    any byte of the response arrived, the request is sent once more on a new connection (as
    HTTP clients commonly do; the order load also sends an Idempotency-Key by default).
    `timeout` bounds the connect and each wait for data. Errors are OSError: socket errors,
    TimeoutError, or KeepAliveError for a broken exchange. Not thread-safe: one per thread.
    """

    def __init__(
        self, base_url: str, headers: Mapping[str, str] | None = None, *, timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"KeepAlive needs an http://host[:port] URL, got {base_url!r}")
        self.address = (parts.hostname, parts.port or 80)
        self.timeout = timeout
        fixed = {"Host": parts.netloc, **(headers or {})}
        self._fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._sock: socket.socket | None = None
        self._buf = b""
        self.connects = 0  # connections opened so far

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        sock, self._sock, self._buf = self._sock, None, b""
        if sock is not None:
            sock.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send one request (`path` includes any query string) and read the whole response."""
        head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._fixed_head
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        if body is not None:
            data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        elif method in _BODY_METHODS:
            data = head + b"Content-Length: 0\r\n\r\n"
        else:
            data = head + b"\r\n"
        if self._sock is not None:  # reused: the server may have closed it while it was idle
            try:
                return self._exchange(self._sock, data, method)
            except _NoResponse:
                self.close()  # nothing of a response came back: send it again on a new connection
            except BaseException:
                self.close()
                raise
        sock = socket.create_connection(self.address, timeout=self.timeout)
        self._sock, self._buf = sock, b""
        self.connects += 1
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._exchange(sock, data, method)
        except _NoResponse as exc:  # on a fresh connection that is a plain failure
            self.close()
            raise KeepAliveError(str(exc)) from exc.__cause__
        except BaseException:
            self.close()
            raise

    def _exchange(self, sock: socket.socket, data: bytes, method: str) -> Response:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _NoResponse(f"connection closed while sending the request: {exc}") from exc
        version, status, headers = self._read_head(sock, first=True)
        while 100 <= status < 200:  # interim responses (100 Continue): the real one follows
            version, status, headers = self._read_head(sock, first=False)
        to_eof = False
        if status in (204, 304) or method == "HEAD":
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = self._read_chunked(sock)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise KeepAliveError(f"bad Content-Length {headers['content-length']!r}") from None
            content = self._read_exact(sock, length)
        else:
            content, to_eof = self._read_to_eof(sock), True
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if to_eof or not keep or self._buf:  # self._buf: bytes beyond the response, out of step
            self.close()
        return Response(status, headers, content)

    def _recv(self, sock: socket.socket, size: int, what: str) -> bytes:
        chunk = sock.recv(size)
        if not chunk:
            raise KeepAliveError(f"server closed the connection inside the {what}")
        return chunk

    def _read_head(self, sock: socket.socket, *, first: bool) -> tuple[str, int, dict[str, str]]:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                raise KeepAliveError(f"response head longer than {_MAX_HEAD_BYTES} bytes")
            try:
                chunk = sock.recv(_RECV_BYTES)
            except ConnectionResetError as exc:
                if first and not buf:
                    raise _NoResponse(f"connection reset before the response: {exc}") from exc
                raise
            if not chunk:
                if first and not buf:
                    raise _NoResponse("server closed the connection before responding")
                raise KeepAliveError("server closed the connection inside the response head")
            buf += chunk
        self._buf = buf[end + 4 :]
        lines = buf[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise KeepAliveError(f"malformed status line {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise KeepAliveError(f"malformed header line {line!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return version, int(code), headers

    def _read_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = self._buf
        if len(buf) < n:
            parts, have = [buf], len(buf)
            while have < n:
                chunk = self._recv(sock, min(max(n - have, _RECV_BYTES), 1 << 20), "response body")
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)
        self._buf = buf[n:]
        return buf[:n]

    def _read_line(self, sock: socket.socket) -> bytes:
        buf = self._buf
        while (end := buf.find(b"\r\n")) < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                raise KeepAliveError(f"chunked-body line longer than {_MAX_HEAD_BYTES} bytes")
            buf += self._recv(sock, _RECV_BYTES, "chunked body")
        self._buf = buf[end + 2 :]
        return buf[:end]

    def _read_chunked(self, sock: socket.socket) -> bytes:
        parts = []
        while True:
            line = self._read_line(sock)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise KeepAliveError(f"bad chunk-size line {line[:100]!r}") from None
            if size == 0:
                break
            parts.append(self._read_exact(sock, size))
            if self._read_exact(sock, 2) != b"\r\n":
                raise KeepAliveError("chunk data not followed by CRLF")
        while self._read_line(sock):  # trailer fields, up to the empty line
            pass
        return b"".join(parts)

    def _read_to_eof(self, sock: socket.socket) -> bytes:
        parts = [self._buf]
        self._buf = b""
        while chunk := sock.recv(_RECV_BYTES):
            parts.append(chunk)
        return b"".join(parts)


def keepalive_for(base_url: str, key: str) -> KeepAlive:
    """A KeepAlive client sending `key` as the bearer token and JSON as the body type."""
    return KeepAlive(base_url, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def timed_call(
    client: KeepAlive,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[float, Response | OSError]:
    """(seconds, Response or exception) for one KeepAlive request, body read inside the timing."""
    began = time.perf_counter()
    try:
        resp = client.request(method, path, body, headers)
    except OSError as exc:
        return time.perf_counter() - began, exc
    return time.perf_counter() - began, resp
