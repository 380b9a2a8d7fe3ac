"""Requests gunicorn itself refuses answer problem+json like the app (issue 8, defect 9): a real
gunicorn on 127.0.0.1 against a SQLite app, as production (config/gunicorn.conf.py, sync workers)
and as `flask serve` (embedded, gthread), sent raw bytes over a socket."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_KEYS = {"type", "title", "status", "code", "detail", "instance", "request_id"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes, read to the end: (status, headers with lower-case names, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def _get(path: str, *headers: bytes) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"  # fmt: skip


@pytest.fixture(scope="module", params=["production", "embedded"])
def port(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    env = {**os.environ, "OMNISTOCK_INSTANCE_PATH": str(tmp_path), "OMNISTOCK_LOG_FORMAT": "text",
           "OMNISTOCK_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("OMNISTOCK_DATABASE_URL", None)  # the embedded default: SQLite in the instance folder
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    free = _free_port()
    if request.param == "production":
        env.update(GUNICORN_BIND=f"127.0.0.1:{free}", GUNICORN_WORKERS="1")
        cmd = [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "app:create_app()"]
    else:
        cmd = [*flask, "serve", "--port", str(free), "--without-scheduler"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            try:
                if _raw(free, _get("/readyz"))[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("gunicorn did not become ready")
        yield free
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _problem(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/problem+json", (status, headers, body[:200])
    assert int(headers["content-length"]) == len(body)
    doc: dict[str, Any] = json.loads(body)
    assert set(doc) == PROBLEM_KEYS
    assert doc["status"] == status
    assert doc["type"] == "https://omnistock.dev/problems/" + doc["code"]
    assert doc["title"] and doc["detail"]
    return doc


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "detail"),
    [
        (_get("/api/v1/skus?q=" + "a" * 5000), 414, "request_line_too_long", "Request Line is too large"),
        (_get("/api/v1/skus", b"Authorization: Bearer abc\x01def"), 400, "invalid_header", "AUTHORIZATION"),
        (_get("/api/v1/skus", b"X-Big: " + b"a" * 9000), 431, "request_headers_too_large", "limit request"),
        (b"GARBAGE\r\n\r\n", 400, "invalid_request_line", "GARBAGE"),
        (b"GET /readyz HTTP/7.1\r\nHost: x\r\n\r\n", 400, "invalid_http_version", "(7, 1)"),
    ],
    ids=["request-line-over-4KiB", "control-char-in-authorization", "header-too-large", "garbage", "version"],
)
def test_a_request_gunicorn_refuses_answers_problem_json(
    port: int, request_bytes: bytes, status: int, code: str, detail: str
) -> None:
    got_status, headers, body = _raw(port, request_bytes)
    assert got_status == status, body[:300]
    doc = _problem(got_status, headers, body)
    assert doc["code"] == code
    assert detail in doc["detail"]
    assert headers["connection"] == "close"


def test_the_apps_own_answers_are_unchanged_and_share_the_shape(port: int) -> None:
    status, headers, body = _raw(port, _get("/readyz"))
    assert (status, headers["content-type"]) == (200, "application/json")
    # The app's own refusal (no key) has exactly the members gunicorn's refusals carry.
    status, headers, body = _raw(port, _get("/api/v1/skus"))
    doc = _problem(status, headers, body)
    assert (status, doc["code"]) == (401, "unauthorized")


def test_an_error_gunicorn_cannot_place_is_a_500_problem_and_an_unknown_page_goes_out_as_written() -> None:
    from gunicorn import util

    from app.server import answer_as_problem

    def gunicorn_500(_req: Any, client: Any, _addr: Any, _exc: BaseException) -> None:
        util.write_error(client, 500, "Internal Server Error", "")

    def unknown_page(_req: Any, client: Any, _addr: Any, _exc: BaseException) -> None:
        client.sendall(b"something else")

    for handler, expect in ((gunicorn_500, None), (unknown_page, b"something else")):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            answer_as_problem(handler, None, ours, ("127.0.0.1", 1), RuntimeError("boom"))
            ours.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := theirs.recv(65536):
                out += chunk
        if expect is not None:
            assert out == expect
            continue
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 ") and b"Content-Type: application/problem+json" in head
        doc = json.loads(body)
        assert (doc["status"], doc["code"], doc["title"]) == (500, "internal_error", "Internal server error")
        assert "boom" not in body.decode()  # never the exception's text
