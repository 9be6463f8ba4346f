"""A local HTTP receiver for webhook tests: records each POST and answers with the next scripted status."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """``Receiver(statuses=[500, 200])``: the first POST gets 500, the next ones 200 (the default)."""

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.got: list[Received] = []
        self.statuses: deque[int] = deque(statuses)
        self.answered: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = owner.statuses.popleft() if owner.statuses else 200
                owner.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                owner.answered.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
