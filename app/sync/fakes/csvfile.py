"""A file host for CSV stock files: GET <path> answers the bytes put there, as text/csv.

Harness faults apply (truncate cuts the body in half, 503, drop); an optional bearer token
makes it answer 401 without `Authorization: Bearer <token>`.
"""

from __future__ import annotations

from datetime import datetime

from flask import Response, request

from app.sync.fakes.harness import FakeVendor


class FakeCsvHost(FakeVendor):
    """Serves files set with `put(path, bytes)`."""

    name = "csv-host"

    def __init__(self, *, token: str | None = None, now: datetime | None = None) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.token = token
        super().__init__(now=now)

    def put(self, path: str, data: bytes, *, content_type: str = "text/csv; charset=utf-8") -> str:
        """Store a file; returns its full URL when the host is started (else its path)."""
        path = "/" + path.lstrip("/")
        with self.lock:
            self.files[path] = (data, content_type)
        return f"{self.url}{path}" if self._server is not None else path

    def routes(self) -> None:
        @self.app.get("/<path:path>")
        def serve(path: str) -> Response:
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                return Response("unauthorised", status=401, mimetype="text/plain")
            with self.lock:
                found = self.files.get("/" + path)
            if found is None:
                return Response("not found", status=404, mimetype="text/plain")
            data, ctype = found
            return Response(data, status=200, content_type=ctype)
