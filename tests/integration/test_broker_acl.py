"""Every MQTT account against a real Mosquitto with the ACLs gridtwin generates and ships (issue 11).

For each account the test publishes on every kind of topic and checks which publishes a superuser
observer receives, and subscribes to every topic and checks which messages reach it. The expectation is
written out here, independently of gateway/ops/credentials.py:

- gateway: reads what devices send and operators' alarm commands; writes device error/command topics,
  alarm events, worker tickets and its own online/offline status (`gateways/{client id}`);
- dashboard: reads alarm events, worker tickets (relayed to browsers by the live stream) and the gateways'
  status; writes alarm commands and worker tickets (the REST API delivers them);
- simulator: writes what devices send, for any device; reads their error and command topics (simulated
  valves and fans answer interlock commands);
- a device: writes only its own telemetry/event/status/batch under its own community, reads only its own
  error and command topics;
- a worker's phone: reads only its own tickets topic.

Both the generated files (`gridtwin devices credentials`) and the compose deployment's broker files
(deploy/mosquitto/acl plus devices.acl/devices.passwd, assembled by the compose entrypoint script run
here outside Docker) are tested. User names cannot collide: `a.b`+`c` and `a`+`b.c` are two accounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops import credentials
from gateway.ops.procs import PRODUCT_LIMITS
from tests.support.brokers import Mosquitto, subscribe_and_wait, wait_until
from twin import accounts

ROOT = Path(__file__).resolve().parents[2]
DEVICES = [("sunshine", "B1-HYD"), ("sunshine", "B2-HYD"), ("other", "B1-HYD"), ("a.b", "c"), ("a", "b.c")]
WORKERS = ["w1", "w2"]
COMMUNITIES = ["sunshine", "other"]
INBOUND = ("telemetry", "event", "status", "batch")
OUTBOUND = ("error", "command")
OBSERVER = "observer-superuser"  # test only: reads and writes everything


def _topics(root: str) -> list[str]:
    v = f"{root}/v1"
    out = [f"{v}/{c}/{d}/{ch}" for c, d in DEVICES for ch in INBOUND + OUTBOUND]
    out += [f"{v}/alarms/{c}" for c in COMMUNITIES] + [f"{v}/alarms/{c}/commands" for c in COMMUNITIES]
    out += [f"{v}/workers/{w}/tickets" for w in WORKERS]
    out += [f"{v}/gateways/gridtwin-host-a1b2", f"{v}/gateways/gridtwin-host-c3d4/extra"]
    out += [f"not-{root}/v1/sunshine/B1-HYD/telemetry", f"{v}/sunshine/B1-HYD/unknown"]
    return out


def _allowed(user: str, access: str, topic: str, root: str) -> bool:
    """The intended policy (see the module docstring)."""
    prefix = f"{root}/v1/"
    if not topic.startswith(prefix):
        return False
    levels = topic[len(prefix):].split("/")
    device = len(levels) == 3 and levels[2] in INBOUND + OUTBOUND and levels[0] not in ("alarms", "workers")
    inbound = device and levels[2] in INBOUND
    outbound = device and levels[2] in OUTBOUND
    alarm_event = len(levels) == 2 and levels[0] == "alarms"
    alarm_command = len(levels) == 3 and levels[0] == "alarms" and levels[2] == "commands"
    ticket = len(levels) == 3 and levels[0] == "workers" and levels[2] == "tickets"
    gateway_status = len(levels) == 2 and levels[0] == "gateways"  # retained online/offline of each gateway
    if user == "gateway":
        # reads tickets too: its notifier posts them to webhooks and phones (gateway/notify/)
        return (inbound or alarm_command or ticket) if access == "read" else (outbound or alarm_event or ticket
                                                                               or gateway_status)
    if user == "dashboard":
        return (alarm_event or ticket or gateway_status) if access == "read" else (alarm_command or ticket)
    if user == "simulator":
        return outbound if access == "read" else inbound
    if user.startswith("worker@"):
        return access == "read" and ticket and levels[1] == user.removeprefix("worker@")
    community, _, dev = user.partition("/")
    own = device and levels[0] == community and levels[1] == dev
    return own and (outbound if access == "read" else inbound)


# -- clients ------------------------------------------------------------------------------------------------


class _Client:
    def __init__(self, port: int, user: str, password: str) -> None:
        self.user = user
        self.got: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.rc: int | None = None
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:10]}")
        c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.c = c
        assert self._connected.wait(5), f"{user}: no CONNACK"
        assert self.rc == 0, f"{user}: refused ({self.rc})"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.rc = int(rc.value)  # type: ignore[attr-defined]
        self._connected.set()

    def _on_message(self, _c: object, _u: object, m: paho.MQTTMessage) -> None:
        with self._lock:
            self.got.append((m.topic, bytes(m.payload)))

    def subscribe(self, filters: Iterable[str]) -> None:
        subscribe_and_wait(self.c, filters)  # a refused filter is in the SUBACK too; what arrives is checked

    def publish_all(self, topics: Iterable[str]) -> None:
        infos = [self.c.publish(t, f"{self.user}|{t}".encode(), qos=1) for t in topics]
        for info in infos:
            info.wait_for_publish(10)  # a denied publish is acknowledged too, then dropped

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class _Setup:
    broker: Mosquitto
    passwords: dict[str, str]
    root: str


def _check_every_account(setup: _Setup) -> None:
    root, port = setup.root, setup.broker.port
    topics = _topics(root)
    users = ["gateway", "dashboard", "simulator", *(accounts.device_username(c, d) for c, d in DEVICES),
             *(accounts.worker_username(w) for w in WORKERS)]
    assert len(set(users)) == len(users)
    observer = _Client(port, OBSERVER, setup.passwords[OBSERVER])
    clients = {u: _Client(port, u, setup.passwords[u]) for u in users}
    try:
        # writes: every account publishes on every topic; the observer sees what the broker let through
        observer.subscribe(["#"])
        for cl in clients.values():
            cl.publish_all(topics)
        # then a sentinel from each account on a topic it may write (per-client order: once it is in, every
        # earlier publish of that account that got through is in too). An account that may write nothing
        # (a worker's phone) has no sentinel of its own: the observer publishes one after all the above were
        # acknowledged; Mosquitto routes a QoS 1 publish to its subscribers before it sends the PUBACK.
        sentinel = uuid.uuid4().hex
        for u, cl in clients.items():
            own = next((t for t in topics if _allowed(u, "write", t, root)), None)
            if own is not None:
                cl.c.publish(own, f"{u}|{sentinel}".encode(), qos=1).wait_for_publish(10)
        observer.c.publish(topics[0], f"{OBSERVER}|{sentinel}".encode(), qos=1).wait_for_publish(10)
        want_s = {u for u in users if any(_allowed(u, "write", t, root) for t in topics)} | {OBSERVER}

        def sentinels_in() -> bool:
            return want_s <= {p.decode().split("|", 1)[0] for _t, p in observer.received() if sentinel.encode() in p}

        assert wait_until(sentinels_in, 10), "sentinels did not arrive"
        seen = {(p.decode().split("|", 1)[0], t) for t, p in observer.received() if sentinel.encode() not in p}
        want_w = {(u, t) for u in users for t in topics if _allowed(u, "write", t, root)}
        assert sorted(want_w - seen) == [], "allowed publishes that were dropped"
        assert sorted(seen - want_w) == [], "refused publishes that got through"
        # reads: every account subscribes to every topic (and to everything); the observer publishes each
        # once, then each again as sentinels: every account may read at least one topic, and once all of its
        # sentinels are in, every earlier message from the observer that it may get is in too
        for cl in clients.values():
            cl.subscribe([*topics, "#"])
        marker, sentinel = uuid.uuid4().hex, uuid.uuid4().hex
        for m in (marker, sentinel):
            for t in topics:
                observer.c.publish(t, f"{OBSERVER}|{m}".encode(), qos=1).wait_for_publish(10)
        want_r = {(u, t) for u in users for t in topics if _allowed(u, "read", t, root)}
        assert {u for u, _t in want_r} == set(users)

        def reads(m: str) -> set[tuple[str, str]]:
            return {(u, t) for u, cl in clients.items() for t, p in cl.received() if m.encode() in p}

        assert wait_until(lambda: want_r <= reads(sentinel), 10), sorted(want_r - reads(sentinel))
        got_r = reads(marker)
        assert sorted(want_r - got_r) == [], "allowed reads that were not delivered"
        assert sorted(got_r - want_r) == [], "refused reads that were delivered"
    finally:
        for cl in [observer, *clients.values()]:
            cl.close()


def _observer(passwd: Path, acl: Path) -> str:
    """Add the test-only superuser to a passwd/acl pair; returns its password."""
    pw = uuid.uuid4().hex
    with passwd.open("a") as f:
        f.write(f"{OBSERVER}:{credentials.mosquitto_hash(pw)}\n")
    with acl.open("a") as f:
        f.write(f"\nuser {OBSERVER}\ntopic readwrite #\n")
    return pw


def _secured(tmp: Path, passwd: Path, acl: Path) -> Mosquitto:
    return Mosquitto(tmp / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n",
                     limits=PRODUCT_LIMITS)


# -- the generated files -----------------------------------------------------------------------------------


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[_Setup]:
    root = "gt-acl"
    rep = credentials.generate(DEVICES, tmp_path / "creds", root=root, workers=WORKERS)
    assert (rep.devices, rep.workers) == (len(DEVICES), len(WORKERS))
    passwd, acl, _ = rep.files
    pws = credentials.read_secrets(tmp_path / "creds")
    pws[OBSERVER] = _observer(passwd, acl)
    broker = _secured(tmp_path, passwd, acl)
    yield _Setup(broker, pws, root)
    broker.stop()


@pytest.mark.integration
def test_generated_acl_every_account_allowed_and_refused(generated: _Setup) -> None:
    _check_every_account(generated)


def test_usernames_cannot_collide() -> None:
    a, b = accounts.device_username("a.b", "c"), accounts.device_username("a", "b.c")
    assert a != b and (a, b) == ("a.b/c", "a/b.c")
    names = {accounts.device_username(c, d) for c in ("a", "a.b", "b") for d in ("c", "b.c", "a.b")}
    names |= {accounts.worker_username(w) for w in ("a", "a.b", "c")} | set(accounts.SERVICE_ACCOUNTS)
    assert len(names) == 9 + 3 + 3
    for n in names:  # each name maps back to exactly one account
        kind, ids = accounts.parse(n)
        if kind == "device":
            assert accounts.device_username(*ids) == n
        elif kind == "worker":
            assert accounts.worker_username(*ids) == n
        else:
            assert ids == (n,)
    for bad in ("a.b.c", "a/b/c", "worker@", "/x", "x/", "worker@a/b", "root"):
        with pytest.raises(accounts.AccountError):
            accounts.parse(bad)
    with pytest.raises(accounts.AccountError):
        accounts.device_username("a/b", "c")


def test_rerun_keeps_unambiguous_old_passwords_and_renews_collided_ones(tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    # what the old `{community}.{device}` scheme wrote: a.b+c and a+b.c shared the account "a.b.c"
    (out / "secrets.csv").write_text("username,password\ngateway,gw-pw\ns.d,old-sd\na.b.c,shared\n")
    rep = credentials.generate([("s", "d"), ("a.b", "c"), ("a", "b.c")], out)
    pws = credentials.read_secrets(out)
    assert pws["gateway"] == "gw-pw" and pws["s/d"] == "old-sd"
    assert "shared" not in (pws["a.b/c"], pws["a/b.c"]) and pws["a.b/c"] != pws["a/b.c"]
    assert not {"s.d", "a.b.c"} & set(pws)
    assert (rep.added, rep.removed) == (2, 1)  # the two collided devices are new; a.b.c is gone


# -- the compose deployment's broker files -------------------------------------------------------------------


def test_shipped_acl_is_generated_from_the_one_place() -> None:
    shipped = (ROOT / "deploy" / "mosquitto" / "acl").read_text()
    assert shipped == credentials.shipped_acl(), (
        "deploy/mosquitto/acl is stale: run `python -m gateway.ops.credentials --shipped deploy/mosquitto/acl`")
    assert "pattern" not in shipped.split("\n\n", 1)[1]  # no rule that applies to every account


def _entrypoint_script(conf: Path, run: Path, hc: Path) -> str:
    """The mosquitto service's entrypoint from docker-compose.yml, with container paths mapped to ``conf``
    and ``run``, cut before it hands the files to the mosquitto user and execs the broker."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = str(compose["services"]["mosquitto"]["command"][0]).replace("$$", "$")
    script = script.split("chown -R mosquitto", 1)[0]
    return (script.replace("/mosquitto/config", str(conf)).replace("/mosquitto/run", str(run))
            .replace("/run/gridtwin-healthcheck.pw", str(hc)))


def _compose_conf(tmp: Path) -> tuple[Path, Path]:
    conf = tmp / "config"
    shutil.copytree(ROOT / "deploy" / "mosquitto", conf, ignore=shutil.ignore_patterns("certs", "devices.*"))
    (conf / "certs").mkdir()
    for f in ("ca.crt", "server.crt", "server.key"):
        (conf / "certs" / f).write_text("not used here\n")
    return conf, tmp / "run"


def _run_entrypoint(tmp: Path, conf: Path, run: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto_passwd is not installed: run `make test` (apt package mosquitto)")
    script = _entrypoint_script(conf, run, tmp / "hc.pw")
    return subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True, timeout=60, check=False)


SERVICE_PWS = {"MQTT_GATEWAY_PASSWORD": "gw-secret", "MQTT_DASHBOARD_PASSWORD": "dash-secret",
               "MQTT_SIMULATOR_PASSWORD": "sim-secret"}


@pytest.mark.integration
def test_compose_broker_files_every_account_allowed_and_refused(tmp_path: Path) -> None:
    conf, run = _compose_conf(tmp_path)
    rep = credentials.generate(DEVICES, tmp_path / "creds", workers=WORKERS)  # default root, as shipped
    for f in rep.compose_files:
        shutil.copy(f, conf / f.name)
    proc = _run_entrypoint(tmp_path, conf, run, SERVICE_PWS)
    assert proc.returncode == 0, proc.stderr
    pws = {u: p for u, p in credentials.read_secrets(tmp_path / "creds").items()
           if u not in accounts.SERVICE_ACCOUNTS}
    pws.update({"gateway": "gw-secret", "dashboard": "dash-secret", "simulator": "sim-secret"})
    pws[OBSERVER] = _observer(run / "passwd", run / "acl")
    broker = _secured(tmp_path, run / "passwd", run / "acl")
    try:
        _check_every_account(_Setup(broker, pws, credentials.SHIPPED_ROOT))
    finally:
        broker.stop()


@pytest.mark.parametrize("bad", ["user gateway\ntopic write #\n", "pattern write gridtwin/#\n",
                                 "user  healthcheck \ntopic read #\n"])
def test_compose_refuses_a_devices_acl_that_grants_a_service_account(tmp_path: Path, bad: str) -> None:
    conf, run = _compose_conf(tmp_path)
    (conf / "devices.acl").write_text("user s/d\ntopic write gridtwin/v1/s/d/telemetry\n\n" + bad)
    proc = _run_entrypoint(tmp_path, conf, run, SERVICE_PWS)
    assert proc.returncode == 1 and "devices.acl must not" in proc.stderr, (proc.returncode, proc.stderr)
