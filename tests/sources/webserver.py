"""A real HTTP server on loopback for source tests: serves one flag file with an ETag, and can
be told to fail, to hang or to go away. Started and stopped by the ``flag_server`` fixture."""

from __future__ import annotations

import hashlib
import http.server
import threading
from typing import Any


class FlagServer:
    def __init__(self) -> None:
        self.body = b'{"flags": {}}'
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.honour_etag = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                etag = '"' + hashlib.sha256(outer.body).hexdigest()[:16] + '"'
                outer.requests.append({"path": self.path, "if_none_match": self.headers.get("If-None-Match")})
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if outer.honour_etag and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                if outer.honour_etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/flags.json"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
