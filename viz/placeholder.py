"""Placeholder dashboard page until the 3D dashboard lands: live counts, auto-refreshing. Does I/O.

The data comes from a ``status`` callable the composition root passes in, so viz imports nothing
from the gateway.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>gridtwin 社区数字孪生</title>
<style>body{{font-family:sans-serif;margin:2rem;background:#0f172a;color:#e2e8f0}}
td{{padding:.3rem 1rem}}</style></head><body>
<h1>gridtwin 社区数字孪生 <small>(community digital twin)</small></h1>
<p>三维大屏即将上线。以下为实时入库统计（每 5 秒刷新）。<br>
The 3D dashboard is coming; live ingest counts below (refreshes every 5 s).</p>
<table>{rows}</table><p><a style="color:#93c5fd" href="/status.json">status.json</a></p></body></html>"""


def serve(port: int, *, status: Callable[[], dict[str, Any]], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving in a daemon thread; returns the server (``.shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/status.json":
                self._send(200, "application/json", orjson.dumps(status()))
            elif self.path in ("/", "/index.html"):
                rows = "".join(
                    f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in status().items()
                )
                self._send(200, "text/html; charset=utf-8", _PAGE.format(rows=rows).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", "未找到 / not found\n".encode())

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:  # keep the demo console readable
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="gridtwin-http", daemon=True).start()
    return server
