"""A stock-file host for benchmarks: one CSV file's bytes over real HTTP, from a process of its own.

A benchmark measures the download as part of a feed's run, so the file must come over a real
socket, and the host must not share the measured process's CPU or GIL: it runs as
`python -m bench.lib.fake_csv_server FILE`, prints its URL on stdout and serves until stopped.
`GET <any path>` answers the file (text/csv, Content-Length, the server's Date header, which the
CSV connector takes as the file's time); `GET /__stats` answers how many files it served.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
FILE_PATH = "/exports/stock.csv"
START_TIMEOUT_S = 30.0
WRITE_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FileServer

    def do_GET(self) -> None:
        if self.path == "/__stats":
            body = json.dumps(self.server.stats()).encode()
            self._head(200, "application/json", len(body))
            self.wfile.write(body)
            return
        data = self.server.data
        self._head(200, "text/csv; charset=utf-8", len(data))
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            self.wfile.write(view[start : start + WRITE_CHUNK])
        self.server.served(len(data))

    def _head(self, status: int, ctype: str, length: int) -> None:
        self.send_response(status)  # adds Date (now, whole seconds) and Server
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the benchmark prints its own
        pass


class _FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data = data
        self._lock = threading.Lock()
        self._files = 0
        self._bytes = 0

    def served(self, n: int) -> None:
        with self._lock:
            self._files += 1
            self._bytes += n

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"files": self._files, "bytes": self._bytes, "size": len(self.data)}


class FakeCsvServer:
    """Starts the host process for one file; `url` is the file's address once started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def url(self) -> str:
        return self.base_url + FILE_PATH

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> FakeCsvServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.lib.fake_csv_server", str(self.path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # the child prints its URL once it listens
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"fake CSV server did not start (said {line!r})")
        self.base_url = line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    server = _FileServer(args.file.read_bytes())
    host, port = server.server_address[:2]
    print(f"http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
