"""Fault benchmark behind `gridtwin bench faults`: what a crash or an outage costs, measured. Does I/O.

Each run starts real processes of its own: a Mosquitto with persistence, a gateway (``gridtwin gateway``
as a child process, with the MQTT transport asked for) and, when the PostgreSQL server binaries are
installed, a private PostgreSQL cluster (``initdb`` into a temporary directory, ``pg_ctl`` on a free
port), so a database fault is a real server restart and the shared database is never touched. Each run
gets a fresh schema holding the sample community.

A publisher sends a known stream of QoS 1 telemetry from the sample community's devices (every kind
with fields except gas detectors) at a steady rate, and, at fixed points of the stream, one reading of
60 %LEL from each of seven distinct gas detectors: that crosses the level-2 threshold
(``gas_level2``, 50 %LEL, and level 1 with it) of ``twin/rules_defaults.yaml``, and each detector is
the only one on its floor, so each reading must end as exactly one dispatch ticket. Two land before the
fault, three during it, two after. The fault (``FAULTS``) starts when 35% of the stream is published;
an outage ends at 65%:

``kill9_gateway``
    SIGKILL the gateway, start it again at once (as a supervisor would).
``db_restart``
    ``pg_ctl stop -m immediate`` of the private cluster (a crash: recovery from WAL on start), start it
    again at 65%.
``broker_restart``
    stop our Mosquitto (it saves its persistent sessions and queued QoS 1 messages), start it again at
    65%; the gateway and the publisher reconnect.
``db_down_at_start``
    stop the gateway (SIGTERM) and crash the database, start the gateway while the database is down,
    start the database again at 65%. The gateway must start, spool, and catch up. If it exits instead,
    the bench does not restart it: the row says so in ``error`` and counts what was not stored as lost.

Then the run waits until the system settles (everything stored, every ticket opened and every alarm
event dispatched, or no progress for a while) and compares the database with what was sent:
``stored`` counts sent messages whose message key and every reading row are in the database, ``lost``
the rest, ``duplicated`` telemetry rows stored more than once, ``tickets`` the distinct tickets holding
an alarm of the seven gas detectors (``tickets_expected``: one each).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops.procs import Mosquitto, free_port
from gateway.storage import Storage
from simulators import publisher
from twin import catalogue, contract
from twin import community as community_mod

FAULTS = ("kill9_gateway", "db_restart", "broker_restart", "db_down_at_start")
TRANSPORTS = ("fast", "paho")
ROW_KEYS = ("fault", "transport", "run", "sent", "stored", "lost", "duplicated", "tickets", "tickets_expected",
            "seconds")
FAULT_AT, RECOVER_AT = 0.35, 0.65  # fractions of the stream published
ALARMS_AT = (0.10, 0.25, 0.40, 0.50, 0.60, 0.80, 0.95)  # gas readings: 2 before, 3 during, 2 after the fault
ALARM_LEL = 60.0  # >= gas_level2 raise (50 %LEL) in twin/rules_defaults.yaml
SETTLE_MAX_S = 45.0  # longest wait for the system to settle after the last publish was acknowledged
STALL_S = 12.0  # ... or until nothing changed for this long
DB_FAULTS = ("db_restart", "db_down_at_start")

Log = Callable[[str], None]


# -- a private PostgreSQL cluster ---------------------------------------------------------------------------


def pg_bin_dir() -> Path | None:
    """The PostgreSQL server binaries (``initdb``, ``pg_ctl``): pg_config's bindir, else the newest in
    /usr/lib/postgresql; None when they are not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        versions = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [v / "bin" for v in versions]
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (trust auth, user ``postgres``).

    As root the server runs as the ``postgres`` system user (PostgreSQL refuses root).
    """

    def __init__(self, workdir: Path, bindir: Path) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.logfile = workdir / "postgres.log"
        self._prefix: list[str] = []
        workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no `postgres` user to run a private cluster as") \
                    from None
            os.chown(workdir, user.pw_uid, user.pw_gid)
            setpriv = shutil.which("setpriv")
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            if setpriv:
                self._prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
            elif runuser:
                self._prefix = [runuser, "-u", "postgres", "--"]
            else:
                raise RuntimeError("running as root without setpriv or runuser to start PostgreSQL as `postgres`")
        self._run(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        cmd = [*self._prefix, str(self.bindir / argv[0]), *argv[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.workdir)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-500:]}")

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                "-c max_connections=40 -c shared_buffers=32MB")
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "-o", opts, "start"])

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, recovery from WAL at the next start."""
        self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop("immediate")


# -- the processes of one run -------------------------------------------------------------------------------


class _GatewayProc:
    """`gridtwin gateway` as a child process; log appended across restarts."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.starts = 0

    def start(self) -> None:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "--report-every", "2"],
                                         env=self.env, stdout=f, stderr=f)
        self.starts += 1

    def _since_start(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once this start has subscribed; False if it exited or did not subscribe in time."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "subscribed" in self._since_start():
                return True
            if self.exited():
                return False
            time.sleep(0.05)
        return False

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def exit_reason(self) -> str:
        assert self.proc is not None
        lines = [ln.strip() for ln in self._since_start().splitlines() if ln.strip()]
        return f"gateway exited with code {self.proc.returncode}: {lines[-1] if lines else '(no output)'}"

    def evidence(self) -> str:
        """What the gateway's log says happened (starts, (re)subscriptions, spooling, catch-up)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return (f"{self.starts} starts, {text.count('subscribed to')} subscriptions, "
                f"{text.count('spooling')} outages spooled, {text.count('database is back')} caught up")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _Stream:
    """Publishes a list of messages at QoS 1 at a steady rate from one paho client (MQTT 3.1.1) in a thread.

    paho keeps every unacknowledged QoS 1 message and sends it again after a reconnect, so a broker
    restart costs the publisher nothing; ``published`` counts messages handed to paho.
    """

    def __init__(self, url: str, msgs: Sequence[publisher.Message], rate: float, client_id: str) -> None:
        self.msgs = msgs
        self.rate = rate
        addr = contract.BrokerAddress.parse(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                                  protocol=paho.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(addr.host, addr.port, keepalive=30)
        self.client.loop_start()
        self.published = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="bench-faults-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            t0 = time.perf_counter()
            for i, m in enumerate(self.msgs, 1):
                self.client.publish(m.topic, m.payload, qos=1)
                self.published = i
                ahead = i / self.rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as exc:  # reported in the run's row
            self.error = f"publisher failed: {type(exc).__name__}: {exc}"

    def wait_progress(self, fraction: float, timeout: float) -> None:
        target = int(len(self.msgs) * fraction)
        end = time.monotonic() + timeout
        while self.published < target and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.01)

    def finish(self, timeout: float = 60.0) -> bool:
        """Wait until everything is published and acknowledged by the broker; True if so."""
        self._thread.join(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.client._out_messages) > 0:
            time.sleep(0.02)
        return not self._thread.is_alive() and len(self.client._out_messages) == 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# -- the load -----------------------------------------------------------------------------------------------


def _alarm_devices(community: community_mod.Community, n: int) -> list[str]:
    """``n`` gas detectors, each alone on its floor (so no two of their alarms join one incident)."""
    gas = [d for d in community.devices if d.kind == "gas"]
    per_floor = Counter((d.building, d.floor) for d in community.devices if d.kind == "gas")
    alone = [d.id for d in gas if per_floor[(d.building, d.floor)] == 1]
    if len(alone) < n:
        raise RuntimeError(f"the community has {len(alone)} gas detectors alone on a floor; {n} needed")
    return alone[:n]


def build_load(community: community_mod.Community, root: str, messages: int, rate: float,
               start_s: float) -> tuple[list[publisher.Message], list[str], int]:
    """(messages in publish order, the gas detectors that must raise an alarm, readings expected).

    Telemetry timestamps follow the publish schedule (one message every 1/rate s from ``start_s``).
    """
    kinds = {k for k, spec in catalogue.KINDS.items() if spec.fields} - {"gas"}
    n_bg = max(messages - len(ALARMS_AT), 1)
    devices = sum(1 for d in community.devices if d.kind in kinds)
    bg = list(publisher.telemetry_stream(community, root, devices=None, start_s=start_s,
                                         step_s=min(devices, n_bg) / rate, count=n_bg, kinds=kinds))
    gas = _alarm_devices(community, len(ALARMS_AT))
    out = list(bg)
    for frac, dev in sorted(zip(ALARMS_AT, gas, strict=True), reverse=True):  # from the end: positions hold
        pos = int(frac * n_bg)
        ts_ms = round((start_s + pos / rate) * 1000)
        topic = contract.topic(root, community.id, dev, contract.Channel.TELEMETRY)
        out.insert(pos, publisher.Message(topic, contract.telemetry_bytes(ts_ms, 1, {"lel": ALARM_LEL})))
    rows = sum(len(orjson.loads(m.payload)["values"]) for m in out)
    return out, gas, rows


# -- measuring ----------------------------------------------------------------------------------------------


def _progress(db_url: str, schema: str, gas: list[str]) -> tuple[int, int, int] | None:
    """(message keys stored, tickets of the gas alarms, alarm events not yet dispatched); None: DB down."""
    try:
        with psycopg.connect(db_url, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f"SET search_path = {schema}")
            row = conn.execute(
                "SELECT (SELECT count(*) FROM message_keys), "
                "(SELECT count(DISTINCT ticket_id) FROM ticket_alarms WHERE device = ANY(%s)), "
                "(SELECT count(*) FROM alarm_events WHERE dispatched_at IS NULL)", (gas,)).fetchone()
    except psycopg.Error:
        return None
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _final_counts(db_url: str, schema: str, msgs: Sequence[publisher.Message],
                  gas: list[str]) -> tuple[int, int, int]:
    """(sent messages fully stored, telemetry rows stored more than once, tickets of the gas alarms)."""
    with psycopg.connect(db_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SET search_path = {schema}")
        keys = {(str(c), int(s), round(ts.timestamp() * 1000)) for c, s, ts in conn.execute(
            "SELECT d.code, k.seq, k.ts FROM message_keys k JOIN devices d ON d.id = k.device_id").fetchall()}
        rows = Counter((str(c), str(m), round(ts.timestamp() * 1000)) for c, m, ts in conn.execute(
            "SELECT d.code, m.name, t.ts FROM telemetry t JOIN devices d ON d.id = t.device_id "
            "JOIN metrics m ON m.id = t.metric_id").fetchall())
        trow = conn.execute("SELECT count(DISTINCT ticket_id) FROM ticket_alarms WHERE device = ANY(%s)",
                            (gas,)).fetchone()
    stored = 0
    for m in msgs:
        device = m.topic.split("/")[3]  # {root}/v1/{community}/{device}/{channel}
        body = orjson.loads(m.payload)
        ts, seq = int(body["ts"]), int(body["seq"])
        if (device, seq, ts) in keys and all((device, f, ts) in rows for f in body["values"]):
            stored += 1
    duplicated = sum(n - 1 for n in rows.values() if n > 1)
    return stored, duplicated, int(trow[0]) if trow else 0


# -- one run ------------------------------------------------------------------------------------------------


class _Rig:
    """Broker, database, gateway and publisher of one run, and the fault actions on them."""

    def __init__(self, fault: str, transport: str, db_url: str, pg: PrivatePostgres | None,
                 community: community_mod.Community, tmp: Path, tag: str) -> None:
        self.fault = fault
        self.db_url = db_url
        self.pg = pg
        self.community = community
        self.tmp = tmp
        self.schema = f"bf_{uuid.uuid4().hex[:8]}"
        self.root = f"bf{uuid.uuid4().hex[:6]}"
        self.errors: list[str] = []
        self.broker = Mosquitto(tmp / f"broker-{tag}")
        st = Storage.connect(db_url, schema=self.schema)
        try:
            st.migrate()
            st.load_community(community)
        finally:
            st.close()
        env = {"GRIDTWIN_MQTT_URL": self.broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": self.schema,
               "GRIDTWIN_MQTT_TOPIC_ROOT": self.root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{self.root}",
               "GRIDTWIN_MQTT_TRANSPORT": transport, "GRIDTWIN_DATA_DIR": str(tmp / f"data-{tag}")}
        self.gateway = _GatewayProc(env, tmp / f"gateway-{tag}.log")
        self.gateway_expected_down = False

    def begin_fault(self) -> None:
        if self.fault == "kill9_gateway":
            self.gateway.kill9()
            time.sleep(0.2)
            self.gateway.start()
        elif self.fault == "db_restart":
            assert self.pg is not None
            self.pg.stop("immediate")
        elif self.fault == "broker_restart":
            self.broker.stop()
        elif self.fault == "db_down_at_start":
            assert self.pg is not None
            self.gateway.stop()
            self.pg.stop("immediate")
            self.gateway.start()
            if not self.gateway.wait_ready(15):
                self.errors.append(self._gateway_failure("did not start while the database was down"))
                self.gateway_expected_down = True
        else:
            raise ValueError(f"unknown fault {self.fault!r}")

    def end_fault(self) -> None:
        if self.fault in DB_FAULTS:
            assert self.pg is not None
            self.pg.start()
        elif self.fault == "broker_restart":
            self.broker.start()

    def _gateway_failure(self, what: str) -> str:
        if self.gateway.exited():
            return f"{what}: {self.gateway.exit_reason()}"
        return f"{what}: gateway did not subscribe within 15 s"

    def close(self) -> None:
        self.gateway.stop()
        with contextlib.suppress(Exception):
            self.broker.stop()
        if self.pg is not None and not self.pg.running():
            with contextlib.suppress(Exception):
                self.pg.start()
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.db_url, autocommit=True,
                                                                 connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def run_fault(fault: str, transport: str, run: int, *, db_url: str, pg: PrivatePostgres | None,
              community: community_mod.Community, messages: int, rate: float, tmp: Path,
              log: Log = print) -> dict[str, Any]:
    """One run of one fault; the row of the result table."""
    t0 = time.monotonic()
    tag = f"{fault}-{transport}-{run}"
    row: dict[str, Any] = {"fault": fault, "transport": transport, "run": run, "sent": 0, "stored": 0, "lost": 0,
                           "duplicated": 0, "tickets": 0, "tickets_expected": len(ALARMS_AT), "seconds": 0.0}
    if fault in DB_FAULTS and pg is None:
        row["error"] = "no PostgreSQL server binaries (initdb, pg_ctl) for a private cluster: fault not run"
        return row
    rig = _Rig(fault, transport, db_url, pg, community, tmp, tag)
    stream: _Stream | None = None
    msgs: list[publisher.Message] = []
    gas: list[str] = []
    try:
        rig.gateway.start()
        if not rig.gateway.wait_ready(30):
            raise RuntimeError(rig._gateway_failure("gateway did not start"))
        msgs, gas, _rows = build_load(community, rig.root, messages, rate, time.time())
        row["sent"] = len(msgs)
        stream = _Stream(rig.broker.url, msgs, rate, f"pub-{rig.root}")
        duration = len(msgs) / rate
        stream.start()
        stream.wait_progress(FAULT_AT, duration * 3 + 30)
        at_fault = _progress(rig.db_url, rig.schema, gas)
        rig.begin_fault()
        if rig.fault != "kill9_gateway":
            stream.wait_progress(RECOVER_AT, duration * 3 + 30)
            rig.end_fault()
        if not stream.finish(60 + duration):
            rig.errors.append(stream.error or f"publisher: {len(stream.client._out_messages)} messages never "
                                               "acknowledged by the broker")
        _settle(rig, len(msgs), gas)
        if rig.gateway.exited() and not rig.gateway_expected_down:
            rig.errors.append(rig.gateway.exit_reason())
        stored, duplicated, tickets = _final_counts(db_url, rig.schema, msgs, gas)
        row |= {"stored": stored, "lost": len(msgs) - stored, "duplicated": duplicated, "tickets": tickets}
        log(f"  {tag}: at the fault {at_fault[0] if at_fault else '?'} messages stored; gateway log: "
            + rig.gateway.evidence())
    except Exception as exc:
        rig.errors.append(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            if msgs:
                stored, duplicated, tickets = _final_counts(db_url, rig.schema, msgs, gas)
                row |= {"stored": stored, "lost": len(msgs) - stored, "duplicated": duplicated, "tickets": tickets}
    finally:
        if stream is not None:
            stream.close()
        rig.close()
    if row["sent"] and row["lost"] and not rig.errors:
        rig.errors.append(f"{row['lost']} messages not stored within {SETTLE_MAX_S:.0f} s of the last publish")
    if row["sent"] and row["tickets"] != row["tickets_expected"] and not rig.errors:
        rig.errors.append(f"{row['tickets']} tickets for {row['tickets_expected']} alarms")
    row["seconds"] = round(time.monotonic() - t0, 1)
    if rig.errors:
        row["error"] = "; ".join(rig.errors)
    log(f"  {fault} {transport} run {run}: " + ", ".join(f"{k}={row[k]}" for k in ROW_KEYS[3:])
        + (f" ERROR {row['error']}" if "error" in row else ""))
    return row


def _settle(rig: _Rig, sent: int, gas: list[str]) -> None:
    """Wait until everything is stored, every ticket opened and every alarm event dispatched (or no
    progress for STALL_S, or SETTLE_MAX_S), then a moment more so late duplicates show too."""
    end = time.monotonic() + SETTLE_MAX_S
    last: tuple[int, int, int] | None = None
    changed = time.monotonic()
    while time.monotonic() < end:
        p = _progress(rig.db_url, rig.schema, gas)
        if p is not None and p[0] >= sent and p[1] >= len(gas) and p[2] == 0:
            time.sleep(1.5)
            return
        if p != last:
            last, changed = p, time.monotonic()
        elif time.monotonic() - changed > STALL_S:
            return
        if rig.gateway.exited() and time.monotonic() - changed > 2.0:
            return  # nobody left to store anything (the row reports why)
        time.sleep(0.25)


# -- the benchmark ------------------------------------------------------------------------------------------


def bench_faults(db_url: str, *, repeats: int = 3, transport: str = "fast", messages: int = 5000,
                 rate: float = 500.0, faults: Iterable[str] = FAULTS, log: Log = print) -> list[dict[str, Any]]:
    """Run each fault ``repeats`` times per transport; one row per run (see the module docstring).

    Runs on a private PostgreSQL cluster when the server binaries are installed (``db_url`` is then
    unused); otherwise on ``db_url``, where the database faults cannot run and say so in ``error``.
    """
    faults = list(faults)
    if bad := [f for f in faults if f not in FAULTS]:
        raise ValueError(f"unknown fault(s) {', '.join(bad)}; known: {', '.join(FAULTS)}")
    transports = list(TRANSPORTS) if transport == "both" else [transport]
    if not set(transports) <= set(TRANSPORTS):
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} or both, not {transport!r}")
    if messages < 100:
        raise ValueError("at least 100 messages, so the alarms fall before, during and after the fault")
    community = community_mod.parse(_sample_path().read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gridtwin-benchf-") as tmp_s:
        tmp = Path(tmp_s)
        pg: PrivatePostgres | None = None
        bindir = pg_bin_dir()
        if bindir is not None:
            pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="gridtwin-benchf-pg-")), bindir)
            log(f"private PostgreSQL cluster on port {pg.port} ({bindir})")
        else:
            log(f"no PostgreSQL server binaries: running on {db_url}; database faults are skipped")
        try:
            url = pg.url if pg is not None else db_url
            for fault in faults:
                for r in range(1, repeats + 1):
                    order = transports if r % 2 else transports[::-1]  # no transport always first
                    for t in order:
                        rows.append(run_fault(fault, t, r, db_url=url, pg=pg, community=community,
                                              messages=messages, rate=rate, tmp=tmp, log=log))
        finally:
            if pg is not None:
                pg.close()
                shutil.rmtree(pg.workdir, ignore_errors=True)
    log(table(rows))
    return rows


def _sample_path() -> Path:
    from gateway.cli_base import sample_community_path

    return sample_community_path()


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table, failed runs marked, then each error."""
    head = "| fault | transport | run | sent | stored | lost | duplicated | tickets | tickets_expected | s |"
    lines = [head, "|" + "---|" * 10]
    errors = []
    for i, r in enumerate(rows, 1):
        mark = f" [{i}]" if "error" in r else ""
        lines.append(f"| {r['fault']}{mark} | {r['transport']} | {r['run']} | {r['sent']:,} | {r['stored']:,} | "
                     f"{r['lost']:,} | {r['duplicated']:,} | {r['tickets']} | {r['tickets_expected']} | "
                     f"{r['seconds']} |")
        if "error" in r:
            errors.append(f"[{i}] {r['error']}")
    return "\n".join(lines + (["", *errors] if errors else []))
