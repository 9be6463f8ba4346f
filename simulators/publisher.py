"""Device simulator: generates v1 telemetry for a community's devices and publishes it. Does I/O.

Depends only on the message contract, catalogue and community model in ``twin``. Values stay in
each field's normal range with a slow drift, so a quiet community looks quiet. Scenarios and
behaviour models per kind build on this module.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from twin import catalogue, contract
from twin.community import Community, Device


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def baseline_values(device: Device, t: float, rng: random.Random) -> dict[str, bool | int | float]:
    """A plausible quiet reading of every field of the device at time ``t`` (epoch seconds)."""
    kind = catalogue.KINDS[device.kind]
    out: dict[str, bool | int | float] = {}
    day = (t % 86400) / 86400.0
    for f in kind.fields:
        if f.type is catalogue.FieldType.BOOL:
            out[f.name] = f.name not in ("leak", "opened", "door_open", "running")
            continue
        lo, hi = f.normal or (f.valid if math.isfinite(f.valid[0]) and math.isfinite(f.valid[1]) else (0.0, 1.0))
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        v = mid + half * (0.4 * math.sin(2 * math.pi * (day - 0.25)) + 0.1 * rng.uniform(-1, 1))
        v = min(max(v, lo), hi)
        out[f.name] = round(v) if f.type is catalogue.FieldType.INT else round(v, 3)
    return out


def telemetry_stream(community: Community, root: str, *, devices: int | None, start_s: float, step_s: float,
                     count: int | None, seed: int = 1) -> Iterator[Message]:
    """Round-robin telemetry over the community's devices with fields; ``count`` messages or forever."""
    rng = random.Random(seed)
    devs = [d for d in community.devices if catalogue.KINDS[d.kind].fields][: devices or None]
    if not devs:
        raise ValueError("the community has no devices with telemetry fields")
    topics = [contract.topic(root, community.id, d.id, contract.Channel.TELEMETRY) for d in devs]
    seq = [0] * len(devs)
    n = 0
    t = start_s
    while count is None or n < count:
        i = n % len(devs)
        if i == 0 and n:
            t += step_s
        seq[i] += 1
        payload = contract.telemetry_bytes(round(t * 1000), seq[i], baseline_values(devs[i], t, rng))
        yield Message(topics[i], payload)
        n += 1


class Publisher:
    """One multiplexed MQTT connection publishing on behalf of many devices."""

    def __init__(self, url: str, *, client_id: str, qos: int, mqtt5: bool = True) -> None:
        addr = contract.BrokerAddress.parse(url)
        self.qos = qos
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311)
        if addr.username:
            self.client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        try:
            self.client.connect(addr.host, addr.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {addr.redacted()}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise ConnectionError(f"no CONNACK from {addr.redacted()}")

    def publish(self, msg: Message) -> None:
        self.client.publish(msg.topic, msg.payload, qos=self.qos)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every QoS>0 message was acknowledged by the broker."""
        end = time.monotonic() + timeout_s
        # paho keeps unacked outgoing messages in _out_messages; poll its public-ish length
        while time.monotonic() < end and len(self.client._out_messages) > 0:
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(stream: Iterator[Message], sink: Callable[[Message], None], *, rate: float | None,
        stop: threading.Event | None = None) -> int:
    """Send messages to ``sink`` at ``rate`` per second (None: as fast as possible). Returns how many."""
    n = 0
    t0 = time.perf_counter()
    for msg in stream:
        if stop is not None and stop.is_set():
            break
        sink(msg)
        n += 1
        if rate:
            ahead = n / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    return n


def stdout_sink(out: IO[str] = sys.stdout) -> Callable[[Message], None]:
    def write(msg: Message) -> None:
        out.write('{"topic":"%s","payload":%s}\n' % (msg.topic, msg.payload.decode()))  # noqa: UP031

    return write
