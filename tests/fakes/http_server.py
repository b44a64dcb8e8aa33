"""A small local HTTP server for http tools: it echoes what it got, redirects, is slow or big,
or answers a given body."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.server.requests.append({"method": self.command, "path": parts.path,
                                     "query": query, "body": body, "raw": raw,
                                     "headers": dict(self.headers)})
        if parts.path.startswith("/redirect"):
            self._answer(302, b"", headers=[("Location", query["to"])])
        elif parts.path.startswith("/slow"):
            time.sleep(float(query.get("seconds", 3)))
            self._answer(200, b'{"slow": true}')
        elif parts.path.startswith("/big"):
            self._answer(200, b'{"x": "' + b"a" * int(query.get("bytes", 10)) + b'"}')
        elif parts.path.startswith("/fail"):
            self._answer(500, b'{"error": "boom"}')
        elif parts.path.startswith("/flaky"):  # 503 for the first `times` requests of a path
            seen = sum(1 for r in self.server.requests if r["path"] == parts.path)
            if seen <= int(query.get("times", 1)):
                self._answer(503, b'{"error": "starting"}')
            else:
                self._answer(200, b'{"ok": true}')
        elif parts.path.startswith("/raw"):  # answers `body` as it is (JSON or not)
            self._answer(200, query["body"].encode())
        elif parts.path.startswith("/text"):
            self._answer(200, b"plain text", "text/plain")
        else:
            self._answer(200, json.dumps({
                "method": self.command, "path": parts.path, "query": query, "body": body,
                "authorization": self.headers.get("Authorization", "")}).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class LocalHTTPServer:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[dict]:
        return self.server.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
