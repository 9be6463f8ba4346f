"""Helpers that run infrastructure processes of our own: a Mosquitto on a free port. Does I/O.

Used by the benchmark suite and the tests (auth, ACL, restart and fault tests). Also home of the broker
limits gridtwin sets on every Mosquitto it ships or starts (:data:`PRODUCT_LIMITS`, :data:`TEST_LIMITS`;
the arithmetic behind them is in docs/mqtt.md, "Broker settings that matter").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from twin.mqtt_codec import PUBLISH_HEADROOM

# The largest payload the gateway can be configured to accept (gateway.max_payload_bytes <= 1 MiB), plus
# room for the topic, packet id and fixed header. The broker disconnects a client that sends a bigger
# packet (Mosquitto 2: ``max_packet_size``; ``message_size_limit`` reads the whole packet before it
# drops it); between the gateway's own limit and this one the gateway rejects the message as too_large.
MAX_PAYLOAD_BYTES_CEILING = 1_048_576


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Mosquitto settings that bound memory and decide what survives a gateway restart.

    ``max_queued_messages`` / ``max_queued_bytes``: per client (the gateway's persistent session) while it
    is away or slow; Mosquitto drops QoS 1 messages above either. ``max_packet_size``: 0 for no limit.
    """

    max_queued_messages: int
    max_queued_bytes: int
    max_inflight_messages: int = 1000
    max_packet_size: int = MAX_PAYLOAD_BYTES_CEILING + PUBLISH_HEADROOM

    def conf(self) -> str:
        """The lines for mosquitto.conf."""
        lines = [f"max_queued_messages {self.max_queued_messages}", f"max_queued_bytes {self.max_queued_bytes}",
                 f"max_inflight_messages {self.max_inflight_messages}"]
        if self.max_packet_size:
            lines.append(f"max_packet_size {self.max_packet_size}")
        return "\n".join(lines) + "\n"


# Every broker gridtwin deploys (deploy/mosquitto/mosquitto.conf, a test keeps them equal) or embeds
# (gateway.ops.services): 10 minutes of gateway downtime at 1,667 msg/s, 8x the sustained rate of a
# 100,000-device deployment (docs/mqtt.md); about 0.5 KB of broker memory per queued message.
PRODUCT_LIMITS = BrokerLimits(max_queued_messages=1_000_000, max_queued_bytes=256 * 1024 * 1024)
# Our own brokers for tests and benchmarks, which queue benchmark loads of up to 10 million messages.
TEST_LIMITS = BrokerLimits(max_queued_messages=10_000_000, max_queued_bytes=2 * 1024 * 1024 * 1024,
                           max_inflight_messages=5000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Mosquitto:
    """A mosquitto of our own; ``limits`` and then ``extra`` go into its config (auth, ACL...).

    ``limits=BrokerLimits(..., max_packet_size=0)`` starts one without a packet size limit (to test that
    the gateway protects itself).
    """

    def __init__(self, workdir: Path, extra: str = "allow_anonymous true\n", port: int | None = None, *,
                 limits: BrokerLimits = TEST_LIMITS) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run `make test` (it installs it through apt)")
        self.exe = exe
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\npersistence true\npersistence_location {workdir}/\n"
            "autosave_interval 1\n" + limits.conf()
            + ("user root\n" if os.geteuid() == 0 else "")  # keep access to a private tmp dir
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self._log, stderr=self._log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()
