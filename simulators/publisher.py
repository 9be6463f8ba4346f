"""The simplest simulator: round-robin v1 telemetry of a community's devices, and a publisher. Does I/O.

Depends only on the message contract, catalogue and community model in ``twin``. Readings come from
the behaviour models, so a quiet community looks quiet. Scenarios (:mod:`simulators.scenario`), scale
runs (:mod:`simulators.scale`) and hostile traffic (:mod:`simulators.hostile`) build on the same parts.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators import behaviour
from simulators.errors import SimulationError
from twin import catalogue, contract
from twin.community import Community


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def telemetry_stream(community: Community, root: str, *, devices: int | None, start_s: float, step_s: float,
                     count: int | None, seed: int = 1, kinds: set[str] | None = None) -> Iterator[Message]:
    """Round-robin telemetry over the community's devices with fields; ``count`` messages or forever.

    Each round advances simulated time by ``step_s``; readings come from the behaviour models
    (:mod:`simulators.behaviour`), so they stay in each field's normal range.
    """
    devs = [d for d in community.devices if catalogue.KINDS[d.kind].fields and (kinds is None or d.kind in kinds)]
    devs = devs[: devices or None]
    if not devs:
        raise SimulationError(f"community {community.id} has no devices with telemetry fields"
                              + (f" of kind {', '.join(sorted(kinds))}" if kinds else ""))
    models = [behaviour.model_for(d, seed=seed, community=community, origin=start_s) for d in devs]
    topics = [contract.topic(root, community.id, d.id, contract.Channel.TELEMETRY) for d in devs]
    return _round_robin(models, topics, start_s, step_s, count)


def _round_robin(models: list[behaviour.Model], topics: list[str], start_s: float, step_s: float,
                 count: int | None) -> Iterator[Message]:
    seq = [0] * len(models)
    n = 0
    t = start_s
    while count is None or n < count:
        i = n % len(models)
        if i == 0 and n:
            t += step_s
        seq[i] += 1
        yield Message(topics[i], contract.telemetry_bytes(round(t * 1000), seq[i], models[i].values(t)))
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
        stop: threading.Event | None = None, idle: Callable[[float], None] = time.sleep) -> int:
    """Send messages to ``sink`` at ``rate`` per second (None: as fast as possible). Returns how many.

    ``idle(seconds)`` is called while waiting (a connection without a network thread services itself there).
    """
    n = 0
    t0 = time.perf_counter()
    for msg in stream:
        if stop is not None and stop.is_set():
            break
        sink(msg)
        n += 1
        if rate:
            while (ahead := n / rate - (time.perf_counter() - t0)) > 0 and not (stop and stop.is_set()):
                idle(min(ahead, 0.2))
    return n


def stdout_sink(out: IO[str] = sys.stdout) -> Callable[[Message], None]:
    def write(msg: Message) -> None:
        out.write('{"topic":"%s","payload":%s}\n' % (msg.topic, msg.payload.decode()))  # noqa: UP031

    return write
