"""Simulated devices answering the gateway's commands (gas interlocks: close the shut-off valve, start the exhaust
fan). Does network I/O.

:class:`CommandResponder` subscribes to every device's ``command`` channel of one community, carries a command out
for a device whose kind takes it (catalogue ``commands``) and answers as the real device does: its kind's
acknowledgement event on its ``event`` channel (``detail`` names the command id), then a telemetry reading with the
new state (the valve closed, the fan running). Devices listed in ``dead`` never answer (to show the
"interlock not acknowledged" alarm). Runs paho's network thread; every answer is counted in :attr:`answered`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators.errors import BrokerUnreachable
from twin import commands, contract
from twin.community import Community

log = logging.getLogger(__name__)

# what a device reports once it has carried a command out
STATE_AFTER: dict[tuple[str, str], dict[str, contract.Value]] = {
    ("gas_valve", "close"): {"closed": True}, ("exhaust_fan", "start"): {"running": True},
    ("exhaust_fan", "stop"): {"running": False}}


class CommandResponder:
    def __init__(self, url: str, *, root: str, community: Community, dead: frozenset[str] = frozenset(),
                 client_id: str | None = None, connect_timeout_s: float = 10.0) -> None:
        self.root, self.community, self.dead = root, community, dead
        self.kinds = {d.id: d.kind for d in community.devices}
        self.answered: list[tuple[str, str, str]] = []  # (device, command, command id)
        self._seq = itertools.count(int(time.time() * 1000))  # above any counter a device used before
        addr = contract.BrokerAddress.parse(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{root}-sim-commands")
        if addr.username:
            self.client.username_pw_set(addr.username, addr.password)
        if addr.tls:
            self.client.tls_set()
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(
            f"{root}/v{contract.SCHEMA_VERSION}/{community.id}/+/{contract.Channel.COMMAND.value}", qos=1)
        try:
            self.client.connect(addr.host, addr.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnreachable(f"cannot reach the MQTT broker at {addr.redacted()}: {exc}") from None
        self.client.loop_start()
        if not subscribed.wait(connect_timeout_s):
            self.close()
            raise BrokerUnreachable(f"the MQTT broker at {addr.redacted()} did not accept the command subscription")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            self._answer(msg)
        except Exception:  # one bad command must not stop the responder's network thread
            log.exception("answering the command on %s failed", msg.topic)

    def _answer(self, msg: Any) -> None:
        try:
            topic = contract.parse_topic(self.root, msg.topic)
            cmd = commands.decode_command(msg.payload)
        except contract.ContractError as exc:
            log.warning("command on %s ignored: %s", msg.topic, exc)
            return
        device, kind = topic.device_id, self.kinds.get(topic.device_id)
        if kind is None or device in self.dead:
            return
        now = datetime.now(UTC)
        ack = commands.ack_bytes(cmd, kind, next(self._seq), now)
        if ack is None:
            log.warning("%s (%s) takes no command %r", device, kind, cmd.command)
            return
        self.client.publish(contract.topic(self.root, self.community.id, device, contract.Channel.EVENT), ack, qos=1)
        state = STATE_AFTER.get((kind, cmd.command))
        if state:
            self.client.publish(contract.topic(self.root, self.community.id, device, contract.Channel.TELEMETRY),
                                contract.telemetry_bytes(round(now.timestamp() * 1000), next(self._seq), state), qos=1)
        self.answered.append((device, cmd.command, cmd.id))
        log.info("%s: %s done (command %s)", device, cmd.command, cmd.id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
