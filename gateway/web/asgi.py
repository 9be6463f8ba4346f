"""The web process as one ASGI app: the REST API (FastAPI) and the dashboard (Dash on Flask). Does I/O.

:class:`WebApp` routes ``/api/...`` and ``/healthz`` to the FastAPI app, everything else to the
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

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from a2wsgi import WSGIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.app import SYNC_THREADS
from gateway.web.live import LiveHub

log = logging.getLogger(__name__)

API_THREADS = SYNC_THREADS  # FastAPI's sync steps: one thread for each request the API admits at once
DASHBOARD_THREADS = 16  # the dashboard's WSGI requests (Dash callbacks, pages, assets)


class WebApp:
    """Root ASGI app: ``/api/...`` and ``/healthz`` to ``api``, the rest to the WSGI ``dashboard``.

    ``on_close`` callables run once, at lifespan shutdown or :meth:`close`, whichever comes first.
    ``live``: the hub behind ``GET /api/v1/stream``, started and stopped by the lifespan.
    """

    def __init__(self, api: ASGIApp, dashboard: Any, *, on_close: list[Callable[[], None]] | None = None,
                 api_threads: int = API_THREADS, dashboard_threads: int = DASHBOARD_THREADS,
                 live: LiveHub | None = None) -> None:
        self.api = api
        self.live = live
        self._dashboard = WSGIMiddleware(dashboard, workers=dashboard_threads)
        self._api_threads = api_threads
        self._on_close = list(on_close or [])
        self._closed = False
        self._lock = threading.Lock()
        self.started = threading.Event()  # set when the lifespan startup is done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path = str(scope.get("path", ""))
        if path.startswith("/api/") or path in ("/api", "/healthz"):
            await self.api(scope, receive, send)
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
