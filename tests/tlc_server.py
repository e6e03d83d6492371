"""A real HTTP server on 127.0.0.1 that serves TLC-named files and misbehaves on request."""

from __future__ import annotations

import hashlib
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def etag_of(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()[:16]}"'


class TlcServer(ThreadingHTTPServer):
    """Serves ``files`` under /trip-data/ with ETag and Range; ``faults[name]`` are used up by
    successive GETs: ``500``, ``slow`` (no answer for ``slow_sec``), ``truncate`` (announces the
    whole length, sends half), ``range-from-0`` (answers a Range request with the whole file as
    a 206). Names in ``forbidden`` answer 403, unknown ones 404."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.forbidden: set[str] = set()
        self.slow_sec = 3.0
        self.requests: list[tuple[float, str, str, str | None]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/trip-data"

    def gets(self, name: str) -> list[tuple[float, str, str, str | None]]:
        return [r for r in self.requests if r[1:3] == ("GET", name)]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.serve(send_body=False)

    def do_GET(self) -> None:
        self.serve(send_body=True)

    def serve(self, send_body: bool) -> None:
        server: TlcServer = self.server  # type: ignore[assignment]
        name = self.path.rsplit("/", 1)[-1]
        server.requests.append((time.monotonic(), self.command, name, self.headers.get("Range")))
        if name in server.forbidden or name not in server.files:
            self.send_error(403 if name in server.forbidden else 404)
            return
        data = server.files[name]
        queued = server.faults.get(name, [])
        fault = queued.pop(0) if send_body and queued else None
        if fault == "500":
            self.send_error(500)
            return
        if fault == "slow":
            time.sleep(server.slow_sec)
            return
        etag = etag_of(data)
        asked = self.headers.get("Range")
        start, ranged = 0, asked and self.headers.get("If-Range") in (None, etag)
        if ranged and fault != "range-from-0":
            start = int(asked.removeprefix("bytes=").rstrip("-"))
        self.send_response(206 if ranged else 200)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if send_body:
            end = start + (len(data) - start) // 2 if fault == "truncate" else len(data)
            self.wfile.write(data[start:end])
