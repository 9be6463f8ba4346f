"""A development server for the dashboard: Werkzeug's threaded WSGI server in a daemon thread.

Re-exported by :mod:`viz.app` (``serve``, ``DashboardServer``) until serving moves to ``gateway/web/``.
"""

from __future__ import annotations

import threading

from dash import Dash
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return  # 2 polls a second per browser would drown the console

    def send_response(self, code: int, message: str | None = None) -> None:
        """As the standard one, without the ``Server: Werkzeug/x Python/y`` header (no version to look up)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())


class DashboardServer:
    """The dashboard on a threaded WSGI server in a daemon thread (``shutdown()`` to stop)."""

    def __init__(self, app: Dash, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app.server, threaded=True,
                                                   request_handler=_QuietHandler)
        self.server_port: int = self._server.server_port
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="gridtwin-dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(app: Dash, *, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """Serve the dashboard in the background; ``port=0`` picks a free port (see ``server_port``)."""
    return DashboardServer(app, host, port)
