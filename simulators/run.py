"""Running simulations: pacing simulated time against the wall clock and sending to a sink. Does I/O.

The CLI builds a :class:`Request` from its arguments and calls :func:`prepare`, which validates
everything (scenario files, roles against the community, device ids, kinds, option combinations) and
raises :class:`~simulators.errors.SimulationError` before anything is published. The prepared job
then runs against stdout (JSON lines ``{"topic":...,"payload":...}``, or ``payload_b64`` when the
payload is not JSON) or an MQTT broker, and returns a one-line summary.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import orjson

from simulators import engine, hostile, publisher, scale, scenario
from simulators.errors import SimulationError
from simulators.interlock import CommandResponder
from simulators.mqtt import DeviceFleet, SharedConnection
from twin import catalogue
from twin.community import Community

Mode = Literal["telemetry", "scenario", "scale", "hostile"]


# --- sinks ----------------------------------------------------------------------------------------


def json_line(topic: str, payload: bytes) -> bytes:
    """``{"topic":...,"payload":<the JSON>}``; ``payload_b64`` when the payload is not one-line JSON."""
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return orjson.dumps({"topic": topic, "payload_b64": base64.b64encode(payload).decode()}) + b"\n"
    if b"\n" in payload or b"\r" in payload:
        payload = orjson.dumps(orjson.loads(payload))
    return b'{"topic":' + orjson.dumps(topic) + b',"payload":' + payload + b"}\n"


class Sink(Protocol):
    def send(self, msg: engine.SimMessage) -> None: ...
    def idle(self, seconds: float) -> None: ...
    def close(self) -> None: ...


class StdoutSink:
    """What the devices would send, as JSON lines; a last will appears as the broker would publish it.

    A reader that goes away (``| head``) ends the run quietly: the stop event is set.
    """

    def __init__(self, out: IO[bytes], stop: threading.Event | None = None) -> None:
        self.out = out
        self.stop = stop or threading.Event()

    def write(self, line: bytes) -> None:
        if self.stop.is_set() and getattr(self, "_closed", False):
            return
        try:
            self.out.write(line)
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        self._closed = True
        self.stop.set()
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())  # so the interpreter's final flush does not fail too

    def send(self, msg: engine.SimMessage) -> None:
        self.write(json_line(msg.topic, msg.payload))

    def idle(self, seconds: float) -> None:
        self.close()
        time.sleep(seconds)

    def close(self) -> None:
        try:
            self.out.flush()
        except BrokenPipeError:
            self._reader_gone()

    flush = close


class SharedSink:
    """All devices over one connection; a last will is published on the device's behalf."""

    def __init__(self, conn: SharedConnection) -> None:
        self.conn = conn

    def send(self, msg: engine.SimMessage) -> None:
        self.conn.publish(msg.topic, msg.payload)

    def idle(self, seconds: float) -> None:
        self.conn.poll(seconds)

    def close(self) -> None:
        self.conn.flush()
        self.conn.close()


class FleetSink:
    """Each device its own client: connect with a last will, drop without DISCONNECT, or say goodbye."""

    def __init__(self, fleet: DeviceFleet) -> None:
        self.fleet = fleet
        self.n = 0

    def send(self, msg: engine.SimMessage) -> None:
        if msg.action == "connect":
            self.fleet.connect(msg.device_id, msg.topic, msg.payload, engine.WILL_PAYLOAD)
        elif msg.action == "lastwill":
            self.fleet.drop(msg.device_id)
        elif msg.action == "disconnect":
            self.fleet.disconnect(msg.device_id, msg.topic, msg.payload)
        else:
            self.fleet.publish(msg.device_id, msg.topic, msg.payload)
        self.n += 1
        if self.n % 64 == 0:
            self.fleet.poll(0)

    def idle(self, seconds: float) -> None:
        self.fleet.poll(seconds)

    def close(self) -> None:
        self.fleet.close()


@dataclass
class RunStats:
    sent: int = 0
    first_t: float | None = None
    last_t: float | None = None
    wall_s: float = 0.0
    actions: dict[str, int] = field(default_factory=dict)


def pace(stream: Iterable[engine.SimMessage], sink: Sink, *, start: float, speed: float,
         stop: threading.Event | None = None) -> RunStats:
    """Send each message when the wall clock reaches its simulated time / ``speed`` (0: flat out)."""
    stats = RunStats()
    w0 = time.monotonic()
    for msg in stream:
        if speed > 0:
            due = w0 + (msg.t - start) / speed
            while (wait := due - time.monotonic()) > 0 and not (stop and stop.is_set()):
                sink.idle(min(wait, 0.2))
        if stop is not None and stop.is_set():
            break
        sink.send(msg)
        stats.sent += 1
        stats.actions[msg.action] = stats.actions.get(msg.action, 0) + 1
        stats.first_t = msg.t if stats.first_t is None else stats.first_t
        stats.last_t = msg.t
    stats.wall_s = time.monotonic() - w0
    return stats


# --- the request and its jobs ---------------------------------------------------------------------


@dataclass
class Request:
    """Everything ``gridtwin simulate`` can be asked (names match the CLI options)."""

    community: Community
    root: str
    qos: int = 1
    seed: int = 1
    stdout: bool = False
    scenario: str | None = None
    scale: bool = False
    hostile: bool = False
    devices: int | None = None
    count: int | None = None
    rate: float | None = None
    step: float = 1.0
    start: float | None = None
    speed: float | None = None
    fast: bool = False
    sim_duration: str | None = None
    pin: list[str] = field(default_factory=list)
    kinds: str | None = None
    clients: Literal["per-device", "shared"] | None = None
    device_secrets: Path | None = None
    manifest: Path | None = None
    max_payload_bytes: int = 16_384
    max_fields: int = 64
    duration: float | None = None  # wall-clock limit (scale: the run length)
    catch_up: float = 0.0  # scenario: publish the first N simulated seconds at once (the demo skips lead-ins)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class Job(Protocol):
    def run_stdout(self, out: IO[bytes], stop: threading.Event | None = None) -> str: ...
    def run_mqtt(self, url: str, *, mqtt5: bool, stop: threading.Event | None = None) -> str: ...


def prepare(req: Request) -> Job:
    """Validate a request completely and return the job; nothing is published yet."""
    modes = [m for m, on in (("scenario", req.scenario is not None), ("scale", req.scale),
                             ("hostile", req.hostile)) if on]
    if len(modes) > 1:
        raise SimulationError(f"choose one of --scenario, --scale, --hostile (got {', '.join(modes)})")
    mode = modes[0] if modes else "telemetry"
    _not_for(mode, req)
    if req.kinds is not None:
        unknown = [k for k in req.kinds.split(",") if k not in catalogue.KINDS]
        if unknown:
            raise SimulationError(f"unknown device kind {unknown[0]!r}; known: {', '.join(sorted(catalogue.KINDS))}")
    if mode == "scenario":
        return ScenarioJob.build(req)
    if mode == "scale":
        return ScaleJob(req)
    if mode == "hostile":
        return HostileJob.build(req)
    return TelemetryJob.build(req)


_ONLY = {  # option -> the modes it applies to
    "speed": {"scenario"}, "fast": {"scenario"}, "sim_duration": {"scenario"}, "pin": {"scenario"},
    "clients": {"scenario"}, "device_secrets": {"scenario"}, "manifest": {"hostile"},
    "step": {"telemetry"}, "kinds": {"telemetry"}, "rate": {"telemetry", "scale", "hostile"},
    "count": {"telemetry", "scale", "hostile"}, "devices": {"telemetry", "scale"},
}


def _not_for(mode: str, req: Request) -> None:
    defaults = Request(community=req.community, root=req.root)
    for name, modes in _ONLY.items():
        if getattr(req, name) != getattr(defaults, name) and mode not in modes:
            flag = "--" + name.replace("_", "-")
            where = ", ".join(_mode_name(m) for m in sorted(modes))
            raise SimulationError(f"{flag} applies to {where}, not to {_mode_name(mode)}")


def _mode_name(mode: str) -> str:
    return "the default mode" if mode == "telemetry" else f"--{mode}"


def _credentials(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return {row["username"]: row["password"] for row in csv.DictReader(f)}
    except (OSError, KeyError) as exc:
        raise SimulationError(f"cannot read device secrets {path}: expected a username,password CSV ({exc})") from None


@dataclass
class ScenarioJob:
    req: Request
    plan: scenario.Plan
    start: float
    speed: float

    @classmethod
    def build(cls, req: Request) -> ScenarioJob:
        assert req.scenario is not None
        pins: dict[str, str] = {}
        for item in req.pin:
            role, sep, dev = item.partition("=")
            if not sep or not role or not dev:
                raise SimulationError(f"--pin {item!r}: expected ROLE=DEVICE_ID")
            pins[role] = dev
        try:
            length = scenario.parse_duration(req.sim_duration) if req.sim_duration is not None else None
        except ValueError as exc:
            raise SimulationError(f"--sim-duration: {exc}") from None
        if length is not None and length <= 0:
            raise SimulationError("--sim-duration must be > 0")
        plan = scenario.compile_plan(req.scenario, req.community, pins=pins, duration=length)
        speed = 0.0 if req.fast else (1.0 if req.speed is None else req.speed)
        if speed < 0:
            raise SimulationError("--speed must be >= 0 (0: as fast as possible)")
        # accelerated runs end "now", so every simulated timestamp is in the past and none is future_ts
        start = req.start if req.start is not None else time.time() - (plan.duration if speed != 1 else 0.0)
        if req.clients == "per-device" and req.stdout:
            raise SimulationError("--clients per-device needs a broker; drop --stdout")
        _credentials(req.device_secrets)
        return cls(req, plan, start, speed)

    def messages(self) -> Iterator[engine.SimMessage]:
        return engine.plan_messages(self.plan, self.req.community, self.req.root, start=self.start,
                                    seed=self.req.seed)

    def _summary(self, stats: RunStats, how: str) -> str:
        sim = (stats.last_t or self.start) - self.start
        roles = ", ".join([f"{r}={d}" for r, d in self.plan.roles.items()]
                          + [f"{r}={len(ds)} devices" for r, ds in self.plan.groups.items()]) or "none"
        speed = "fast" if self.speed == 0 else f"x{self.speed:g}"
        extra = f", {stats.actions['lastwill']} last will(s)" if stats.actions.get("lastwill") else ""
        return (f"scenario {self.plan.name}: {stats.sent} messages from {len(self.plan.devices)} devices{extra}, "
                f"{scenario.format_duration(sim)} simulated in {stats.wall_s:.2f} s ({speed}, {how}); roles: {roles}")

    def run_stdout(self, out: IO[bytes], stop: threading.Event | None = None) -> str:
        sink = StdoutSink(out, stop)
        stats = pace(self.messages(), sink, start=self.start + self.req.catch_up, speed=self.speed,
                     stop=sink.stop)
        sink.close()
        return self._summary(stats, "stdout")

    def run_mqtt(self, url: str, *, mqtt5: bool, stop: threading.Event | None = None) -> str:
        sink: Sink
        if (self.req.clients or "per-device") == "per-device":
            sink = FleetSink(DeviceFleet(url, root=self.req.root, community_id=self.req.community.id,
                                         qos=self.req.qos, mqtt5=mqtt5,
                                         credentials=_credentials(self.req.device_secrets)))
            how = f"one client per device, QoS {self.req.qos}"
        else:
            sink = SharedSink(SharedConnection(url, client_id=f"{self.req.root}-sim-{self.plan.name}",
                                               qos=self.req.qos, mqtt5=mqtt5))
            how = f"one shared connection, QoS {self.req.qos}"
        # the devices answer the gateway's commands (gas interlocks), as the real valves and fans do
        responder = CommandResponder(url, root=self.req.root, community=self.req.community)
        try:
            stats = pace(self.messages(), sink, start=self.start + self.req.catch_up, speed=self.speed,
                         stop=stop)
        finally:
            sink.close()
            responder.close()
        return self._summary(stats, how)


@dataclass
class ScaleJob:
    req: Request

    def __post_init__(self) -> None:
        if self.req.devices is None:
            raise SimulationError("--scale needs --devices N")
        if self.req.duration is None and self.req.count is None:
            raise SimulationError("--scale needs --duration S or --count N")
        if self.req.qos not in (0, 1):
            raise SimulationError(f"--scale publishes at QoS 0 or 1, not {self.req.qos}")

    def _run(self, **kw: Any) -> str:
        r = scale.run_scale(kw.pop("url", ""), self.req.root, self.req.community.id, self.req.devices or 0,
                            self.req.rate, self.req.duration, self.req.qos, community=self.req.community,
                            count=self.req.count, seed=self.req.seed, **kw)
        target = f"target {r['target_rate']:g}" if r["target_rate"] else "no target"
        return (f"scale: {r['sent']} messages from {r['devices']} devices in {r['seconds']:.2f} s = "
                f"{r['rate']:.0f} msg/s ({target}, QoS {r['qos']})")

    def run_stdout(self, out: IO[bytes], stop: threading.Event | None = None) -> str:
        sink = StdoutSink(out, stop)
        return self._run(out=sink, stop=sink.stop)

    def run_mqtt(self, url: str, *, mqtt5: bool, stop: threading.Event | None = None) -> str:
        return self._run(url=url, mqtt5=mqtt5, stop=stop)


@dataclass
class HostileJob:
    req: Request
    messages: list[hostile.HostileMessage]

    @classmethod
    def build(cls, req: Request) -> HostileJob:
        if req.count is None:
            raise SimulationError("--hostile needs --count N")
        try:
            msgs = hostile.generate(req.community, req.root, req.count, req.seed, max_bytes=req.max_payload_bytes,
                                    max_fields=req.max_fields)
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        if req.manifest is not None:
            try:
                req.manifest.parent.mkdir(parents=True, exist_ok=True)
                req.manifest.write_bytes(b"".join(m.manifest_line(i) + b"\n" for i, m in enumerate(msgs)))
            except OSError as exc:
                raise SimulationError(f"cannot write manifest {req.manifest}: {exc.strerror}") from None
        return cls(req, msgs)

    def _send(self, publish: Callable[[str, bytes], None], idle: Callable[[float], None],
              stop: threading.Event | None) -> tuple[int, float]:
        t0 = time.monotonic()
        n = 0
        for m in self.messages:
            if stop is not None and stop.is_set():
                break
            if self.req.rate:
                while (wait := t0 + n / self.req.rate - time.monotonic()) > 0:
                    idle(min(wait, 0.2))
            publish(m.topic, m.payload)
            n += 1
        return n, time.monotonic() - t0

    def _summary(self, n: int, secs: float, how: str) -> str:
        cats = len({m.category for m in self.messages[:n]})
        where = f"; manifest {self.req.manifest}" if self.req.manifest else ""
        return f"hostile: {n} messages in {secs:.2f} s covering {cats} categories ({how}){where}"

    def run_stdout(self, out: IO[bytes], stop: threading.Event | None = None) -> str:
        sink = StdoutSink(out, stop)
        n, secs = self._send(lambda topic, payload: sink.write(json_line(topic, payload)), time.sleep, sink.stop)
        sink.close()
        return self._summary(n, secs, "stdout")

    def run_mqtt(self, url: str, *, mqtt5: bool, stop: threading.Event | None = None) -> str:
        conn = SharedConnection(url, client_id=f"{self.req.root}-hostile-{int(time.time())}", qos=self.req.qos,
                                mqtt5=mqtt5)
        try:
            n, secs = self._send(conn.publish, conn.poll, stop)
            conn.flush()
        finally:
            conn.close()
        return self._summary(n, secs, f"QoS {self.req.qos}")


@dataclass
class TelemetryJob:
    """The default mode: round-robin telemetry of the community's devices at ``--rate``."""

    req: Request

    @classmethod
    def build(cls, req: Request) -> TelemetryJob:
        publisher.telemetry_stream(req.community, req.root, devices=req.devices, start_s=0, step_s=req.step,
                                   count=0, seed=req.seed, kinds=cls._kinds(req))
        return cls(req)

    @staticmethod
    def _kinds(req: Request) -> set[str] | None:
        return set(req.kinds.split(",")) if req.kinds else None

    def _stream(self) -> Iterator[publisher.Message]:
        start = time.time() if self.req.start is None else self.req.start
        return publisher.telemetry_stream(self.req.community, self.req.root, devices=self.req.devices,
                                          start_s=start, step_s=self.req.step, count=self.req.count,
                                          seed=self.req.seed, kinds=self._kinds(self.req))

    def run_stdout(self, out: IO[bytes], stop: threading.Event | None = None) -> str:
        sink = StdoutSink(out, stop)
        n = publisher.run(self._stream(), lambda m: sink.write(json_line(m.topic, m.payload)), rate=self.req.rate,
                          stop=sink.stop)
        sink.close()
        return f"wrote {n} messages"

    def run_mqtt(self, url: str, *, mqtt5: bool, stop: threading.Event | None = None) -> str:
        conn = SharedConnection(url, client_id=f"{self.req.root}-sim-{int(time.time())}", qos=self.req.qos,
                                mqtt5=mqtt5)
        t0 = time.perf_counter()
        try:
            n = publisher.run(self._stream(), lambda m: conn.publish(m.topic, m.payload), rate=self.req.rate,
                              stop=stop, idle=conn.poll)
            conn.flush()
        finally:
            conn.close()
        dt = time.perf_counter() - t0
        return f"published {n} messages in {dt:.2f}s ({n / dt if dt else 0:.0f} msg/s)"


def list_text() -> str:
    """``NAME  description`` of every shipped scenario, one per line."""
    rows = scenario.describe_all()
    width = max(len(n) for n, _ in rows)
    return "\n".join(f"{n:<{width}}  {d}" for n, d in rows)


def binary_stdout() -> IO[bytes]:
    return sys.stdout.buffer
