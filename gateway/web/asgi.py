"""The web process as one ASGI app: the REST API (FastAPI) and the dashboard (Dash on Flask). Does I/O.

:class:`WebApp` routes ``/api/...``, ``/healthz`` and the residents' report pages ``/r/...``
(``gateway/reports/public.py``) to the FastAPI app, everything else to the
dashboard's Flask app through a2wsgi's :class:`~a2wsgi.WSGIMiddleware` (a thread pool of its own).
It answers the ASGI lifespan: at startup it sizes the thread pool FastAPI runs sync routes in and
starts the live-updates hub (:class:`gateway.web.live.LiveHub`, on the server's event loop), at
shutdown it stops the hub and closes what the composition root opened (pools, the live-state thread,
the MQTT publisher), so a server shutting down gracefully leaves nothing behind.

:func:`app_from_environment` is the app factory ``gridtwin serve --workers N`` gives uvicorn: each
worker process builds its own app from the settings (environment variables and ``GRIDTWIN_CONFIG``),
as the parent resolved them.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from a2wsgi import WSGIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.app import SYNC_THREADS
from gateway.web.live import LiveHub

log = logging.getLogger(__name__)

API_THREADS = SYNC_THREADS  # FastAPI's sync steps: one thread for each request the API admits at once
DASHBOARD_THREADS = 16  # the dashboard's WSGI requests (Dash callbacks, pages, assets)
PLOTLY_PREFIX = "/_dash-component-suites/plotly/package_data/plotly"  # Dash's URL of plotly.js (any fingerprint)
GL3D_BUNDLE = Path(__file__).resolve().parents[2] / "viz" / "vendor" / "plotly-gl3d.min.js"
FINGERPRINT = re.compile(r"\.v[\w-]+m\d+\.")  # Dash's fingerprint (plotly.v7_1_0m1796184948.min.js)


class PlotlyBundle:
    """plotly.js for the dashboard: the gl3d partial bundle (``viz/vendor/plotly-gl3d.min.js``: the core
    traces, scatter among them, plus the 3D ones; 1.7 MB against the full bundle's 4.8 MB, which the browser
    spent most of the first render parsing) in place of the full one Dash would serve, gzipped once
    (560 kB on the wire), with an ETag, and cached for a year under Dash's fingerprinted URL.

    :meth:`load` gives None (Dash serves its own) when the file is missing or its version is not the
    plotly.js that the installed plotly expects: figures are built for that version.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._gzip: bytes | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path = GL3D_BUNDLE) -> PlotlyBundle | None:
        try:
            body = path.read_bytes()
            from plotly.offline import get_plotlyjs_version  # type: ignore[import-untyped]

            want = str(get_plotlyjs_version())
        except (OSError, ImportError):
            return None
        if f"plotly.js (gl3d - minified) v{want}\n".encode() not in body[:200]:
            log.warning("%s is not plotly.js %s (what plotly expects): serving Dash's full bundle", path, want)
            return None
        return cls(body)

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzip is None:
                self._gzip = gzip.compress(self.body, 6, mtime=0)
            return self._gzip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = str(scope.get("path", ""))
        out = [(b"content-type", b"application/javascript; charset=utf-8"), (b"etag", self.etag.encode()),
               (b"vary", b"Accept-Encoding"), (b"x-content-type-options", b"nosniff"),
               (b"cache-control", b"public, max-age=31536000, immutable" if FINGERPRINT.search(path)
                else b"public, max-age=3600")]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, [(b"allow", b"GET, HEAD")], b"")
            return
        if self.etag in headers.get("if-none-match", ""):
            await _respond(send, 304, out, b"")
            return
        body = self.body
        if "gzip" in headers.get("accept-encoding", ""):
            body = self._gzip if self._gzip is not None else await anyio.to_thread.run_sync(self.gzipped)
            out.append((b"content-encoding", b"gzip"))
        out.append((b"content-length", str(len(body)).encode()))
        await _respond(send, 200, out, b"" if method == "HEAD" else body)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WebApp:
    """Root ASGI app: ``/api/...`` and ``/healthz`` to ``api``, the rest to the WSGI ``dashboard``.

    ``on_close`` callables run once, at lifespan shutdown or :meth:`close`, whichever comes first.
    ``live``: the hub behind ``GET /api/v1/stream``, started and stopped by the lifespan.
    ``plotly_gl3d``: serve the gl3d partial plotly.js bundle (:class:`PlotlyBundle`) instead of the full one.
    """

    def __init__(self, api: ASGIApp, dashboard: Any, *, on_close: list[Callable[[], None]] | None = None,
                 api_threads: int = API_THREADS, dashboard_threads: int = DASHBOARD_THREADS,
                 live: LiveHub | None = None, plotly_gl3d: bool = True) -> None:
        self.api = api
        self.live = live
        self._dashboard = WSGIMiddleware(dashboard, workers=dashboard_threads)
        self._api_threads = api_threads
        self._on_close = list(on_close or [])
        self._closed = False
        self._lock = threading.Lock()
        self.started = threading.Event()  # set when the lifespan startup is done
        self.plotly = PlotlyBundle.load() if plotly_gl3d else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = str(scope.get("path", ""))
        if path.startswith(("/api/", "/r/")) or path in ("/api", "/healthz"):  # /r/: residents' report pages
            await self.api(scope, receive, send)
        elif kind == "http" and self.plotly is not None and path.startswith(PLOTLY_PREFIX):
            await self.plotly(scope, receive, send)
        elif kind == "http":
            await self._dashboard(scope, receive, send)  # type: ignore[arg-type]  # a2wsgi's own scope type
        # a websocket outside the API: nothing serves it; returning closes it

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                anyio.to_thread.current_default_thread_limiter().total_tokens = self._api_threads
                if self.live is not None:
                    await self.live.start()
                self.started.set()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.live is not None:
                    await self.live.stop()
                await anyio.to_thread.run_sync(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def end_streams(self) -> None:
        """From any thread: end the open live streams now, so a graceful shutdown need not wait for them."""
        if self.live is not None:
            self.live.end_streams()

    def close(self) -> None:
        """Close what the app holds (idempotent): the composition root's resources, the WSGI threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for close in self._on_close:
            try:
                close()
            except Exception:
                log.exception("closing the web app: %r failed", close)
        self._dashboard.executor.shutdown(wait=False)


def app_from_environment() -> WebApp:
    """The app factory of ``gridtwin serve --workers N`` (``uvicorn ... --factory``), one call per worker.

    Settings as everywhere (environment variables over ``GRIDTWIN_CONFIG`` over defaults); the parent
    command puts the database and broker URLs it resolved into ``GRIDTWIN_DB_URL`` / ``GRIDTWIN_MQTT_URL``.
    """
    from gateway import settings as settings_mod
    from gateway.web.composition import community_in_database, compose

    settings = settings_mod.load(os.environ.get("GRIDTWIN_CONFIG") or None)
    db_url = settings.db.url
    if db_url is None:
        raise RuntimeError("GRIDTWIN_DB_URL is not set: start the server with `gridtwin serve`")
    community = community_in_database(db_url, schema=settings.db.schema_name)
    if community is None:
        raise RuntimeError("no community in the database: load one first (`gridtwin community load FILE`)")
    return compose(settings, community, db_url, settings.mqtt.url).app
