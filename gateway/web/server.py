"""uvicorn for the web process: in a background thread (tests, ``gridtwin demo``) or as N worker
processes (``gridtwin serve --workers N``). Does I/O.

Both use one :func:`config`: no ``Server`` header, no access log (the reverse proxy keeps one), the
client address and scheme taken from ``X-Forwarded-For`` / ``X-Forwarded-Proto`` only when the
connection comes from an address in ``FORWARDED_ALLOW_IPS`` (default: 127.0.0.1, a proxy on the same
host), and a graceful shutdown: stop accepting, let requests in flight finish (at most
``GRACEFUL_S``), then the app's lifespan shutdown closes its pools and threads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

from gateway.web.asgi import WebApp

log = logging.getLogger(__name__)

GRACEFUL_S = 10  # requests in flight get this long to finish at shutdown
START_TIMEOUT_S = 30.0


def config(app: Any, *, host: str, port: int, workers: int = 1, factory: bool = False,
           log_config: dict[str, Any] | None = None) -> uvicorn.Config:
    """The uvicorn settings every way of serving shares (``app``: an ASGI app, or an import string)."""
    return uvicorn.Config(app, host=host, port=port, workers=workers, factory=factory, lifespan="on",
                          log_config=log_config, access_log=False, server_header=False, proxy_headers=True,
                          forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                          timeout_graceful_shutdown=GRACEFUL_S, timeout_keep_alive=5)


class BackgroundServer:
    """``app`` on uvicorn in a daemon thread. The port is bound at construction (``port=0``: a free one,
    see :attr:`server_port`; a port in use raises :class:`OSError` here). :meth:`shutdown` is graceful."""

    def __init__(self, app: WebApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._app = app
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(2048)
        except OSError:
            self._sock.close()
            raise
        self.server_port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(config(app, host=host, port=self.server_port))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="gridtwin-web", daemon=True)
        self._thread.start()
        while not app.started.wait(0.05):  # the lifespan startup has run: requests are served from here on
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError("the web server stopped while starting (see the log)")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"

    def shutdown(self) -> None:
        """Stop accepting, end the live streams, let requests in flight finish, run the app's lifespan
        shutdown (closes it)."""
        self._app.end_streams()  # (under `gridtwin serve`, sse-starlette ends them when uvicorn starts to exit)
        self._server.should_exit = True
        self._thread.join(timeout=GRACEFUL_S + 10)
        if self._thread.is_alive():
            log.warning("the web server did not stop within %ss", GRACEFUL_S + 10)
        self._sock.close()
        self._app.close()


def serve_workers(factory: str, *, host: str, port: int, workers: int) -> None:
    """Serve the app ``factory`` (an import string, called once per worker) on ``workers`` processes until
    SIGINT/SIGTERM; uvicorn's supervisor restarts a worker that dies and shuts them all down gracefully.
    ``workers=1`` serves in this process."""
    cfg = config(factory, host=host, port=port, workers=workers, factory=True, log_config=LOGGING_CONFIG)
    server = uvicorn.Server(cfg)
    if workers == 1:
        server.run()
        return
    sock = cfg.bind_socket()
    Multiprocess(cfg, sockets=[sock]).run()
