"""Composition root of the web process (``gridtwin serve`` / ``gridtwin demo``): the dashboard's data
source, the REST API and MQTT publishing, put together into one ASGI app. Does I/O.

:func:`compose` builds the app (:class:`gateway.web.asgi.WebApp`); :func:`start_dashboard` serves it
on uvicorn in a background thread (tests, the demo) and returns a :class:`DashboardHandle`;
``gridtwin serve --workers N`` serves it on N processes through the factory
:func:`gateway.web.asgi.app_from_environment`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from gateway.api.auth import LoginGuard
from gateway.api.pool import StoragePool, pool_for
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.web.asgi import WebApp
from gateway.web.dashboard_data import Publish, StorageDashboardData
from gateway.web.live import LiveHub
from gateway.web.publisher import MqttPublisher
from gateway.web.report_data import StorageReports
from gateway.web.server import BackgroundServer
from gateway.web.sign_in import DatabaseSignIn
from gateway.web.ticket_desk import ServiceTicketDesk
from twin.community import Community
from twin.people import Role

log = logging.getLogger(__name__)

DEMO_PASSWORD = "gridtwin-demo"  # noqa: S105 - the demo's accounts only (`gridtwin demo` on 127.0.0.1)


def build_dashboard_data(settings: Settings, community: Community, db_url: str, *,
                         publish: Publish | None = None, login_guard: LoginGuard | None = None,
                         pool: StoragePool | None = None) -> StorageDashboardData:
    """The real data source: database, ticket service (with MQTT delivery and 3D snapshots), users table.

    ``publish``: MQTT publishing (alarm commands to the gateway's alarm service, tickets to workers'
    topics); None when no broker is reachable. ``login_guard``: sign-in throttling, shared with the REST
    API's login when both run in one process. ``pool``: the process's database connections (closed by
    the caller); without one, each part opens a small pool of its own.
    """
    from gateway.tickets.service import TicketService, render_snapshot

    schema = settings.db.schema_name
    snapshot = render_snapshot()

    def make_service(st: Storage) -> Any:
        return TicketService(st, settings, community, publish=publish, snapshot=snapshot)

    desk = ServiceTicketDesk(community, db_url, make_service, schema=schema, pool=pool)
    auth = DatabaseSignIn(db_url, schema=schema, ttl=timedelta(minutes=settings.api.token_ttl_min),
                          guard=login_guard, pool=pool)
    reports = StorageReports(community, make_service, pool=pool, db_url=db_url, schema=schema)
    return StorageDashboardData(community, db_url, schema=schema, tickets=desk, sign_in=auth, publish=publish,
                                topic_root=settings.mqtt.topic_root, pool=pool, reports=reports)


@dataclass
class Composition:
    """What :func:`compose` built; ``app.close()`` (or the app's lifespan shutdown) closes all of it."""

    app: WebApp
    data: StorageDashboardData
    api: FastAPI
    publish: MqttPublisher | None
    live: LiveHub | None = None


def compose(settings: Settings, community: Community, db_url: str, mqtt_url: str | None) -> Composition:
    """The dashboard and the REST API of ``community`` as one ASGI app.

    Without a reachable broker the dashboard still runs; alarm actions then update the database directly
    (fine when no gateway runs the alarm engine) and tickets are not pushed to workers' phones. The
    dashboard's sign-in form and the REST API's login share one :class:`gateway.api.auth.LoginGuard`
    (throttling, lockout, bounded password hashing). Cookies are marked ``Secure`` when
    ``api.public_url`` is ``https://`` (and per request behind a proxy sending ``X-Forwarded-Proto: https``).
    With a broker URL, a :class:`gateway.web.live.LiveHub` relays alarms and tickets to ``GET /api/v1/stream``
    (it connects when the server starts, and keeps trying while the broker is away).
    """
    from gateway.api.app import create_api
    from gateway.tickets.service import render_snapshot
    from viz import app as dashboard

    publish: MqttPublisher | None = None
    if mqtt_url:
        try:
            publish = MqttPublisher(mqtt_url, client_id=f"gridtwin-dashboard-{secrets.token_hex(4)}")
        except ConnectionError as exc:
            log.warning("dashboard without MQTT (alarm actions go straight to the database): %s", exc)
    live = LiveHub(settings.mqtt, mqtt_url, [community]) if mqtt_url else None
    guard = LoginGuard()
    pool = pool_for(settings, db_url, max_size=2 * settings.db.pool_size)  # the API's share and the dashboard's
    data = build_dashboard_data(settings, community, db_url, publish=publish, login_guard=guard, pool=pool)
    api = create_api(settings, [community], pool=pool, publish=publish, snapshot=render_snapshot(),
                     login_guard=guard, live=live)
    dash_app = dashboard.create_app(data, secure_cookies=str(settings.api.public_url).startswith("https://"))
    closers = [data.close, api.state.close]
    if publish is not None:
        closers.append(publish.close)
    closers.append(pool.close)
    return Composition(WebApp(api, dash_app.server, on_close=closers, live=live), data, api, publish, live)


class DashboardHandle:
    """The running dashboard and REST API and what they hold open; ``shutdown()`` stops and closes it all."""

    def __init__(self, server: BackgroundServer, parts: Composition) -> None:
        self.server = server
        self.app = parts.app
        self.data = parts.data
        self.api = parts.api
        self.publish = parts.publish
        self.live = parts.live
        self.server_port: int = server.server_port

    @property
    def url(self) -> str:
        return self.server.url

    def shutdown(self) -> None:
        """Graceful: requests in flight finish, then the pools, threads and MQTT client are closed."""
        self.server.shutdown()


def start_dashboard(settings: Settings, community: Community, db_url: str, mqtt_url: str | None, *,
                    host: str = "127.0.0.1", port: int = 8050) -> DashboardHandle:
    """:func:`compose`, served on uvicorn in a background thread (``port=0``: a free port, see
    ``server_port``). A port in use raises :class:`OSError` (and nothing stays open)."""
    parts = compose(settings, community, db_url, mqtt_url)
    try:
        server = BackgroundServer(parts.app, host=host, port=port)
    except BaseException:
        parts.app.close()
        raise
    return DashboardHandle(server, parts)


def seed_demo_users(db_url: str, community: Community, password: str, *, schema: str = "gridtwin") -> list[str]:
    """Demo accounts (``operator``, ``admin``, each grid's supervisor and workers), all with ``password``.

    For ``gridtwin demo`` and the tests; a real site adds its users through the REST API or the CLI.
    Returns the usernames.
    """
    from gateway.api.auth import Users

    accounts: list[tuple[str, Role, str, tuple[str, ...], str | None]] = [
        ("operator", Role.OPERATOR, "值班员", (), None), ("admin", Role.ADMIN, "管理员", (), None)]
    supervisors: dict[str, list[str]] = {}
    workers: dict[str, tuple[str, list[str]]] = {}
    for g in community.grids:
        supervisors.setdefault(g.supervisor, []).append(g.id)
        for w in g.workers:
            workers.setdefault(w.id, (w.name, []))[1].append(g.id)
    accounts += [(sid, Role.SUPERVISOR, f"网格长 {sid}", tuple(grids), None) for sid, grids in supervisors.items()]
    accounts += [(wid, Role.WORKER, name, tuple(grids), wid) for wid, (name, grids) in workers.items()]
    with Storage.connect(db_url, schema=schema) as st:
        users = Users(st.conn)
        for username, role, name, grids, worker_id in accounts:
            users.add(username, password, role, display_name=name, grids=grids, worker_id=worker_id, update=True)
    return [a[0] for a in accounts]


def community_in_database(db_url: str, *, schema: str = "gridtwin", code: str | None = None) -> Community | None:
    """The community the registry holds (the most recently loaded one unless ``code`` names it)."""
    with Storage.connect(db_url, schema=schema) as st:
        if st.schema_version() == 0:
            return None
        doc = st.community_document(code)
    return None if doc is None else Community.model_validate(doc)
